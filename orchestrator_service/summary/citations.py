"""Whom action items may name and what they may cite: the roster and answer validation.

A model's answer is trusted only as far as it can be traced back to the transcript:
:func:`validate_answer` drops cited ids the model was not shown, items left without a valid
citation and items of participants nobody in the meeting matches, and counts what it dropped
in a :class:`ValidationReport`. :func:`group_actions` turns what is left into the stored
per-participant action items.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass

from orchestrator_service.summary.schema import LLMSummary
from orchestrator_service.summary.timeline import TimelineEntry
from roomscribe.models import ActionItem, ParticipantActions


@dataclass(frozen=True)
class Roster:
    """The meeting's participants in order, and every way a model may name them.

    Attributes:
        identities: Every participant's identity, in meeting order.
        labels: Each identity's display label (the identity itself for non-speakers).
    """

    identities: tuple[str, ...]
    labels: Mapping[str, str]

    @classmethod
    def of(cls, timeline: Sequence[TimelineEntry], participants: Iterable[str]) -> Roster:
        """The roster of a meeting: ``participants`` first, then speakers not among them.

        Args:
            timeline: The meeting's timeline (it gives the speakers' labels).
            participants: Identities of everyone in the room.
        """
        labels = {e.participant_identity: e.speaker for e in timeline}
        identities = tuple(dict.fromkeys([*participants, *labels]))
        return cls(identities, {i: labels.get(i, i) for i in identities})

    def describe(self) -> str:
        """The participant list a prompt shows: ``- identity (shown as 'label')`` lines."""
        return "\n".join(f"- {i} (shown as {self.labels[i]!r})" for i in self.identities)

    def resolve(self, name: str) -> str | None:
        """The identity a model meant by ``name`` (identity, label or plain name), if any."""
        wanted = name.strip().casefold()
        candidates = [wanted]
        # "Alice (alice)" -> also try what is inside and outside the parentheses.
        inner = re.fullmatch(r"(.*?)\s*\((.*)\)", wanted)
        if inner:
            candidates += [inner.group(2).strip(), inner.group(1).strip()]
        for candidate in candidates:
            for identity in self.identities:
                if candidate == identity.casefold():
                    return identity
            matches = [
                i
                for i in self.identities
                if candidate == self.labels[i].casefold()
                or candidate == self.labels[i].split(" (")[0].casefold()
            ]
            if len(matches) == 1:
                return matches[0]
        return None


@dataclass
class ValidationReport:
    """What validation removed from the model's answers (logged with the summary).

    Attributes:
        invalid_citations: Cited ids that were not among the segments the model was shown.
        dropped_items: Action items removed because none of their citations was valid.
        unknown_participants: Participant names that matched nobody in the meeting (their
            items are dropped).
    """

    invalid_citations: int = 0
    dropped_items: int = 0
    unknown_participants: int = 0

    def add(self, other: ValidationReport) -> None:
        """Add another report's counts to this one."""
        self.invalid_citations += other.invalid_citations
        self.dropped_items += other.dropped_items
        self.unknown_participants += other.unknown_participants


@dataclass(frozen=True)
class CitedItem:
    """A validated action item.

    Attributes:
        participant: The owner's identity.
        text: The action, whitespace normalized.
        evidence: The segment ids it cites (at least one, all of them valid).
    """

    participant: str
    text: str
    evidence: tuple[str, ...]


@dataclass(frozen=True)
class Partial:
    """A validated (partial) result: what one section, or a merge of sections, produced.

    Attributes:
        summary: The summary text.
        items: The validated action items.
        start_s: Start of the part of the meeting it covers (seconds from the meeting's start).
        end_s: End of that part.
    """

    summary: str
    items: tuple[CitedItem, ...]
    start_s: float
    end_s: float


def validate_answer(
    answer: LLMSummary, *, known_ids: Collection[str], roster: Roster
) -> tuple[list[CitedItem], ValidationReport]:
    """Keep only action items owned by a known participant and citing ids the model saw.

    Invalid ids are dropped from an item's evidence; an item left without evidence is
    dropped, as is every item of a participant nobody in the meeting matches. Items of one
    participant with the same text are merged (their evidence united).

    Args:
        answer: The model's parsed answer.
        known_ids: The segment ids the model may cite.
        roster: The meeting's participants.

    Returns:
        The items kept, and what was dropped.
    """
    report = ValidationReport()
    merged: dict[tuple[str, str], list[str]] = {}
    texts: dict[tuple[str, str], str] = {}
    for group in answer.action_items:
        identity = roster.resolve(group.participant)
        if identity is None:
            report.unknown_participants += 1
            report.dropped_items += len(group.actions)
            continue
        for action in group.actions:
            text = " ".join(action.text.split())
            cited = list(dict.fromkeys(e.strip() for e in action.evidence))
            valid = [e for e in cited if e in known_ids]
            report.invalid_citations += len(cited) - len(valid)
            if not text or not valid:
                report.dropped_items += 1
                continue
            key = (identity, text.casefold())
            texts.setdefault(key, text)
            evidence = merged.setdefault(key, [])
            evidence.extend(e for e in valid if e not in evidence)
    items = [CitedItem(key[0], texts[key], tuple(ids)) for key, ids in merged.items()]
    return items, report


def group_actions(items: Iterable[CitedItem], roster: Roster) -> list[ParticipantActions]:
    """Every participant of the meeting, in order, with their action items (maybe none)."""
    by_identity: dict[str, list[ActionItem]] = {i: [] for i in roster.identities}
    for item in items:
        by_identity.setdefault(item.participant, []).append(
            ActionItem(text=item.text, evidence=list(item.evidence))
        )
    return [ParticipantActions(participant_identity=i, actions=a) for i, a in by_identity.items()]
