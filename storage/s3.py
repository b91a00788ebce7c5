"""`S3Store`: any S3-compatible object store (AWS, MinIO, Ceph, ...) through boto3.

The endpoint, region and credentials come from boto3's standard configuration
(`AWS_ENDPOINT_URL_S3`, `AWS_ACCESS_KEY_ID`, profiles, instance roles, ...). Create-only writes
use `If-None-Match: *` and compare-and-swap uses `If-Match: <etag>`, both enforced by the server.
No boto type escapes this module: errors become the project's own, with the request id.
"""
from __future__ import annotations

import contextlib
import time
from datetime import datetime, timezone
from typing import BinaryIO, Iterator

from schemas.errors import (
    ObjectExists,
    ObjectNotFound,
    PreconditionFailed,
    StoreAccessDenied,
    StoreError,
    StoreUnavailable,
)

from .base import CHUNK_SIZE, ObjectInfo, ObjectStore, check_key, check_prefix

MULTIPART_THRESHOLD = 64 * 1024 * 1024
MULTIPART_CHUNK_SIZE = 16 * 1024 * 1024

_NOT_FOUND = {"NoSuchKey", "404", "NotFound"}
_DENIED = {"AccessDenied", "403", "InvalidAccessKeyId", "SignatureDoesNotMatch", "AllAccessDisabled"}
_PRECONDITION = {"PreconditionFailed", "412"}
# A concurrent conditional write on the same key is in flight; S3 asks the client to retry.
_CONFLICT = {"ConditionalRequestConflict", "409"}


@contextlib.contextmanager
def _translated(store: "S3Store", key: str):
    """The one place boto's exceptions become the project's store errors, carrying S3's error
    code and request id as attributes (callers decide on those, never on boto's types)."""
    import boto3.exceptions
    import botocore.exceptions as bx

    where = f"s3://{store.bucket}/{store._full(key) if key else store.prefix}"
    try:
        yield
    except bx.ClientError as e:
        error = e.response.get("Error", {})
        code = str(error.get("Code", ""))
        request_id = _request_id(e.response)
        detail = f"{where}: {code} {error.get('Message', '')} (request id {request_id})"
        ids = {"backend_code": code, "request_id": request_id}
        if code in _NOT_FOUND:
            raise ObjectNotFound(f"no object at {detail}", **ids) from e
        if code in _PRECONDITION:
            raise PreconditionFailed(f"precondition failed for {detail}", **ids) from e
        if code in _DENIED:
            raise StoreAccessDenied(f"access denied to {detail}", **ids) from e
        if code == "NoSuchBucket":
            raise StoreError(f"bucket {store.bucket!r} does not exist: {detail}", **ids) from e
        raise StoreError(f"S3 error on {detail}", **ids) from e
    except (bx.EndpointConnectionError, bx.ConnectionClosedError, bx.ConnectTimeoutError,
            bx.ReadTimeoutError, bx.ResponseStreamingError) as e:
        raise StoreUnavailable(f"cannot reach the S3 endpoint for {where}: {e}",
                               backend_code=type(e).__name__) from e
    except bx.NoCredentialsError as e:
        raise StoreAccessDenied(f"no S3 credentials found for {where}: {e}",
                                backend_code=type(e).__name__) from e
    except boto3.exceptions.S3UploadFailedError as e:
        cause = e.__context__
        if isinstance(cause, bx.ClientError):
            with _translated(store, key):
                raise cause from e
        raise StoreError(f"upload to {where} failed: {e}") from e


def _request_id(response: dict) -> str:
    meta = response.get("ResponseMetadata", {})
    return meta.get("RequestId") or meta.get("HostId") or "unknown"


def _info(key: str, size: int, etag: str, modified: datetime) -> ObjectInfo:
    return ObjectInfo(key=key, size=size, etag=etag, modified=modified.astimezone(timezone.utc))


class S3Store(ObjectStore):
    #: Keys per LIST request (S3 caps it at 1000).
    list_page_size = 1000

    def __init__(self, bucket: str, prefix: str = "", client=None, *,
                 multipart_threshold: int = MULTIPART_THRESHOLD,
                 multipart_chunk_size: int = MULTIPART_CHUNK_SIZE):
        import boto3
        from boto3.s3.transfer import TransferConfig
        from botocore.config import Config

        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.uri = f"s3://{bucket}/{self.prefix}" if self.prefix else f"s3://{bucket}"
        self.client = client or boto3.session.Session().client(
            "s3",
            config=Config(
                retries={"max_attempts": 5, "mode": "standard"},
                max_pool_connections=32,
                connect_timeout=10,
                read_timeout=60,
            ),
        )
        # Bounded memory for streamed uploads: at most about
        # (max_concurrency + max_in_memory_upload_chunks) chunks are held at once.
        self.transfer_config = TransferConfig(
            multipart_threshold=multipart_threshold,
            multipart_chunksize=multipart_chunk_size,
            max_concurrency=4,
            use_threads=True,
        )
        # s3transfer's knob (not in boto3's constructor): chunks buffered from a stream.
        self.transfer_config.max_in_memory_upload_chunks = 4

    def _full(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def _strip(self, full: str) -> str:
        return full[len(self.prefix) + 1:] if self.prefix else full

    # --- writing ------------------------------------------------------------------------------

    def put(self, key: str, stream: BinaryIO) -> ObjectInfo:
        check_key(key)
        with _translated(self, key):
            self.client.upload_fileobj(_ReadOnly(stream), self.bucket, self._full(key),
                                       Config=self.transfer_config)
        return self.head(key)

    def put_file(self, key: str, path, on_progress=None) -> ObjectInfo:
        check_key(key)
        with _translated(self, key):
            # From a file, boto uploads multipart parts in parallel (seeking is safe here).
            self.client.upload_file(str(path), self.bucket, self._full(key),
                                    Config=self.transfer_config, Callback=on_progress)
        return self.head(key)

    def _conditional_put(self, key: str, data: bytes, **condition) -> ObjectInfo:
        check_key(key)
        for attempt in range(8):
            try:
                with _translated(self, key):
                    response = self.client.put_object(
                        Bucket=self.bucket, Key=self._full(key), Body=data, **condition)
                break
            except StoreError as e:
                if e.backend_code not in _CONFLICT or attempt == 7:
                    raise
                time.sleep(0.05 * 2 ** attempt)
        return _info(key, len(data), response["ETag"], datetime.now(timezone.utc))

    def put_if_absent(self, key: str, data: bytes) -> ObjectInfo:
        try:
            return self._conditional_put(key, data, IfNoneMatch="*")
        except PreconditionFailed as e:
            raise ObjectExists(f"object {key!r} already exists in {self.uri}") from e

    def put_if_match(self, key: str, data: bytes, etag: str | None) -> ObjectInfo:
        if etag is None:
            return self._conditional_put(key, data, IfNoneMatch="*")
        try:
            return self._conditional_put(key, data, IfMatch=etag)
        except ObjectNotFound as e:
            raise PreconditionFailed(f"object {key!r} no longer exists in {self.uri}") from e

    # --- reading ------------------------------------------------------------------------------

    def open(self, key: str, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        check_key(key)
        if end is not None and end <= start:
            self.head(key)  # still report a missing key
            return iter(())
        request = {"Bucket": self.bucket, "Key": self._full(key)}
        if start or end is not None:
            request["Range"] = f"bytes={start}-{'' if end is None else end - 1}"
        try:
            with _translated(self, key):
                response = self.client.get_object(**request)
        except StoreError as e:
            # A range starting at or past the end is empty, not an error.
            if e.backend_code == "InvalidRange":
                return iter(())
            raise
        return self._chunks(key, response["Body"])

    def _chunks(self, key: str, body) -> Iterator[bytes]:
        with contextlib.closing(body), _translated(self, key):
            yield from body.iter_chunks(CHUNK_SIZE)

    def read_with_etag(self, key: str) -> tuple[bytes, str]:
        check_key(key)
        with _translated(self, key):
            response = self.client.get_object(Bucket=self.bucket, Key=self._full(key))
            return response["Body"].read(), response["ETag"]

    def head(self, key: str) -> ObjectInfo:
        check_key(key)
        with _translated(self, key):
            r = self.client.head_object(Bucket=self.bucket, Key=self._full(key))
        return _info(key, r["ContentLength"], r["ETag"], r["LastModified"])

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        check_prefix(prefix)
        full = self._full(prefix) if prefix else (f"{self.prefix}/" if self.prefix else "")
        paginator = self.client.get_paginator("list_objects_v2")
        with _translated(self, prefix):
            for page in paginator.paginate(
                    Bucket=self.bucket, Prefix=full,
                    PaginationConfig={"PageSize": self.list_page_size}):
                for obj in page.get("Contents", []):
                    yield _info(self._strip(obj["Key"]), obj["Size"], obj["ETag"],
                                obj["LastModified"])

    # --- maintenance --------------------------------------------------------------------------

    def delete(self, key: str) -> None:
        check_key(key)
        with _translated(self, key):
            self.client.delete_object(Bucket=self.bucket, Key=self._full(key))

    def touch(self, key: str) -> None:
        check_key(key)
        full = self._full(key)
        with _translated(self, key):
            # S3 has no utime: copying an object onto itself with new metadata refreshes its
            # LastModified. The managed copy switches to multipart copy above 5 GB.
            self.client.copy(
                {"Bucket": self.bucket, "Key": full}, self.bucket, full,
                ExtraArgs={"MetadataDirective": "REPLACE",
                           "Metadata": {"touched": datetime.now(timezone.utc).isoformat()}},
                Config=self.transfer_config,
            )

    def cleanup_incomplete(self, older_than: datetime) -> int:
        removed = 0
        paginator = self.client.get_paginator("list_multipart_uploads")
        prefix = f"{self.prefix}/" if self.prefix else ""
        with _translated(self, ""):
            for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
                for upload in page.get("Uploads", []):
                    if upload["Initiated"] < older_than:
                        self.client.abort_multipart_upload(
                            Bucket=self.bucket, Key=upload["Key"], UploadId=upload["UploadId"])
                        removed += 1
        return removed


class _ReadOnly:
    """Hide `seek`/`tell` so s3transfer reads the stream once, in order, in bounded chunks,
    instead of seeking around a file (which would break hashing readers wrapped around it)."""

    def __init__(self, stream: BinaryIO):
        self._stream = stream

    def read(self, size: int = -1) -> bytes:
        return self._stream.read(size)
