"""What every benchmark prints: a two-column table, and with ``--json`` one JSON line last."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any


def percentile(values: Sequence[float], q: float) -> float:
    """The nearest-rank percentile (``q`` in 0..1) of a non-empty sequence."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def emit(
    result: Mapping[str, Any],
    *,
    as_json: bool,
    show: Callable[[str], bool] = lambda key: True,
) -> None:
    """Print ``result`` as a table (the keys ``show`` accepts), then as JSON when asked."""
    width = max(len(k) for k in result)
    for key, value in result.items():
        if show(key):
            print(f"{key:<{width}}  {value}")
    if as_json:
        print(json.dumps(result))
