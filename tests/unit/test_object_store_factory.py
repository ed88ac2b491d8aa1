from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import SecretStr

from roomscribe.errors import ConfigurationError
from roomscribe.objectstore import LocalObjectStore, S3ObjectStore, open_object_store
from roomscribe.objectstore.s3 import parse_endpoint
from roomscribe.settings import CoreSettings

pytestmark = pytest.mark.unit


def s3_settings(endpoint: str, **extra: object) -> CoreSettings:
    return CoreSettings(
        s3_endpoint=endpoint,
        s3_bucket="recordings",
        s3_access_key=SecretStr("key"),
        s3_secret_key=SecretStr("secret"),
        s3_region="eu-west-1",
        **extra,  # type: ignore[arg-type]
    )


async def test_no_endpoint_opens_the_local_folder(tmp_path: Path) -> None:
    store = open_object_store(CoreSettings(objects_dir=tmp_path / "objs", s3_endpoint=None))
    assert isinstance(store, LocalObjectStore)
    assert store.root == tmp_path / "objs"
    assert not store.root.exists()  # nothing is created until the first write
    await store.close()


async def test_an_endpoint_opens_s3_without_contacting_it() -> None:
    # Nothing listens on port 9; building the store must not connect.
    store = open_object_store(s3_settings("http://127.0.0.1:9"))
    assert isinstance(store, S3ObjectStore)
    assert store.endpoint == "http://127.0.0.1:9"
    assert store.bucket == "recordings"
    await store.close()


@pytest.mark.parametrize(
    ("endpoint", "secure", "expected"),
    [
        ("s3.internal:9000", True, "https://s3.internal:9000"),
        ("s3.internal:9000", False, "http://s3.internal:9000"),
        ("http://s3.internal:9000", True, "http://s3.internal:9000"),  # the scheme wins
        ("https://s3.internal:9000/", False, "https://s3.internal:9000"),
    ],
)
async def test_endpoint_forms(endpoint: str, secure: bool, expected: str) -> None:
    store = S3ObjectStore.from_settings(s3_settings(endpoint, s3_secure=secure))
    assert store.endpoint == expected
    await store.close()


@pytest.mark.parametrize(
    "endpoint",
    ["", "ftp://host:21", "http://host:9000/bucket", "http://user:pw@host", "host/path"],
)
def test_unusable_endpoints_are_configuration_errors(endpoint: str) -> None:
    with pytest.raises(ConfigurationError):
        parse_endpoint(endpoint)


def test_invalid_bucket_and_missing_endpoint_are_configuration_errors() -> None:
    with pytest.raises(ConfigurationError, match="bucket"):
        S3ObjectStore("h:1", bucket="bad..bucket", access_key="k", secret_key="s")
    with pytest.raises(ConfigurationError, match="part_size"):
        S3ObjectStore("h:1", bucket="ok-bucket", access_key="k", secret_key="s", part_size=1)
    with pytest.raises(ConfigurationError, match="S3_ENDPOINT"):
        S3ObjectStore.from_settings(CoreSettings(s3_endpoint=None))
