"""What a track egress writes: the file's name and location, the file, and its FileInfo."""

from __future__ import annotations

import asyncio
import time

from livekit.protocol.egress import DirectFileOutput, FileInfo

from devkit.livekit_emulator.opus import encode_ogg_opus
from devkit.livekit_emulator.rooms import NS_PER_S, RoomState, TrackState
from roomscribe.audio import TARGET_SAMPLE_RATE, Pcm
from roomscribe.objectstore import ObjectStore


def expand_filepath(
    template: str, room: RoomState, track_sid: str, track: TrackState | None, now_ns: int
) -> str:
    """Fill egress's filename templates and add ``.ogg`` when there is no extension.

    ``{time}`` and ``{utc}`` are the request's time on the emulator's clock.
    """
    now = time.gmtime(now_ns // NS_PER_S)
    values = {
        "{room_name}": room.name,
        "{room_id}": room.sid,
        "{track_id}": track_sid,
        "{track_type}": "AUDIO",
        "{track_source}": "MICROPHONE",
        "{publisher_identity}": "" if track is None else track.identity,
        "{time}": time.strftime("%Y-%m-%dT%H%M%S", now),
        "{utc}": time.strftime("%Y%m%d%H%M%S", now),
    }
    path = template or "{track_id}-{time}"
    for placeholder, value in values.items():
        path = path.replace(placeholder, value)
    if "." not in path.rsplit("/", 1)[-1]:
        path += ".ogg"
    return path


def upload_location(output: DirectFileOutput, key: str) -> str:
    """Where LiveKit would say the file was uploaded."""
    if not output.HasField("s3"):
        return key
    s3 = output.s3
    if s3.endpoint:
        return f"{s3.endpoint.rstrip('/')}/{s3.bucket}/{key}"
    return f"https://{s3.bucket}.s3.amazonaws.com/{key}"


async def store_recording(
    objects: ObjectStore, pcm: Pcm, *, key: str, location: str, start_ns: int, stop_ns: int
) -> FileInfo:
    """Encode a recorded span to OGG/Opus, store it under ``key``, and describe it.

    Args:
        objects: Where the file goes.
        pcm: The samples recorded (16 kHz mono).
        key: The object key (the egress's expanded ``filepath``).
        location: The location to report.
        start_ns: When recording started (the file's ``started_at``).
        stop_ns: When it stopped (the file's ``ended_at``).

    Returns:
        The FileInfo, with ``duration`` the length of the audio in the file.

    Raises:
        ObjectStoreError: The store refused the file.
        OSError: The store could not be written.
    """
    # Encoding is CPU-bound: off the event loop.
    data = await asyncio.to_thread(encode_ogg_opus, pcm)
    stored = await objects.put_bytes(key, data, content_type="audio/ogg")
    return FileInfo(
        filename=key,
        started_at=start_ns,
        ended_at=stop_ns,
        duration=pcm.size * NS_PER_S // TARGET_SAMPLE_RATE,
        size=stored.size,
        location=location,
    )
