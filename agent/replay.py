"""The audio a stream has sent but the STT service has not yet made durable.

A client may forget audio only once the service says it is safe (``committed {offset}``, or
``ready {resume_offset}`` on a reconnect): until then, a crash or restart of the service
would lose whatever words that audio held. :class:`ReplayBuffer` keeps that audio, at its
original sample offsets, so a reconnecting stream can resend exactly what is missing.
"""

from __future__ import annotations

from collections import deque


class ReplayBuffer:
    """Uncommitted audio as ``(offset, pcm)`` chunks in offset order, bounded in size.

    Offsets count samples from the track's start; ``pcm`` is s16le mono (2 bytes a sample).
    When the buffer holds more than ``max_samples``, the oldest samples are dropped (a chunk
    is cut if need be) and counted in :attr:`dropped_samples`: a reconnect after that can
    no longer resend them, and the count says how much was at risk.

    Args:
        max_samples: The most samples held; 0 holds nothing (every sample counts as dropped).
    """

    def __init__(self, max_samples: int) -> None:
        if max_samples < 0:
            raise ValueError(f"max_samples must be >= 0, got {max_samples}")
        self.max_samples = max_samples
        self._chunks: deque[tuple[int, bytes]] = deque()
        self._samples = 0
        self._committed = 0
        self._end = 0
        #: Samples forgotten before they were committed (overflow), oldest first.
        self.dropped_samples = 0

    @property
    def samples(self) -> int:
        """Samples held now."""
        return self._samples

    @property
    def committed_offset(self) -> int:
        """The highest offset committed so far: nothing before it is ever held again."""
        return self._committed

    @property
    def end_offset(self) -> int:
        """The offset right after the newest audio appended (0 before any)."""
        return self._end

    @property
    def start_offset(self) -> int:
        """The offset of the oldest sample held; when empty, where the next one would be.

        Above :attr:`committed_offset` only when overflow dropped uncommitted audio (or the
        appended audio left a gap after the commit point).
        """
        if self._chunks:
            return self._chunks[0][0]
        return max(self._committed, self._end)

    def append(self, offset: int, pcm: bytes) -> None:
        """Keep ``pcm``, whose first sample is at ``offset``, until it is committed.

        Audio must come in offset order (gaps are fine). A part before the committed offset
        is already durable and is not kept.

        Raises:
            ValueError: ``offset`` is before the end of audio already appended, or ``pcm``
                is not whole samples.
        """
        if len(pcm) % 2:
            raise ValueError(f"pcm of {len(pcm)} bytes is not whole s16le samples")
        if offset < self._end:
            raise ValueError(f"offset {offset} goes back before {self._end}: append in order")
        self._end = offset + len(pcm) // 2
        if offset < self._committed:
            pcm = pcm[(self._committed - offset) * 2 :]
            offset = self._committed
        if not pcm:
            return
        self._chunks.append((offset, pcm))
        self._samples += len(pcm) // 2
        excess = self._samples - self.max_samples
        if excess > 0:
            self._forget_oldest(excess)
            self.dropped_samples += excess

    def commit(self, offset: int) -> None:
        """Forget every sample before ``offset``: the service holds it durably now.

        A chunk straddling ``offset`` is cut so the kept part starts at ``offset``. An offset
        at or below one already committed changes nothing (commits only move forward); one
        beyond the held audio empties the buffer.
        """
        if offset <= self._committed:
            return
        self._committed = offset
        while self._chunks:
            start, pcm = self._chunks[0]
            if start >= offset:
                break
            self._chunks.popleft()
            cut = min(offset - start, len(pcm) // 2)
            self._samples -= cut
            if cut * 2 < len(pcm):
                self._chunks.appendleft((offset, pcm[cut * 2 :]))
                break

    def chunks_from(self, offset: int) -> list[tuple[int, bytes]]:
        """The held audio from ``offset`` on, to resend after a reconnect.

        Chunks before ``offset`` (the service's ``resume_offset``: it has them already) are
        skipped and one straddling it is cut. The buffer is left as it is.
        """
        out: list[tuple[int, bytes]] = []
        for start, pcm in self._chunks:
            end = start + len(pcm) // 2
            if end <= offset:
                continue
            if start < offset:
                pcm, start = pcm[(offset - start) * 2 :], offset
            out.append((start, pcm))
        return out

    def __len__(self) -> int:
        """Chunks held."""
        return len(self._chunks)

    def _forget_oldest(self, samples: int) -> None:
        while samples > 0 and self._chunks:
            start, pcm = self._chunks.popleft()
            n = len(pcm) // 2
            if n > samples:
                self._chunks.appendleft((start + samples, pcm[samples * 2 :]))
                self._samples -= samples
                return
            self._samples -= n
            samples -= n
