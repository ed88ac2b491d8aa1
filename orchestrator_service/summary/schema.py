"""The JSON object every model call must answer, and :func:`parse_answer` that reads it.

:class:`LLMSummary` is both what answers are validated against and the response schema sent
to Gemini. Only the shape is checked here; whether the cited ids exist and the named
participants took part is checked by :mod:`orchestrator_service.summary.citations`.
"""

from __future__ import annotations

import json
import re

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator


class LLMActionItem(BaseModel):
    """An action item as the model states it."""

    model_config = ConfigDict(extra="ignore")

    text: str
    evidence: list[str]


class LLMParticipantActions(BaseModel):
    """One participant's action items as the model states them."""

    model_config = ConfigDict(extra="ignore")

    participant: str
    actions: list[LLMActionItem]


class LLMSummary(BaseModel):
    """The JSON object every model call must answer (also sent to Gemini as its schema)."""

    model_config = ConfigDict(extra="ignore")

    summary: str
    action_items: list[LLMParticipantActions]

    @field_validator("summary")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("the summary is empty")
        return value.strip()


class AnswerFormatError(ValueError):
    """The model answered, but not with the JSON object it was asked for."""


_FENCE = re.compile(r"^\s*```(?:json)?\s*(.*?)\s*```\s*$", re.DOTALL | re.IGNORECASE)


def parse_answer(text: str) -> LLMSummary:
    """Parse a model's answer into :class:`LLMSummary`.

    A Markdown code fence around the object is tolerated.

    Args:
        text: The model's answer.

    Returns:
        The answer, its summary stripped.

    Raises:
        AnswerFormatError: the text is not JSON or does not fit the schema; the message
            names the problem without quoting the answer.
    """
    # Local models in JSON mode still like to wrap their object in a Markdown fence.
    fenced = _FENCE.match(text)
    body = fenced.group(1) if fenced else text
    try:
        data = json.loads(body)
    except json.JSONDecodeError as exc:
        raise AnswerFormatError(f"the answer is not valid JSON ({exc.msg} at {exc.pos})") from exc
    try:
        return LLMSummary.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '(root)'}: {err['msg']}"
            for err in exc.errors()[:5]
        )
        raise AnswerFormatError(f"the answer does not match the schema: {problems}") from exc
