"""The map-reduce over an LLM that both providers share: :class:`LLMSummarizer`.

A meeting whose transcript exceeds the section budget is summarized section by section and the
partial results merged (in several rounds if even the partials exceed the budget), so no part
of a transcript is ever cut off. Each answer is parsed and its citations validated; a malformed
answer is retried once with the error appended, and transient failures (429, 5xx, timeouts)
are retried with the backoff of a :class:`~orchestrator_service.summary.retry.RetryPolicy`.
Providers implement one model call, :meth:`LLMSummarizer._generate`.
"""

from __future__ import annotations

import abc
import asyncio
import logging
from dataclasses import dataclass, field

from orchestrator_service.summary.base import SummaryError, empty_summary
from orchestrator_service.summary.citations import (
    Partial,
    Roster,
    ValidationReport,
    group_actions,
    validate_answer,
)
from orchestrator_service.summary.prompts import (
    MERGE_SYSTEM,
    SECTION_SYSTEM,
    render_merge_prompt,
    render_partial,
    render_retry_prompt,
    render_section_prompt,
)
from orchestrator_service.summary.retry import RetryPolicy, TransientError
from orchestrator_service.summary.schema import AnswerFormatError, parse_answer
from orchestrator_service.summary.timeline import TimelineEntry, split_sections
from roomscribe.models import Summary

# The package's logger, as before the module was split out of it.
log = logging.getLogger("orchestrator_service.summary")

#: Transcript characters one LLM call sees at most (longer meetings are split into sections).
DEFAULT_SECTION_CHARS = 24_000


@dataclass(frozen=True)
class _Call:
    """One prompt: what the model is shown and which ids it may cite."""

    system: str
    prompt: str
    known_ids: frozenset[str]
    start_s: float
    end_s: float
    label: str = field(default="summary")


class LLMSummarizer(abc.ABC):
    """Map-reduce summaries over an LLM that answers JSON; providers implement one call.

    Args:
        section_chars: Transcript characters one call sees at most.
        retry: Backoff for rate limits, outages and timeouts.
        max_concurrency: Section calls in flight at once (rate limits are per minute).

    Raises:
        ValueError: ``section_chars`` is not positive.
    """

    def __init__(
        self,
        *,
        section_chars: int = DEFAULT_SECTION_CHARS,
        retry: RetryPolicy | None = None,
        max_concurrency: int = 2,
    ) -> None:
        if section_chars < 1:
            raise ValueError("section_chars must be positive")
        self._section_chars = section_chars
        self._retry = retry or RetryPolicy()
        self._max_concurrency = max(1, max_concurrency)

    @property
    @abc.abstractmethod
    def model_label(self) -> str:
        """What ``Summary.model`` says produced the summary (provider and model)."""

    @abc.abstractmethod
    async def _generate(self, system: str, prompt: str) -> str:
        """Make one model call and return its text.

        Raises:
            TransientError: a failure worth retrying after a pause.
            AnswerFormatError: the model answered without usable text.
            SummaryError: a refusal no retry changes.
        """

    @abc.abstractmethod
    async def aclose(self) -> None:
        """Release connections."""

    async def summarize(self, timeline: list[TimelineEntry], *, participants: list[str]) -> Summary:
        """Summarize the meeting, in sections and merged when it is long.

        Args:
            timeline: The whole meeting.
            participants: Identities of everyone in the room.

        Raises:
            SummaryError: a call kept failing, was refused, or was answered badly twice.
        """
        if not timeline:
            return empty_summary()
        roster = Roster.of(timeline, participants)
        report = ValidationReport()
        sections = split_sections(timeline, self._section_chars)
        limit = asyncio.Semaphore(self._max_concurrency)
        calls = [self._section_call(s, i, len(sections), roster) for i, s in enumerate(sections)]
        partials = await self._run_all(calls, roster, report, limit)
        rounds = 0
        while len(partials) > 1:
            rounds += 1
            groups = self._merge_groups(partials)
            merges = [self._merge_call(g, roster) for g in groups if len(g) > 1]
            merged = iter(await self._run_all(merges, roster, report, limit))
            partials = [next(merged) if len(g) > 1 else g[0] for g in groups]
        final = partials[0]
        log.info(
            "meeting summarized",
            extra={
                "model": self.model_label,
                "segments": len(timeline),
                "sections": len(sections),
                "merge_rounds": rounds,
                "action_items": len(final.items),
                "invalid_citations": report.invalid_citations,
                "dropped_items": report.dropped_items,
                "unknown_participants": report.unknown_participants,
            },
        )
        return Summary(
            text=final.summary,
            action_items=group_actions(final.items, roster),
            model=self.model_label,
        )

    def _section_call(
        self, section: list[TimelineEntry], index: int, total: int, roster: Roster
    ) -> _Call:
        return _Call(
            system=SECTION_SYSTEM,
            prompt=render_section_prompt(section, index, total, roster),
            known_ids=frozenset(e.segment_id for e in section),
            start_s=section[0].start_s,
            end_s=section[-1].end_s,
            label="section" if total > 1 else "summary",
        )

    def _merge_groups(self, partials: list[Partial]) -> list[list[Partial]]:
        # Groups stay under the budget where they can, but hold at least two partials each
        # so that every round shrinks the list (a lone leftover joins the group before it).
        groups: list[list[Partial]] = []
        current: list[Partial] = []
        size = 0
        for partial in partials:
            length = len(render_partial(1, 1, partial)) + 2
            if len(current) >= 2 and size + length > self._section_chars:
                groups.append(current)
                current, size = [], 0
            current.append(partial)
            size += length
        if len(current) == 1 and groups:
            groups[-1].append(current[0])
        else:
            groups.append(current)
        return groups

    def _merge_call(self, group: list[Partial], roster: Roster) -> _Call:
        return _Call(
            system=MERGE_SYSTEM,
            prompt=render_merge_prompt(group, roster),
            # The merge may cite only what its parts cited: ids look sequential, so a model
            # could guess an existing id it never saw.
            known_ids=frozenset(e for p in group for item in p.items for e in item.evidence),
            start_s=group[0].start_s,
            end_s=group[-1].end_s,
            label="merge",
        )

    async def _run_all(
        self,
        calls: list[_Call],
        roster: Roster,
        report: ValidationReport,
        limit: asyncio.Semaphore,
    ) -> list[Partial]:
        async def run(call: _Call) -> Partial:
            async with limit:
                partial, call_report = await self._ask(call, roster)
            report.add(call_report)
            return partial

        # A TaskGroup cancels the other calls as soon as one fails for good; its failure is
        # raised as itself, not as the group, so callers catch a plain SummaryError.
        try:
            async with asyncio.TaskGroup() as group:
                tasks = [group.create_task(run(call)) for call in calls]
        except BaseExceptionGroup as failed:
            first = failed.exceptions[0]
            if len(failed.exceptions) == 1 or isinstance(first, SummaryError):
                raise first from None
            raise
        return [task.result() for task in tasks]

    async def _ask(self, call: _Call, roster: Roster) -> tuple[Partial, ValidationReport]:
        """One validated answer: a malformed one is retried once with the error appended."""
        prompt = call.prompt
        for attempt in (1, 2):
            try:
                answer = parse_answer(await self._generate_with_retry(call.system, prompt))
            except AnswerFormatError as exc:
                if attempt == 2:
                    raise SummaryError(
                        f"{self.model_label} answered the {call.label} request badly twice; "
                        f"last problem: {exc}",
                        transient=True,
                    ) from exc
                log.warning(
                    "malformed model answer, asking again",
                    extra={"model": self.model_label, "call": call.label, "problem": str(exc)},
                )
                prompt = render_retry_prompt(call.prompt, exc)
                continue
            items, report = validate_answer(answer, known_ids=call.known_ids, roster=roster)
            return Partial(answer.summary, tuple(items), call.start_s, call.end_s), report
        raise AssertionError("unreachable")

    async def _generate_with_retry(self, system: str, prompt: str) -> str:
        policy = self._retry
        for failures in range(1, policy.attempts + 1):
            try:
                return await self._generate(system, prompt)
            except TransientError as exc:
                if failures == policy.attempts:
                    raise SummaryError(
                        f"{self.model_label} failed {failures} times; last error: {exc}",
                        transient=True,
                    ) from exc
                pause = policy.delay(failures, exc.retry_after_s)
                log.warning(
                    "model call failed, retrying",
                    extra={
                        "model": self.model_label,
                        "error": str(exc),
                        "attempt": failures,
                        "retry_in_s": round(pause, 3),
                    },
                )
                await asyncio.sleep(pause)
        raise AssertionError("unreachable")
