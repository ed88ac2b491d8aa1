"""A thin async adapter over mongomock, shaped like PyMongo's async API.

It lets the MongoDB store's real query and update documents run where no server is
reachable. It covers only the calls the store makes; anything else fails loudly.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Iterator
from typing import Any

import mongomock


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
    def __init__(self, collection: Any) -> None:
        self._c = collection

    def find(self, *args: Any, **kwargs: Any) -> FakeAsyncCursor:
        return FakeAsyncCursor(self._c.find(*args, **kwargs))

    async def aggregate(self, pipeline: list[dict[str, Any]]) -> FakeAsyncCursor:
        return FakeAsyncCursor(self._c.aggregate(pipeline))

    async def find_one(self, *args: Any, **kwargs: Any) -> Any:
        return self._c.find_one(*args, **kwargs)

    async def insert_one(self, doc: dict[str, Any]) -> Any:
        return self._c.insert_one(doc)

    async def insert_many(self, docs: list[dict[str, Any]]) -> Any:
        return self._c.insert_many(docs)

    async def update_one(self, *args: Any, **kwargs: Any) -> Any:
        return self._c.update_one(*args, **kwargs)

    async def replace_one(self, *args: Any, **kwargs: Any) -> Any:
        return self._c.replace_one(*args, **kwargs)

    async def update_many(self, *args: Any, **kwargs: Any) -> Any:
        return self._c.update_many(*args, **kwargs)

    async def delete_many(self, *args: Any, **kwargs: Any) -> Any:
        return self._c.delete_many(*args, **kwargs)

    async def find_one_and_update(self, *args: Any, **kwargs: Any) -> Any:
        return self._c.find_one_and_update(*args, **kwargs)

    async def count_documents(self, *args: Any, **kwargs: Any) -> int:
        return int(self._c.count_documents(*args, **kwargs))

    async def create_index(self, *args: Any, **kwargs: Any) -> str:
        return str(self._c.create_index(*args, **kwargs))


class FakeAsyncDatabase:
    def __init__(self, name: str = "roomscribe") -> None:
        self._db: Any = mongomock.MongoClient(tz_aware=True)[name]

    def __getitem__(self, name: str) -> FakeAsyncCollection:
        return FakeAsyncCollection(self._db[name])

    async def command(self, name: str) -> dict[str, Any]:
        if name != "ping":
            raise NotImplementedError(name)
        return {"ok": 1.0}
