"""Recordings storage: the :class:`ObjectStore` protocol and its two backends.

A local folder (the embedded default, ``var/objects``) or any S3-compatible server.
"""

from __future__ import annotations

from roomscribe.objectstore.base import (
    DEFAULT_CHUNK_SIZE,
    DEFAULT_CONTENT_TYPE,
    ObjectInfo,
    ObjectStore,
    key_component,
    validate_key,
    validate_prefix,
)
from roomscribe.objectstore.local import LocalObjectStore
from roomscribe.objectstore.s3 import S3ObjectStore
from roomscribe.settings import CoreSettings

__all__ = [
    "DEFAULT_CHUNK_SIZE",
    "DEFAULT_CONTENT_TYPE",
    "LocalObjectStore",
    "ObjectInfo",
    "ObjectStore",
    "S3ObjectStore",
    "key_component",
    "open_object_store",
    "validate_key",
    "validate_prefix",
]


def open_object_store(settings: CoreSettings) -> ObjectStore:
    """Build the object store the settings ask for: S3 when an endpoint is set, else a folder.

    Nothing is contacted or created here: call ``await store.init()`` at startup (it creates
    the folder or the bucket) and ``await store.close()`` at shutdown.

    Args:
        settings: The service's settings (``objects_dir`` or ``s3_*``).

    Returns:
        An :class:`S3ObjectStore` or a :class:`LocalObjectStore`.

    Raises:
        ConfigurationError: The S3 settings cannot work.
    """
    if settings.s3_endpoint:
        return S3ObjectStore.from_settings(settings)
    return LocalObjectStore(settings.objects_dir)
