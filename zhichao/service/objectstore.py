"""Where the center keeps accepted packages: a local folder (the default) or an
S3-compatible object store (through boto3).

Both keep an accepted package's zip under a name derived from a SHA-256 and never replace
one; the choice is made once per center (``zhichao center serve --object-store``):

* :class:`FolderPackages` — ``STORE/packages/ab/<manifest_sha256>.zip``, written by an
  fsynced atomic rename (the behaviour of the embedded center; one machine).
* :class:`S3Packages` — key ``<prefix>ab/<content_sha256>.zip`` (the SHA-256 of the zip's
  bytes: content-addressed), written with a conditional put (``If-None-Match: *``) after a
  look (HEAD) for an object already there, then read back and hashed. Every read
  (:meth:`S3Packages.local_copy`) hashes the bytes again and refuses an object whose bytes
  are not the ones its key names. A put of other bytes under a taken key is refused
  (:class:`ObjectStoreError`), so nothing stored is ever overwritten.

The center records the location in its rows and in ``Case.package_path``:
a relative folder path, or ``s3://bucket/key``. :func:`local_package` turns either into a
local file the evidence reader opens: for ``s3://`` it fetches the object once into a
cache folder (``ZHICHAO_OBJECT_CACHE``, default the system temporary folder), verified by
hash on every call; the endpoint comes from ``ZHICHAO_S3_ENDPOINT_URL`` and the
credentials from boto3's usual chain (``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``,
``AWS_DEFAULT_REGION`` or its config files). The cache is only a cache: a replica that
loses it fetches again, so no replica holds a file another needs.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import threading
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlparse

from zhichao.common import fsync_dir
from zhichao.service.errors import ServiceError

_CHUNK = 1024 * 1024
S3_SCHEME = "s3://"


class ObjectStoreError(ServiceError):
    """The object store refused, is unreachable, or holds bytes other than its key names."""

    http_status = 503
    default_zh = "证据包存储暂不可用"


class PackageFiles(Protocol):
    """Keeps accepted zips and gives them back as local files."""

    def keep(self, spooled: Path, *, manifest_sha256: str, content_sha256: str,
             fsync: bool) -> str:
        """Store ``spooled`` (consumed) and return its location text."""

    def local_copy(self, location: str) -> Path:
        """A local, verified file for a location :meth:`keep` returned."""


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class FolderPackages:
    """Packages in ``store_dir/packages`` (the embedded default)."""

    def __init__(self, store_dir: Path) -> None:
        self.store_dir = Path(store_dir)
        (self.store_dir / "packages").mkdir(parents=True, exist_ok=True)

    def keep(self, spooled: Path, *, manifest_sha256: str, content_sha256: str,
             fsync: bool) -> str:
        dest_dir = self.store_dir / "packages" / manifest_sha256[:2]
        dest_dir.mkdir(exist_ok=True)
        dest = dest_dir / f"{manifest_sha256}.zip"
        if fsync:
            _fsync_file(spooled)
        os.replace(spooled, dest)  # same manifest: the same evidence (verified before)
        if fsync:
            fsync_dir(dest_dir)
        return dest.relative_to(self.store_dir).as_posix()

    def local_copy(self, location: str) -> Path:
        return self.store_dir / location


class S3Packages:
    """Packages in an S3-compatible bucket, content-addressed, never overwritten.

    ``client`` is a boto3 S3 client (made from ``endpoint_url`` and boto3's credential
    chain when not given); ``cache_dir`` holds the verified local copies readers open.
    """

    def __init__(self, bucket: str, *, prefix: str = "packages/",
                 endpoint_url: str | None = None, cache_dir: Path | None = None,
                 client: Any = None) -> None:
        if not bucket:
            raise ObjectStoreError("object store: bucket name missing", "证据包存储未配置存储桶")
        self.bucket = bucket
        self.prefix = prefix if not prefix or prefix.endswith("/") else prefix + "/"
        self.client = client or _client(endpoint_url)
        self.cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        self.cache_dir.mkdir(parents=True, exist_ok=True)

    @classmethod
    def from_uri(cls, uri: str, *, endpoint_url: str | None = None,
                 cache_dir: Path | None = None) -> S3Packages:
        """``s3://bucket/prefix/`` → a store on that bucket and key prefix."""
        parsed = urlparse(uri)
        if parsed.scheme != "s3" or not parsed.netloc:
            raise ObjectStoreError(f"object store {uri!r}: expected s3://bucket/prefix",
                                   "证据包存储地址格式有误（应为 s3://存储桶/前缀）")
        return cls(parsed.netloc, prefix=parsed.path.lstrip("/"), endpoint_url=endpoint_url,
                   cache_dir=cache_dir)

    # ------------------------------------------------------------ keys
    def key_for(self, content_sha256: str) -> str:
        return f"{self.prefix}{content_sha256[:2]}/{content_sha256}.zip"

    def uri(self, key: str) -> str:
        return f"{S3_SCHEME}{self.bucket}/{key}"

    # ------------------------------------------------------------ writes
    def keep(self, spooled: Path, *, manifest_sha256: str, content_sha256: str,
             fsync: bool) -> str:
        del manifest_sha256, fsync  # named by content; durability is the store's
        key = self.key_for(content_sha256)
        self.put_new(key, spooled.read_bytes(), content_sha256=content_sha256)
        spooled.unlink(missing_ok=True)
        return self.uri(key)

    def put_new(self, key: str, data: bytes, *, content_sha256: str | None = None) -> bool:
        """Store ``data`` under ``key`` unless the key is taken; True if written now.

        A key that already holds these same bytes is fine (a retry, or another replica
        that stored the same package first); a key that holds other bytes is refused with
        :class:`ObjectStoreError`, and so is ``data`` whose hash is not ``content_sha256``.
        The written object is read back and hashed before this returns.
        """
        sha = hashlib.sha256(data).hexdigest()
        if content_sha256 is not None and sha != content_sha256:
            raise ObjectStoreError(f"object {key}: bytes hash to {sha}, not {content_sha256}")
        if self._held_sha256(key) is not None:  # look before the put
            self._check_same(key, sha)
            return False
        try:
            self.client.put_object(Bucket=self.bucket, Key=key, Body=data, IfNoneMatch="*",
                                   Metadata={"sha256": sha},
                                   ContentType="application/zip")
        except Exception as exc:
            if _status(exc) in (409, 412):  # written meanwhile (another replica)
                self._check_same(key, sha)
                return False
            raise ObjectStoreError(f"object store put {key}: {exc}") from exc
        self.read_verified(key, sha)
        return True

    def _held_sha256(self, key: str) -> str | None:
        """The sha256 recorded with the object at ``key``; None if there is no object."""
        try:
            head = self.client.head_object(Bucket=self.bucket, Key=key)
        except Exception as exc:
            if _status(exc) == 404:
                return None
            raise ObjectStoreError(f"object store head {key}: {exc}") from exc
        return str(head.get("Metadata", {}).get("sha256", ""))

    def _check_same(self, key: str, sha: str) -> None:
        held = self.read_verified(key, None)
        if hashlib.sha256(held).hexdigest() != sha:
            raise ObjectStoreError(f"object {key} exists with other bytes; not overwritten",
                                   "存储中该键已有不同内容，拒绝覆盖")

    # ------------------------------------------------------------ reads
    def read_verified(self, key: str, content_sha256: str | None) -> bytes:
        """The bytes at ``key``, refused unless they hash to ``content_sha256`` (when
        given) and to the sha256 recorded when they were written."""
        try:
            answer = self.client.get_object(Bucket=self.bucket, Key=key)
            data: bytes = answer["Body"].read()
        except Exception as exc:
            raise ObjectStoreError(f"object store get {key}: {exc}") from exc
        sha = hashlib.sha256(data).hexdigest()
        recorded = answer.get("Metadata", {}).get("sha256")
        for expected in (content_sha256, recorded):
            if expected and sha != expected:
                raise ObjectStoreError(f"object {key}: bytes hash to {sha}, expected "
                                       f"{expected} (damaged or replaced)",
                                       "存储中的证据包哈希不符，已拒绝读取")
        return data

    def local_copy(self, location: str) -> Path:
        """A verified local file for ``s3://bucket/<prefix>ab/<sha>.zip`` (fetched once into
        the cache; the cached file is hashed again on every call)."""
        bucket, key = split_uri(location)
        if bucket != self.bucket:
            raise ObjectStoreError(f"{location}: not in bucket {self.bucket}")
        sha = Path(key).stem
        if len(sha) != 64:
            raise ObjectStoreError(f"{location}: key does not name a SHA-256")
        cached = self.cache_dir / f"{sha}.zip"
        if cached.exists() and sha256_file(cached) == sha:
            return cached
        data = self.read_verified(key, sha)
        tmp = cached.with_name(f"{cached.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        tmp.write_bytes(data)
        os.replace(tmp, cached)
        return cached


def split_uri(uri: str) -> tuple[str, str]:
    parsed = urlparse(uri)
    if parsed.scheme != "s3" or not parsed.netloc or not parsed.path.strip("/"):
        raise ObjectStoreError(f"{uri!r}: not an s3://bucket/key location")
    return parsed.netloc, parsed.path.lstrip("/")


def default_cache_dir() -> Path:
    configured = os.environ.get("ZHICHAO_OBJECT_CACHE")
    if configured:
        return Path(configured)
    return Path(tempfile.gettempdir()) / f"zhichao-objects-{os.getuid()}"


def _client(endpoint_url: str | None) -> Any:
    import boto3
    from botocore.config import Config

    return boto3.client("s3", endpoint_url=endpoint_url or os.environ.get(
        "ZHICHAO_S3_ENDPOINT_URL") or None, config=Config(
        retries={"max_attempts": 3, "mode": "standard"}, connect_timeout=5, read_timeout=30))


def _status(exc: Exception) -> int | None:
    response = getattr(exc, "response", None)
    if not isinstance(response, dict):
        return None
    code = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    if code is None:
        error_code = str(response.get("Error", {}).get("Code", ""))
        return int(error_code) if error_code.isdigit() else None
    return int(code)


_stores: dict[str, S3Packages] = {}
_stores_lock = threading.Lock()


def local_package(location: str | Path) -> Path:
    """A local file for a stored package location: a path as it is, or an ``s3://``
    object fetched (verified) into the cache (see the module docstring)."""
    text = str(location)
    if not text.startswith(S3_SCHEME):
        return Path(text)
    bucket, _key = split_uri(text)
    with _stores_lock:
        store = _stores.get(bucket)
        if store is None:
            store = _stores[bucket] = S3Packages(bucket)
    return store.local_copy(text)
