"""How :mod:`bench.stt_load` judges and reports steps: the limit, the rules, tables and keys.

Pure functions of the step summaries (the unit tests check the rules and the limit): which
steps hold real time or keep up, the stream limit, the default client counts, the tables
printed per server, and the flat JSON keys.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable
from typing import Any

from bench.live_meters import ratio, rounded

SYNTHETIC_CLIENTS = "1,5,10,20,30,50"

# Real-time criteria (see bench.stt_load's docstring; WARM_S is bench.live_audio's).
PARTIAL_P95_BOUND_MS = 500.0
SEND_LAG_P95_BOUND_MS = 100.0
BACKLOG_BOUND_MS = 2000.0
ADDED_LATENCY_AT = 30
CAPACITY_GOAL = 0.9


# --- The limit and the rules ------------------------------------------------------------------
def stream_limit(cores: int, paced_cpu_per_audio_s: float) -> float:
    """Real-time streams the cores hold if they only ran bare recognizers at that cost."""
    return cores / paced_cpu_per_audio_s if paced_cpu_per_audio_s > 0 else 0.0


def max_holding(
    steps: dict[int, dict[str, Any]], rule: Callable[[dict[str, Any]], bool] | None = None
) -> int:
    """The largest N such that every step up to it met ``rule`` (default: real time)."""
    best = 0
    for n in sorted(steps):
        if not (rule or holds_realtime)(steps[n]):
            break
        best = n
    return best


def default_clients(limit: float, synthetic: bool) -> str:
    """Steps 1, 2, ... up to 1.5 x the limit (a real model), or the synthetic model's set."""
    if synthetic:
        return SYNTHETIC_CLIENTS
    top = max(2, math.ceil(limit * 1.5))
    return ",".join(str(n) for n in range(1, top + 1))


def keeps_up(step: dict[str, Any]) -> bool:
    """Every stream served whole and on time, whatever its partial latency.

    No dropped audio, no refused stream, no error or abnormal close, clients kept pace, and
    the recognizers were not seconds behind at the end (``end`` -> last final p95 <= 2 s:
    every stream of a step ends at once, so this includes that burst).
    """
    return (
        step["dropped_ms"] == 0
        and not step.get("refused")
        and not step["errors"]
        and step["abnormal_closes"] == 0
        and (step["send_lag_p95_ms"] or 0.0) <= SEND_LAG_P95_BOUND_MS
        and (step["end_final_p95_ms"] or 0.0) <= BACKLOG_BOUND_MS
    )


def holds_realtime(step: dict[str, Any]) -> bool:
    """:func:`keeps_up`, and partial p95 <= 500 ms."""
    return (
        keeps_up(step)
        and step["partial_p95_ms"] is not None
        and step["partial_p95_ms"] <= PARTIAL_P95_BOUND_MS
    )


def holds_realtime_steady(step: dict[str, Any]) -> bool:
    """:func:`keeps_up`, and partial p95 <= 500 ms past each stream's first ``WARM_S``."""
    steady = step.get("partial_steady_p95_ms")
    return keeps_up(step) and steady is not None and steady <= PARTIAL_P95_BOUND_MS


# --- Tables and JSON keys ---------------------------------------------------------------------
def fmt(value: Any, digits: int = 0) -> str:
    """A table cell: ``-`` for ``None``, a float with ``digits`` places."""
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


TABLE_LEGEND = (
    "part/srv: partial latency, client side / service side (audio received -> sent); fin: "
    "endpointed finals; end>fin: end sent -> last final; drop: dropped audio (ms, all "
    "clients); ref: refused streams; lag: client send lag; add: pipeline added latency "
    "(/metrics); cpu: server process (loop: its event loop thread; rec: inside recognizer "
    "calls); cpu/s: server CPU s per audio s; cost: that / the bare paced recognizer's; "
    "cli: client process; oth: CPU used by none of the bench's processes (other work on the "
    "box); rss: server resident set, peak MB. Latencies in ms, CPU in % of one core."
)


def print_table(title: str, steps: dict[int, dict[str, Any]], paced_ref: float) -> None:
    """One row per step; see TABLE_LEGEND."""
    columns = (
        ("N", 3),
        ("part50", 6),
        ("part95", 6),
        ("srv95", 6),
        ("fin95", 6),
        ("end>fin", 7),
        ("drop", 5),
        ("ref", 3),
        ("lag95", 6),
        ("add95", 6),
        ("cpu%", 5),
        ("loop%", 5),
        ("rec%", 5),
        ("cpu/s", 6),
        ("cost", 5),
        ("cli%", 5),
        ("oth%", 5),
        ("rss", 6),
        ("real time", 9),
    )
    print(title)
    head = " ".join(f"{name:>{width}}" for name, width in columns)
    print(head)
    print("-" * len(head))
    for n, s in steps.items():
        cells = (
            n,
            fmt(s["partial_p50_ms"]),
            fmt(s["partial_p95_ms"]),
            fmt(s["server_partial_p95_ms"]),
            fmt(s["final_p95_ms"]),
            fmt(s["end_final_p95_ms"]),
            s["dropped_ms"],
            s["refused"],
            fmt(s["send_lag_p95_ms"], 1),
            fmt(s["added_p95_ms"], 1),
            fmt(s["server_cpu_pct"]),
            fmt(s["loop_cpu_pct"]),
            fmt(s["recognizer_cpu_pct"]),
            fmt(s["cpu_per_audio_s"], 3),
            fmt(ratio(s["cpu_per_audio_s"], paced_ref, 2), 2),
            fmt(s["client_cpu_pct"]),
            fmt(s["other_cpu_pct"]),
            fmt(s["rss_peak_mb"]),
            "yes" if holds_realtime(s) else "NO",
        )
        print(" ".join(f"{cell:>{width}}" for cell, (_, width) in zip(cells, columns, strict=True)))
    print()


def step_keys(prefix: str, steps: dict[int, dict[str, Any]], paced_ref: float) -> dict[str, Any]:
    """The flat JSON keys of every step, ``{prefix}n{N}_...``."""
    out: dict[str, Any] = {}
    for n, s in steps.items():
        p = f"{prefix}n{n}_"
        out |= {
            f"{p}partial_p50_ms": rounded(s["partial_p50_ms"]),
            f"{p}partial_p95_ms": rounded(s["partial_p95_ms"]),
            f"{p}partial_steady_p95_ms": rounded(s["partial_steady_p95_ms"]),
            f"{p}server_partial_p95_ms": rounded(s["server_partial_p95_ms"]),
            f"{p}final_p50_ms": rounded(s["final_p50_ms"]),
            f"{p}final_p95_ms": rounded(s["final_p95_ms"]),
            f"{p}end_final_p95_ms": rounded(s["end_final_p95_ms"]),
            f"{p}end_close_p95_ms": rounded(s["end_close_p95_ms"]),
            f"{p}dropped_ms": s["dropped_ms"],
            f"{p}refused": s["refused"],
            f"{p}send_lag_p95_ms": rounded(s["send_lag_p95_ms"], 2),
            f"{p}added_p95_ms": rounded(s["added_p95_ms"]),
            f"{p}cpu_pct": rounded(s["server_cpu_pct"]),
            f"{p}machine_cpu_pct": rounded(s["server_machine_pct"]),
            f"{p}loop_cpu_pct": rounded(s["loop_cpu_pct"]),
            f"{p}recognizer_cpu_pct": rounded(s["recognizer_cpu_pct"]),
            f"{p}cpu_per_audio_s": rounded(s["cpu_per_audio_s"], 4),
            f"{p}cpu_cost_ratio": ratio(s["cpu_per_audio_s"], paced_ref),
            f"{p}client_cpu_pct": rounded(s["client_cpu_pct"]),
            f"{p}box_busy_pct": rounded(s["machine_busy_pct"]),
            f"{p}other_cpu_pct": rounded(s["other_cpu_pct"]),
            f"{p}rss_mb": rounded(s["rss_peak_mb"]),
            f"{p}recognizer_rtf": rounded(s["recognizer_rtf"], 4),
            f"{p}partials": s["partials"],
            f"{p}finals": s["finals"],
            f"{p}realtime": holds_realtime(s),
        }
    return out


def side_summary(
    prefix: str, steps: dict[int, dict[str, Any]], baseline_mb: float, limit: float
) -> dict[str, Any]:
    """Capacity, and CPU and memory per stream at the largest step that kept up."""
    best = max_holding(steps)
    sustained = max_holding(steps, keeps_up)
    steady = max_holding(steps, holds_realtime_steady)
    at = steps.get(sustained)
    return {
        f"{prefix}max_realtime_clients": best,
        f"{prefix}max_realtime_steady_clients": steady,
        f"{prefix}max_sustained_clients": sustained,
        f"{prefix}capacity_ratio": ratio(best, limit),
        f"{prefix}steady_capacity_ratio": ratio(steady, limit),
        f"{prefix}sustained_capacity_ratio": ratio(sustained, limit),
        f"{prefix}cpu_per_audio_s_at_max": rounded(at["cpu_per_audio_s"], 4) if at else None,
        f"{prefix}memory_per_stream_mb": (
            round((at["rss_peak_mb"] - baseline_mb) / sustained, 1) if at and sustained else None
        ),
        f"{prefix}rss_idle_mb": round(baseline_mb, 1),
    }


def compare_with_peer(
    steps: dict[int, dict[str, Any]], peer_steps: dict[int, dict[str, Any]]
) -> dict[str, Any]:
    """Roomscribe against the peer at the largest N both kept up (same clients, same audio)."""
    both = [n for n in steps if n in peer_steps and keeps_up(steps[n]) and keeps_up(peer_steps[n])]
    if not both:
        return {"vs_peer_at_n": None}
    n = max(both)
    ours, theirs = steps[n], peer_steps[n]
    return {
        "vs_peer_at_n": n,
        "vs_peer_partial_p50_ratio": ratio(ours["partial_p50_ms"], theirs["partial_p50_ms"]),
        "vs_peer_cpu_cost_ratio": ratio(ours["cpu_per_audio_s"], theirs["cpu_per_audio_s"]),
        "vs_peer_partial_p95_ratio": ratio(ours["partial_p95_ms"], theirs["partial_p95_ms"]),
        "vs_peer_rss_ratio": ratio(ours["rss_peak_mb"], theirs["rss_peak_mb"]),
    }


# --- Progress ---------------------------------------------------------------------------------
def log(message: str) -> None:
    """A progress line on stderr (stdout carries the tables and the JSON)."""
    print(message, file=sys.stderr, flush=True)
