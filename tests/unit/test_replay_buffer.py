"""The replay buffer: uncommitted audio at its offsets, bounded, every drop counted."""

from __future__ import annotations

import pytest

from agent.replay import ReplayBuffer

pytestmark = pytest.mark.unit


def pcm(start: int, samples: int) -> bytes:
    """``samples`` s16le samples whose values are their own offsets (mod 2**15): a cut shows."""
    return b"".join(((start + i) % 32768).to_bytes(2, "little") for i in range(samples))


def held(buffer: ReplayBuffer) -> list[tuple[int, int]]:
    """(offset, samples) of each chunk, checking every sample is the one at its offset."""
    out = []
    for offset, data in buffer.chunks_from(0):
        assert data == pcm(offset, len(data) // 2), "a chunk's audio moved off its offset"
        out.append((offset, len(data) // 2))
    return out


def filled(*chunks: tuple[int, int], max_samples: int = 10_000) -> ReplayBuffer:
    buffer = ReplayBuffer(max_samples)
    for offset, samples in chunks:
        buffer.append(offset, pcm(offset, samples))
    return buffer


def test_an_empty_buffer() -> None:
    buffer = ReplayBuffer(100)
    assert (buffer.samples, buffer.start_offset, buffer.end_offset) == (0, 0, 0)
    assert buffer.committed_offset == 0 and buffer.dropped_samples == 0
    assert buffer.chunks_from(0) == [] and buffer.chunks_from(500) == []
    assert len(buffer) == 0
    buffer.commit(50)  # nothing held: only the commit point moves
    assert (buffer.samples, buffer.start_offset, buffer.committed_offset) == (0, 50, 50)


def test_appended_chunks_are_kept_in_order_with_gaps() -> None:
    buffer = filled((0, 100), (100, 100), (300, 50))  # a hole at 200..300 (dropped upstream)
    assert held(buffer) == [(0, 100), (100, 100), (300, 50)]
    assert (buffer.samples, buffer.start_offset, buffer.end_offset) == (250, 0, 350)


def test_appending_out_of_order_or_half_samples_is_refused() -> None:
    buffer = filled((0, 100))
    with pytest.raises(ValueError, match="in order"):
        buffer.append(50, pcm(50, 10))
    with pytest.raises(ValueError, match="whole"):
        buffer.append(100, b"\x00")
    assert held(buffer) == [(0, 100)]
    with pytest.raises(ValueError):
        ReplayBuffer(-1)


def test_commit_forgets_whole_chunks_before_the_offset() -> None:
    buffer = filled((0, 100), (100, 100), (200, 100))
    buffer.commit(200)
    assert held(buffer) == [(200, 100)]
    assert (buffer.samples, buffer.start_offset, buffer.committed_offset) == (100, 200, 200)
    assert buffer.dropped_samples == 0, "committed audio is not dropped audio"


def test_commit_cuts_a_straddling_chunk_to_start_at_the_offset() -> None:
    buffer = filled((0, 100), (100, 100))
    buffer.commit(130)
    assert held(buffer) == [(130, 70)]
    assert (buffer.samples, buffer.start_offset) == (70, 130)


def test_commit_beyond_the_end_empties_the_buffer_and_cuts_later_appends() -> None:
    buffer = filled((0, 100))
    buffer.commit(250)
    assert held(buffer) == [] and buffer.samples == 0
    assert buffer.start_offset == 250 and buffer.committed_offset == 250
    # Audio that reaches past the commit point keeps only the part after it.
    buffer.append(100, pcm(100, 200))
    assert held(buffer) == [(250, 50)]
    buffer.append(300, pcm(300, 10))
    assert held(buffer) == [(250, 50), (300, 10)] and buffer.end_offset == 310


def test_commit_going_backwards_is_ignored() -> None:
    buffer = filled((0, 100), (100, 100))
    buffer.commit(150)
    buffer.commit(120)
    buffer.commit(150)
    buffer.commit(0)
    assert held(buffer) == [(150, 50)] and buffer.committed_offset == 150


def test_commit_inside_a_gap_keeps_what_comes_after() -> None:
    buffer = filled((0, 100), (300, 100))
    buffer.commit(200)
    assert held(buffer) == [(300, 100)]
    assert buffer.start_offset == 300 and buffer.committed_offset == 200


def test_chunks_from_skips_what_the_server_has_and_cuts_a_straddler() -> None:
    buffer = filled((0, 100), (100, 100), (200, 100))
    assert [(o, len(d) // 2) for o, d in buffer.chunks_from(150)] == [(150, 50), (200, 100)]
    assert [(o, len(d) // 2) for o, d in buffer.chunks_from(200)] == [(200, 100)]
    assert buffer.chunks_from(300) == [] and buffer.chunks_from(10_000) == []
    cut = buffer.chunks_from(150)[0]
    assert cut[1] == pcm(150, 50)
    # Resending changes nothing: only a commit forgets.
    assert held(buffer) == [(0, 100), (100, 100), (200, 100)] and buffer.samples == 300


def test_overflow_drops_the_oldest_samples_and_counts_them() -> None:
    buffer = filled((0, 100), (100, 100), max_samples=250)
    assert buffer.dropped_samples == 0
    buffer.append(200, pcm(200, 100))  # 300 > 250: the oldest 50 go, cutting the first chunk
    assert held(buffer) == [(50, 50), (100, 100), (200, 100)]
    assert (buffer.samples, buffer.start_offset, buffer.dropped_samples) == (250, 50, 50)
    buffer.append(300, pcm(300, 200))  # 450: 200 more go, across two chunks
    assert held(buffer) == [(250, 50), (300, 200)]
    assert (buffer.samples, buffer.dropped_samples) == (250, 250)
    assert buffer.committed_offset == 0, "a drop is not a commit"


def test_a_chunk_larger_than_the_buffer_keeps_its_newest_samples() -> None:
    buffer = filled((0, 10), max_samples=64)
    buffer.append(10, pcm(10, 100))
    assert held(buffer) == [(46, 64)]
    assert buffer.dropped_samples == 46 and buffer.samples == 64


def test_a_zero_sized_buffer_holds_nothing_and_counts_everything() -> None:
    buffer = filled((0, 100), (100, 60), max_samples=0)
    assert held(buffer) == [] and buffer.samples == 0
    assert buffer.dropped_samples == 160 and buffer.end_offset == 160


def test_commits_and_overflow_together_account_for_every_sample() -> None:
    buffer = ReplayBuffer(1000)
    appended = 0
    for i in range(200):
        buffer.append(i * 160, pcm(i * 160, 160))
        appended += 160
        if i % 7 == 6:
            buffer.commit(i * 160 - 400)  # the server lags a little behind
    forgotten = buffer.start_offset  # every sample before it was committed or dropped
    assert forgotten + buffer.samples == appended
    assert buffer.samples <= 1000
    assert buffer.committed_offset + buffer.dropped_samples >= forgotten
    assert held(buffer)[-1] == (199 * 160, 160)
