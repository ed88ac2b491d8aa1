"""The OpenAPI document matches the API: error shape everywhere, internals hidden, docs offline."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.world import World

pytestmark = pytest.mark.service


async def schema(world: World) -> dict[str, Any]:
    res = await world.http.get("/openapi.json")
    assert res.status_code == 200
    body: dict[str, Any] = res.json()
    return body


async def test_every_error_status_documents_the_error_shape_with_an_example(world: World) -> None:
    doc = await schema(world)
    error_ref = "#/components/schemas/ErrorResponse"
    seen = 0
    for path, methods in doc["paths"].items():
        for method, op in methods.items():
            statuses = op["responses"]
            public_api = path.startswith("/v1/") and not path.startswith("/v1/webhooks")
            if public_api:
                assert {"401", "422", "503"} <= set(statuses), f"{method} {path}: {statuses}"
            for status, response in statuses.items():
                if not status.startswith(("4", "5")):
                    continue
                content = response["content"]["application/json"]
                assert content["schema"]["$ref"] == error_ref, f"{method} {path} {status}"
                assert set(content["example"]["error"]) == {"code", "message"}
                seen += 1
    assert seen > 20
    assert "HTTPValidationError" not in doc["components"]["schemas"]


async def test_documented_422_is_what_the_api_answers(world: World) -> None:
    res = await world.http.get("/v1/rooms", params={"limit": 100000})
    # Unauthenticated requests are refused first; either way, the documented shape.
    body = res.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}


async def test_internal_routes_are_not_in_the_public_document(world: World) -> None:
    paths = (await schema(world))["paths"]
    assert not [p for p in paths if p.startswith("/v1/internal/")]
    assert "/v1/rooms/{room}/transcript" in paths


async def test_docs_page_and_its_assets_are_served_locally(world: World) -> None:
    page = await world.http.get("/docs")
    assert page.status_code == 200
    assert "cdn" not in page.text.lower() and "unpkg" not in page.text.lower()
    for asset in ("swagger-ui-bundle.js", "swagger-ui.css"):
        assert f"/docs/assets/{asset}" in page.text
        res = await world.http.get(f"/docs/assets/{asset}")
        assert res.status_code == 200 and len(res.content) > 10_000, asset


async def test_the_service_ignores_a_docs_asset_path_escape(world: World) -> None:
    res = await world.http.get("/docs/assets/..%2F..%2F__init__.py")
    assert res.status_code == 404
    assert isinstance(res, httpx.Response)
