"""The summary made without an LLM: :class:`ExtractiveSummarizer`.

It quotes the transcript's most central sentences and takes sentences with cue phrases ("I
will", "can you") as action items, and says so in its text, so nobody mistakes it for an AI
summary.
"""

from __future__ import annotations

import math
import re
from collections import Counter

from orchestrator_service.summary.base import empty_summary
from orchestrator_service.summary.citations import CitedItem, Roster, group_actions
from orchestrator_service.summary.timeline import TimelineEntry, format_offset
from roomscribe.models import Summary

#: ``Summary.model`` of the extract made when no LLM is configured.
EXTRACTIVE_MODEL = "extractive (no LLM configured)"

_SENTENCE = re.compile(r"(?<=[.!?])\s+")
_WORD = re.compile(r"[^\W\d_]{3,}", re.UNICODE)
_ACTION_CUE = re.compile(
    r"\b(i will|i'll|i am going to|i'm going to|let's|let us|we should|we need to|"
    r"we'll|can you|could you|would you|please|todo|to-do|to do list|action item|"
    r"follow up|follow-up)\b",
    re.IGNORECASE,
)
_REQUEST_CUE = re.compile(r"\b(can you|could you|would you|please)\b", re.IGNORECASE)
# fmt: off
_STOPWORDS = frozenset({
    "the", "and", "that", "this", "with", "have", "for", "you", "are", "was", "were", "but",
    "not", "they", "them", "then", "there", "what", "when", "which", "will", "would", "can",
    "could", "should", "just", "like", "about", "into", "from", "your", "our", "out", "its",
    "all", "any", "been", "had", "has", "how", "one", "get", "got", "yes", "yeah", "okay",
    "well", "also", "very", "really", "so",
})
# fmt: on


class ExtractiveSummarizer:
    """A summary without an LLM: quoted key sentences and cue-phrase action items.

    The text starts by saying it is an automatic extract, and ``Summary.model`` is
    :data:`EXTRACTIVE_MODEL`, so nobody mistakes it for an AI summary.

    Args:
        max_sentences: Most sentences quoted in the text.
        max_actions_per_participant: Most action items kept for one participant.
    """

    def __init__(self, *, max_sentences: int = 12, max_actions_per_participant: int = 20) -> None:
        self._max_sentences = max_sentences
        self._max_actions = max_actions_per_participant

    @property
    def model_label(self) -> str:
        """:data:`EXTRACTIVE_MODEL`."""
        return EXTRACTIVE_MODEL

    async def aclose(self) -> None:
        """Nothing to release."""

    async def summarize(self, timeline: list[TimelineEntry], *, participants: list[str]) -> Summary:
        """Quote the most central sentences and collect sentences with action cues."""
        if not timeline:
            return empty_summary()
        roster = Roster.of(timeline, participants)
        sentences = [
            (entry, sentence.strip())
            for entry in timeline
            for sentence in _SENTENCE.split(entry.text)
            if sentence.strip()
        ]
        frequency = Counter(
            word for _, sentence in sentences for word in set(self._words(sentence))
        )

        def centrality(sentence: str) -> float:
            # Longer sentences made of the meeting's recurring words score highest.
            words = self._words(sentence)
            return sum(frequency[w] for w in set(words)) / math.sqrt(len(words) + 1)

        scored = [(i, centrality(s)) for i, (_, s) in enumerate(sentences)]
        # Short remarks ("Yes.", "Thanks.") say little: quoted only when nothing longer was.
        candidates = [c for c in scored if len(sentences[c[0]][1].split()) >= 4] or scored
        wanted = max(3, min(self._max_sentences, len(sentences) // 15))
        chosen = sorted(i for i, _ in sorted(candidates, key=lambda c: -c[1])[:wanted])
        quotes = [
            f"[{format_offset(sentences[i][0].start_s)}] {sentences[i][0].speaker}: "
            f"{sentences[i][1]}"
            for i in chosen
        ]
        text = (
            "Automatic extract, not an AI summary (no LLM is configured): the statements "
            "below are quoted from the transcript, and action items are sentences with "
            'phrases such as "I will" or "can you".\n\n' + "\n".join(quotes)
        )
        items: list[CitedItem] = []
        counts: Counter[str] = Counter()
        for entry, sentence in sentences:
            if not _ACTION_CUE.search(sentence):
                continue
            owner = self._owner(entry, sentence, roster)
            if counts[owner] < self._max_actions:
                counts[owner] += 1
                items.append(CitedItem(owner, sentence, (entry.segment_id,)))
        return Summary(text=text, action_items=group_actions(items, roster), model=EXTRACTIVE_MODEL)

    @staticmethod
    def _words(sentence: str) -> list[str]:
        return [w for w in _WORD.findall(sentence.casefold()) if w not in _STOPWORDS]

    @staticmethod
    def _owner(entry: TimelineEntry, sentence: str, roster: Roster) -> str:
        # "Bob, can you send the deck?" is Bob's action, not the speaker's.
        if _REQUEST_CUE.search(sentence):
            lowered = sentence.casefold()
            for identity in roster.identities:
                if identity == entry.participant_identity:
                    continue
                names = {identity, roster.labels[identity].split(" (")[0]}
                if any(re.search(rf"\b{re.escape(n.casefold())}\b", lowered) for n in names):
                    return identity
        return entry.participant_identity
