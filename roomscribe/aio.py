"""Asyncio helpers every service shares.

:func:`cancel_and_wait` is the one way a task group is torn down: cancel, then wait for every
task to finish, so nothing outlives its owner (a task left running after its stream ended
holds a socket, a queue and a recognizer) and no exception is left unretrieved.
"""

from __future__ import annotations

import asyncio
import logging

log = logging.getLogger(__name__)


async def cancel_and_wait(*tasks: asyncio.Task[object] | None) -> None:
    """Cancel ``tasks`` (``None`` and finished ones are skipped) and wait until all have ended.

    Exceptions the tasks ended with are logged, not raised: a teardown that raised would leave
    the rest of the teardown undone. If the caller itself is cancelled while waiting, the
    tasks are still waited for before the cancellation goes on.
    """
    live = [t for t in tasks if t is not None]
    for task in live:
        task.cancel()
    if not live:
        return
    waiting = asyncio.gather(*live, return_exceptions=True)
    try:
        results = await asyncio.shield(waiting)
    except asyncio.CancelledError:
        # Our caller is cancelled too: finish the teardown first, then let it go on.
        results = await waiting
        _log_failures(live, results)
        raise
    _log_failures(live, results)


def _log_failures(tasks: list[asyncio.Task[object]], results: list[object]) -> None:
    for task, result in zip(tasks, results, strict=True):
        if isinstance(result, BaseException) and not isinstance(result, asyncio.CancelledError):
            log.error("task %s failed", task.get_name(), exc_info=result)
