"""The summarizer contract: the :class:`Summarizer` protocol, its error and the empty summary.

Everything else in the package builds on these; callers outside it catch :class:`SummaryError`
and type their summarizer as :class:`Summarizer`.
"""

from __future__ import annotations

from typing import Protocol

from orchestrator_service.summary.timeline import TimelineEntry
from roomscribe.errors import RoomscribeError
from roomscribe.models import Summary

#: ``Summary.model`` when nothing was transcribed (no summarizer ran).
EMPTY_MODEL = "none (nothing transcribed)"


class SummaryError(RoomscribeError):
    """A summary could not be produced; the transcript and the room are left as they were.

    Attributes:
        transient: ``True`` when trying again later may succeed (rate limits, outages, a
            model that answered badly twice); ``False`` for refusals no retry changes (bad
            key, unknown model).
    """

    def __init__(self, message: str, *, transient: bool) -> None:
        super().__init__(message)
        self.transient = transient


class Summarizer(Protocol):
    """Turns a meeting's timeline into a :class:`~roomscribe.models.Summary`."""

    async def summarize(self, timeline: list[TimelineEntry], *, participants: list[str]) -> Summary:
        """Summarize the meeting.

        Args:
            timeline: The whole meeting, as
                :func:`~orchestrator_service.summary.timeline.build_timeline` returns it.
            participants: Identities of everyone in the room (also those who never spoke:
                they may still be given action items).

        Raises:
            SummaryError: no summary could be produced.
        """
        ...

    async def aclose(self) -> None:
        """Release connections (called once, at shutdown)."""
        ...


def empty_summary() -> Summary:
    """The summary of a meeting in which nothing was transcribed (no model is asked)."""
    return Summary(text="Nothing was transcribed in this meeting.", model=EMPTY_MODEL)
