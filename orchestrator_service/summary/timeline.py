"""The meeting's timeline: every segment of every track, in time order, with its speaker.

This is what summarizers read: :func:`build_timeline` places segments on one clock and labels
their speakers, :meth:`TimelineEntry.render` is the line a prompt shows, and
:func:`split_sections` cuts a long timeline into prompt-sized sections at segment boundaries.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from roomscribe.models import Segment, Track


@dataclass(frozen=True)
class TimelineEntry:
    """One segment placed on the meeting's timeline and attributed to its speaker.

    Attributes:
        segment_id: The stored segment's id (what action items cite).
        participant_identity: The speaker's LiveKit identity.
        speaker: The speaker's display label (name, or identity; unique within the meeting).
        track_sid: The track the segment belongs to.
        start_s: Seconds from the meeting's start.
        end_s: Seconds from the meeting's start.
        text: What was said.
    """

    segment_id: str
    participant_identity: str
    speaker: str
    track_sid: str
    start_s: float
    end_s: float
    text: str

    def render(self) -> str:
        """The line a prompt shows: ``[00:01:23] Alice (seg TR_a-000083000): text``."""
        return (
            f"[{format_offset(self.start_s)}] {self.speaker} (seg {self.segment_id}): {self.text}"
        )


def format_offset(seconds: float) -> str:
    """Format seconds from the meeting's start as ``HH:MM:SS``."""
    total = max(0, int(seconds))
    return f"{total // 3600:02d}:{total % 3600 // 60:02d}:{total % 60:02d}"


def speaker_labels(identities: Iterable[str], tracks: Iterable[Track] = ()) -> dict[str, str]:
    """Map each identity to a display label: its name, or the identity when it has none.

    Two participants with the same name get their identities appended (``Alex (alex-1)``),
    so that neither a reader nor the model can confuse them.
    """
    names: dict[str, str] = {}
    for track in tracks:
        if track.participant_name and track.participant_identity not in names:
            names[track.participant_identity] = track.participant_name.strip()
    ordered = list(dict.fromkeys([*identities, *names]))
    plain = {identity: names.get(identity) or identity for identity in ordered}
    counts = Counter(label.casefold() for label in plain.values())
    return {
        identity: label
        if counts[label.casefold()] == 1 or label == identity
        else f"{label} ({identity})"
        for identity, label in plain.items()
    }


def build_timeline(
    segments: Iterable[Segment], tracks: Iterable[Track] = ()
) -> list[TimelineEntry]:
    """Sort all segments of all tracks by absolute time and attribute each to its speaker.

    Args:
        segments: Segments of any tracks and sources (usually a room's ``best`` transcript).
        tracks: The room's tracks; they give display names and the meeting's start (the
            earliest track start). Without them identities are used and the first segment
            starts the meeting.

    Returns:
        Entries sorted by ``(abs_start, segment id)``, with times relative to the meeting's
        start. Segments without text are left out: they carry nothing to summarize.
    """
    tracks = list(tracks)
    spoken = sorted((s for s in segments if s.text.strip()), key=lambda s: (s.abs_start, s.id))
    starts = [s.abs_start for s in spoken] + [t.earliest_s() for t in tracks]
    origin = min(starts, default=0.0)
    labels = speaker_labels((s.participant_identity for s in spoken), tracks)
    return [
        TimelineEntry(
            segment_id=s.id,
            participant_identity=s.participant_identity,
            speaker=labels[s.participant_identity],
            track_sid=s.track_sid,
            start_s=s.abs_start - origin,
            end_s=s.abs_end - origin,
            text=" ".join(s.text.split()),
        )
        for s in spoken
    ]


def render_timeline(timeline: Sequence[TimelineEntry]) -> str:
    """The timeline as prompt text, one :meth:`TimelineEntry.render` line per segment."""
    return "\n".join(entry.render() for entry in timeline)


def split_sections(timeline: Sequence[TimelineEntry], max_chars: int) -> list[list[TimelineEntry]]:
    """Split a timeline at segment boundaries into sections of at most ``max_chars``.

    A single line longer than the budget gets a section of its own rather than being cut.

    Raises:
        ValueError: ``max_chars`` is not positive.
    """
    if max_chars < 1:
        raise ValueError("max_chars must be positive")
    sections: list[list[TimelineEntry]] = []
    current: list[TimelineEntry] = []
    size = 0
    for entry in timeline:
        length = len(entry.render()) + 1  # the newline joining it to the next line
        if current and size + length > max_chars:
            sections.append(current)
            current, size = [], 0
        current.append(entry)
        size += length
    if current:
        sections.append(current)
    return sections
