"""A LiveKit server emulator: the server API, webhooks and track egress, without LiveKit.

It speaks the part of LiveKit the orchestrator uses, over the wire as LiveKit does, so the real
``livekit-api`` client talks to it unchanged:

- Twirp endpoints ``POST /twirp/livekit.RoomService/{ListParticipants,ListRooms}`` and
  ``POST /twirp/livekit.Egress/{StartTrackEgress,StopEgress,ListEgress}``
  (:mod:`~devkit.livekit_emulator.twirp`). Bodies are protobuf (``application/protobuf``,
  what the client sends) or Twirp JSON (``application/json``). The ``Authorization: Bearer``
  token is checked with the API key and secret, then the grants: ``roomList`` for ListRooms,
  ``roomAdmin`` on the requested room for ListParticipants, ``roomRecord`` for egress.
  Errors are Twirp JSON errors. Like LiveKit, a missing grant is ``unauthenticated``
  ("permissions denied"), not ``permission_denied``.
- Webhooks signed as LiveKit signs them (:mod:`devkit.webhooks`) for a scripted room
  (:mod:`~devkit.livekit_emulator.rooms`): ``room_started``, ``participant_joined``,
  ``track_published``, ``track_unpublished``, ``participant_left``, ``room_finished``, and
  for each egress ``egress_started`` (STARTING), ``egress_updated`` (ACTIVE) and
  ``egress_ended`` (COMPLETE, LIMIT_REACHED, ABORTED or FAILED).
- Time: one clock (:mod:`~devkit.livekit_emulator.clock`; the wall clock unless one is
  given, e.g. a :class:`ManualClock` in tests or a :class:`ScaledClock` in the demo) stamps
  everything, with LiveKit's units: room ``creation_time`` and participant ``joined_at``
  in whole seconds beside their ``_ms`` fields, webhook ``created_at`` in whole seconds,
  egress and file times in nanoseconds.
- Track egress (:mod:`~devkit.livekit_emulator.egress`) that records what a track played
  while the egress ran, no more: a track plays its audio from the moment it is published,
  an egress starts recording when its start delay (``egress_start_delay_s``, 0 by default)
  has passed after the request and stops at StopEgress, when its track is unpublished, or
  by itself at its limit (``egress_limit_s``: EGRESS_LIMIT_REACHED while the track stays
  published). Its file is that span of the track, encoded to OGG/Opus (48 kHz mono, what
  LiveKit track egress writes for an Opus track, :func:`encode_ogg_opus`) and stored
  through the emulator's object store under the requested ``filepath``, with the span's
  start and stop as the file's ``started_at``/``ended_at``. The S3 settings in the
  request (bucket, endpoint, keys) are not used for writing: the object store passed to the
  emulator stands in for that bucket; they only shape the reported ``location``.

Simplifications, on purpose: ``egress_updated`` is sent only for ACTIVE, as LiveKit's
server does; an egress for a track that is not (or no longer) published starts and then
fails with "track not found", as a real egress that cannot subscribe does; an egress that
ran but recorded nothing (no time passed, or the track's audio had already ended) fails with
"no media received" and writes no file; a track plays nothing once its audio has run out
(though it stays published), so a recording is also clipped to the track's audio;
ListParticipants for an unknown room returns no participants, as LiveKit does.
"""

from devkit.livekit_emulator.clock import Clock, ManualClock, ScaledClock
from devkit.livekit_emulator.emulator import LiveKitEmulator
from devkit.livekit_emulator.opus import encode_ogg_opus
from devkit.livekit_emulator.twirp import TwirpError

__all__ = [
    "Clock",
    "LiveKitEmulator",
    "ManualClock",
    "ScaledClock",
    "TwirpError",
    "encode_ogg_opus",
]
