"""A thin async adapter over mongomock, shaped like PyMongo's async API.

It lets the MongoDB store's real query and update documents run where no server is
reachable. It covers only the calls the store makes; anything else fails loudly.

mongomock never fails; a real server does (a primary steps down, a network blip, a timeout),
sometimes after a write was applied and before its answer arrived. :class:`Faults` makes the
adapter fail that way on demand.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Iterator
from typing import Any

import mongomock
from pymongo.errors import AutoReconnect, PyMongoError


class Faults:
    """Failures to inject into the next calls, as a real deployment produces them."""

    def __init__(self) -> None:
        self._plan: list[tuple[str | None, PyMongoError, bool]] = []
        self.injected = 0

    def fail_next(
        self,
        n: int = 1,
        *,
        on: str | None = None,
        error: PyMongoError | None = None,
        after_write: bool = False,
    ) -> None:
        """Fail the next ``n`` calls (only of method ``on`` when given).

        ``after_write``: the call is applied first, then fails, as when a connection drops
        between a write and its acknowledgement.
        """
        for _ in range(n):
            self._plan.append(
                (on, error or AutoReconnect("injected: connection lost"), after_write)
            )

    def take(self, method: str) -> tuple[PyMongoError, bool] | None:
        for i, (on, error, after) in enumerate(self._plan):
            if on is None or on == method:
                del self._plan[i]
                self.injected += 1
                return error, after
        return None

    @property
    def pending(self) -> int:
        return len(self._plan)


class FakeAsyncCursor:
    def __init__(self, cursor: Any) -> None:
        self._cursor = cursor

    def sort(self, *args: Any, **kwargs: Any) -> FakeAsyncCursor:
        self._cursor = self._cursor.sort(*args, **kwargs)
        return self

    def limit(self, count: int) -> FakeAsyncCursor:
        self._cursor = self._cursor.limit(count)
        return self

    async def to_list(self, length: int | None = None) -> list[dict[str, Any]]:
        rows: Iterator[dict[str, Any]] = iter(self._cursor)
        return list(rows if length is None else itertools.islice(rows, length))

    def __aiter__(self) -> AsyncIterator[dict[str, Any]]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[dict[str, Any]]:
        for doc in self._cursor:
            yield doc


class FakeAsyncCollection:
    def __init__(self, collection: Any, faults: Faults | None = None) -> None:
        self._c = collection
        self._faults = faults

    def _call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        fault = self._faults.take(method) if self._faults is not None else None
        if fault is not None and not fault[1]:
            raise fault[0]
        result = getattr(self._c, method)(*args, **kwargs)
        if fault is not None:
            raise fault[0]
        return result

    def find(self, *args: Any, **kwargs: Any) -> FakeAsyncCursor:
        # PyMongo fails a find when the cursor is first iterated; failing it here is earlier
        # but within the same store call, which is what the store must handle.
        return FakeAsyncCursor(self._call("find", *args, **kwargs))

    async def aggregate(self, pipeline: list[dict[str, Any]]) -> FakeAsyncCursor:
        return FakeAsyncCursor(self._call("aggregate", pipeline))

    async def find_one(self, *args: Any, **kwargs: Any) -> Any:
        return self._call("find_one", *args, **kwargs)

    async def insert_one(self, doc: dict[str, Any]) -> Any:
        return self._call("insert_one", doc)

    async def insert_many(self, docs: list[dict[str, Any]]) -> Any:
        return self._call("insert_many", docs)

    async def update_one(self, *args: Any, **kwargs: Any) -> Any:
        return self._call("update_one", *args, **kwargs)

    async def replace_one(self, *args: Any, **kwargs: Any) -> Any:
        return self._call("replace_one", *args, **kwargs)

    async def update_many(self, *args: Any, **kwargs: Any) -> Any:
        return self._call("update_many", *args, **kwargs)

    async def delete_one(self, *args: Any, **kwargs: Any) -> Any:
        return self._call("delete_one", *args, **kwargs)

    async def delete_many(self, *args: Any, **kwargs: Any) -> Any:
        return self._call("delete_many", *args, **kwargs)

    async def find_one_and_update(self, *args: Any, **kwargs: Any) -> Any:
        return self._call("find_one_and_update", *args, **kwargs)

    async def count_documents(self, *args: Any, **kwargs: Any) -> int:
        return int(self._call("count_documents", *args, **kwargs))

    async def index_information(self) -> dict[str, Any]:
        return dict(self._call("index_information"))

    async def drop_index(self, name: str) -> None:
        self._call("drop_index", name)

    async def create_index(self, *args: Any, **kwargs: Any) -> str:
        return str(self._call("create_index", *args, **kwargs))


class FakeAsyncDatabase:
    def __init__(self, name: str = "roomscribe", faults: Faults | None = None) -> None:
        self._db: Any = mongomock.MongoClient(tz_aware=True)[name]
        self.faults = faults

    def __getitem__(self, name: str) -> FakeAsyncCollection:
        return FakeAsyncCollection(self._db[name], self.faults)

    async def command(self, name: str) -> dict[str, Any]:
        fault = self.faults.take("command") if self.faults is not None else None
        if fault is not None:
            raise fault[0]
        if name != "ping":
            raise NotImplementedError(name)
        return {"ok": 1.0}
