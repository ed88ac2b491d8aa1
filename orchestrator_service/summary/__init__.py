"""Meeting summaries: a speaker-attributed timeline, an LLM (or extract), validated citations.

When a room reaches ``summarizing``, :func:`summarize_room` reads every ``best`` segment of
every track, sorts them onto one timeline and hands it to a :class:`Summarizer`:

- :class:`GeminiSummarizer` (``google-genai``, JSON schema response) when a Gemini key is set;
- :class:`OpenAICompatibleSummarizer` (Ollama, vLLM, llama.cpp server) when a base URL is set;
- :class:`ExtractiveSummarizer` otherwise: quoted sentences and cue-phrase action items, and
  labelled as such, so nobody mistakes it for an AI summary.

Both LLM summarizers share :class:`LLMSummarizer`: a meeting whose transcript exceeds the
section budget is summarized section by section and the partial results merged (in several
rounds if even the partials exceed the budget), so no part of a transcript is ever cut off.
Every action item must cite the segment ids it comes from; cited ids the model could not have
seen are dropped, and an item left without any valid citation is dropped too (an action item
nobody can trace back to the transcript is not worth storing). A malformed answer is retried
once with the error appended; 429, 5xx and timeouts are retried with exponential backoff.
Anything that still fails raises :class:`SummaryError` and leaves the transcript untouched.

The modules, each one concept (a module imports only those listed before it):

- ``timeline``: :class:`TimelineEntry`, :func:`build_timeline`, speaker labels, sections;
- ``base``: the :class:`Summarizer` protocol, :class:`SummaryError`, the empty summary;
- ``schema``: the JSON answer a model must give (:class:`LLMSummary`, :func:`parse_answer`);
- ``citations``: the roster and answer validation (:class:`ValidationReport`);
- ``prompts``: the system prompts and the prompts of section and merge calls;
- ``retry``: :class:`RetryPolicy` and the transient failures it applies to;
- ``mapreduce``: :class:`LLMSummarizer`, the section/merge map-reduce;
- ``gemini``, ``openai_compat``, ``extractive``: the three summarizers;
- ``factory``: :func:`summarizer_from_settings`;
- ``room``: :func:`summarize_room`.
"""

from orchestrator_service.summary.base import EMPTY_MODEL, Summarizer, SummaryError
from orchestrator_service.summary.citations import ValidationReport
from orchestrator_service.summary.extractive import EXTRACTIVE_MODEL, ExtractiveSummarizer
from orchestrator_service.summary.factory import summarizer_from_settings
from orchestrator_service.summary.gemini import (
    DEFAULT_GEMINI_API_VERSION,
    DEFAULT_GEMINI_MODEL,
    GeminiSummarizer,
)
from orchestrator_service.summary.mapreduce import DEFAULT_SECTION_CHARS, LLMSummarizer
from orchestrator_service.summary.openai_compat import OpenAICompatibleSummarizer
from orchestrator_service.summary.retry import RETRYABLE_STATUSES, RetryPolicy
from orchestrator_service.summary.room import summarize_room
from orchestrator_service.summary.schema import (
    AnswerFormatError,
    LLMActionItem,
    LLMParticipantActions,
    LLMSummary,
    parse_answer,
)
from orchestrator_service.summary.timeline import (
    TimelineEntry,
    build_timeline,
    format_offset,
    render_timeline,
    speaker_labels,
    split_sections,
)

__all__ = [
    "DEFAULT_GEMINI_API_VERSION",
    "DEFAULT_GEMINI_MODEL",
    "DEFAULT_SECTION_CHARS",
    "EMPTY_MODEL",
    "EXTRACTIVE_MODEL",
    "RETRYABLE_STATUSES",
    "AnswerFormatError",
    "ExtractiveSummarizer",
    "GeminiSummarizer",
    "LLMActionItem",
    "LLMParticipantActions",
    "LLMSummarizer",
    "LLMSummary",
    "OpenAICompatibleSummarizer",
    "RetryPolicy",
    "Summarizer",
    "SummaryError",
    "TimelineEntry",
    "ValidationReport",
    "build_timeline",
    "format_offset",
    "parse_answer",
    "render_timeline",
    "speaker_labels",
    "split_sections",
    "summarize_room",
    "summarizer_from_settings",
]
