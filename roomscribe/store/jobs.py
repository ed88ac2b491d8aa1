"""The Whisper job and egress-claim rules, written once for both backends.

A rule is the precondition it needs and the fields it sets, as dotted paths (the form
MongoDB's ``$set`` takes). MongoDB applies one as a single conditional update; SQLite checks
:func:`holds` on the track model and :func:`apply` s the same fields inside its transaction.
So the two backends cannot drift apart on what, say, a spent attempt leaves behind.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from roomscribe.models import EgressStatus, Track, TrackStatus

#: Fields a job sets on a track, by dotted path.
Fields = dict[str, Any]


def lease_expired_reason(max_attempts: int) -> str:
    """Why a track failed when its lease ran out on its last allowed attempt."""
    return f"Whisper job lease expired on the last of {max_attempts} attempts"


def attempts_spent_reason(attempts: int, error: str) -> str:
    """Why a track failed when its last allowed attempt reported an error."""
    return f"Whisper failed {attempts} times; last error: {error}"


def held_by(worker: str) -> Fields:
    """The precondition of every change by a claim's holder (a MongoDB filter)."""
    return {"status": TrackStatus.TRANSCRIBING, "job.worker": worker}


def holds(track: Track, worker: str) -> bool:
    """:func:`held_by` on a track model."""
    return track.status is TrackStatus.TRANSCRIBING and track.job.worker == worker


def claimed(worker: str, lease_until: datetime) -> Fields:
    """A claim by ``worker`` (the attempt count goes up by one besides)."""
    return {
        "status": TrackStatus.TRANSCRIBING,
        "status_reason": None,
        "job.worker": worker,
        "job.lease_until": lease_until,
    }


#: A job that finished: the track is transcribed and no longer leased.
COMPLETED: Fields = {
    "status": TrackStatus.TRANSCRIBED,
    "status_reason": None,
    "job.lease_until": None,
    "job.last_error": None,
}

#: A claim given back unfinished (shutdown); the attempt count goes down by one besides.
RELEASED: Fields = {"status": TrackStatus.RECORDED, "job.lease_until": None, "job.worker": None}


def retried(error: str) -> Fields:
    """A failed attempt with attempts left: back to ``recorded``, the error kept."""
    return {"status": TrackStatus.RECORDED, "job.last_error": error, "job.lease_until": None}


def spent(attempts: int, error: str) -> Fields:
    """A failed last attempt: the track fails, saying why."""
    return {
        "status": TrackStatus.FAILED,
        "status_reason": attempts_spent_reason(attempts, error),
        "job.last_error": error,
        "job.lease_until": None,
    }


def lease_lost(max_attempts: int) -> Fields:
    """A lease that expired on the last allowed attempt: the track fails."""
    return {
        "status": TrackStatus.FAILED,
        "status_reason": lease_expired_reason(max_attempts),
        "job.lease_until": None,
    }


def apply(track: Track, fields: Fields) -> None:
    """Set ``fields`` (dotted paths) on the track model."""
    for path, value in fields.items():
        *parents, name = path.split(".")
        target: Any = track
        for parent in parents:
            target = getattr(target, parent)
        setattr(target, name, value)


def egress_start_claimable(track: Track, now: datetime, stale_after_s: float) -> bool:
    """The rule of ``TranscriptStore.claim_egress_start`` (SQLite applies it in Python).

    Claimable while the track records with no egress id and no start claimed, or with a
    claim older than ``stale_after_s`` (its claimant died before recording the egress).
    """
    egress = track.egress
    if track.status is not TrackStatus.RECORDING or egress.id is not None:
        return False
    if egress.status is None:
        return True
    stale = (
        egress.updated_at is not None and (now - egress.updated_at).total_seconds() > stale_after_s
    )
    return egress.status is EgressStatus.STARTING and stale
