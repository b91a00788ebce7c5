"""The one error hierarchy of modelhub.

Every layer raises these (they live in `schemas` because every layer may import it). Each class
carries a machine-readable `code` and the HTTP `status` it maps to, so one handler can turn any of
them into a JSON error body and a client can map a code back to its class. Where honest, an error
also inherits a builtin (`FileNotFoundError`, `ValueError`, ...) so callers can catch either.
"""
from __future__ import annotations


class ModelhubError(Exception):
    """Base of every error modelhub raises on purpose."""

    code = "internal"
    status = 500

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


# --- Storage ------------------------------------------------------------------------------------


class StoreError(ModelhubError):
    """The object store failed in a way not covered below.

    `backend_code` is the store's own code for what happened (S3's `NoSuchKey`,
    `ConditionalRequestConflict`, an errno name for a local folder) and `request_id` the store's
    id for the request, when it has one: callers decide on these, never on the wrapped error."""

    code = "store_error"
    status = 502

    def __init__(self, message: str, *, backend_code: str | None = None,
                 request_id: str | None = None):
        super().__init__(message)
        self.backend_code = backend_code
        self.request_id = request_id


class ObjectNotFound(StoreError, FileNotFoundError):
    code = "not_found"
    status = 404


class ObjectExists(StoreError, FileExistsError):
    """A create-only put found the key already present."""

    code = "already_exists"
    status = 409


class PreconditionFailed(StoreError):
    """A compare-and-swap put found a different version of the object than expected."""

    code = "precondition_failed"
    status = 412


class StoreAccessDenied(StoreError, PermissionError):
    code = "store_access_denied"
    status = 502


class StoreUnavailable(StoreError, ConnectionError):
    """The store cannot be reached (connection refused, timeout, endpoint gone)."""

    code = "store_unavailable"
    status = 503


class InvalidStoreURI(StoreError, ValueError):
    code = "invalid_store_uri"
    status = 400


class InvalidKey(StoreError, ValueError):
    code = "invalid_key"
    status = 400


# --- Registry -----------------------------------------------------------------------------------


class InvalidReference(ModelhubError, ValueError):
    """A model name, version number, alias or `name/N` / `name@alias` reference is malformed."""

    code = "invalid_reference"
    status = 400


class ModelNotFound(ModelhubError, LookupError):
    code = "model_not_found"
    status = 404


class VersionNotFound(ModelNotFound):
    code = "version_not_found"


class AliasNotFound(ModelNotFound):
    code = "alias_not_found"


class FileNotInVersion(ModelNotFound):
    code = "file_not_found"


class VersionInUse(ModelhubError):
    """A version cannot be deleted while an alias points to it."""

    code = "version_in_use"
    status = 409


class InvalidManifest(ModelhubError, ValueError):
    """A manifest read from the store does not match the schema: the store holds bad data."""

    code = "invalid_manifest"
    status = 500


class IntegrityError(ModelhubError):
    """Bytes read back do not match their recorded sha256 (or size)."""

    code = "integrity_error"
    status = 500


class ArtifactNotFound(ModelNotFound):
    """The version has no artifact of that name (e.g. no TFLite conversion in that mode yet)."""

    code = "artifact_not_found"


class ArtifactExists(ModelhubError, FileExistsError):
    """Artifacts are create-only: the version already has one of that name."""

    code = "artifact_exists"
    status = 409


class ConcurrentModification(ModelhubError):
    """A race was lost too many times in a row (e.g. many publishers of one name at once)."""

    code = "concurrent_modification"
    status = 409


# --- Input from users ---------------------------------------------------------------------------


class InvalidModel(ModelhubError, ValueError):
    """What was offered for publishing is not a usable SavedModel."""

    code = "invalid_model"
    status = 400


class UnsafeArchive(InvalidModel):
    """An uploaded archive tries to escape its staging area or holds forbidden member types."""

    code = "unsafe_archive"
    status = 400


class UnsafeModel(InvalidModel):
    """The graph safety scan found ops that could reach outside the model (files, network,
    processes); the message names them and where they sit."""

    code = "unsafe_model"
    status = 422


class TooLarge(InvalidModel):
    code = "too_large"
    status = 413


class InvalidArgument(ModelhubError, ValueError):
    code = "invalid_argument"
    status = 400


class UnsupportedMediaType(InvalidArgument):
    code = "unsupported_media_type"
    status = 415


class NotCached(ModelhubError, LookupError):
    """Offline mode was asked for something the local cache does not hold complete."""

    code = "not_cached"
    status = 404


# --- Conversion ---------------------------------------------------------------------------------


class ConversionFailed(ModelhubError):
    """A version could not be turned into the requested format; nothing was stored."""

    code = "conversion_failed"
    status = 422


class UnsupportedOps(ConversionFailed):
    """The model uses operations the target runtime has no kernels for (named in the message)."""

    code = "unsupported_ops"


class ParityFailed(ConversionFailed):
    """The converted model's outputs differ from the SavedModel's beyond the thresholds."""

    code = "parity_failed"


# --- Access -------------------------------------------------------------------------------------


class Unauthorized(ModelhubError, PermissionError):
    """No token, or a token the hub does not know."""

    code = "unauthorized"
    status = 401


class TokenNotFound(ModelhubError, LookupError):
    code = "token_not_found"
    status = 404


class NamespaceNotFound(ModelhubError, LookupError):
    """No such namespace, or a private one the caller may not read (the same answer, so that
    names do not leak)."""

    code = "namespace_not_found"
    status = 404


class NamespaceExists(ModelhubError, FileExistsError):
    code = "namespace_exists"
    status = 409


class Forbidden(ModelhubError, PermissionError):
    """A valid token whose scope is too small for the request."""

    code = "forbidden"
    status = 403


# --- Serving ------------------------------------------------------------------------------------


class NotAvailable(ModelhubError):
    """The version exists but is not AVAILABLE (loading, failed, or being unloaded)."""

    code = "not_available"
    status = 503


class Overloaded(ModelhubError):
    """A model's batch queue is full: the request is refused at once rather than left waiting."""

    code = "overloaded"
    status = 503


class DeadlineExceeded(ModelhubError):
    """The caller's deadline passed before the model could run its request."""

    code = "deadline_exceeded"
    status = 504


class DeviceUnavailable(ModelhubError):
    """The device a model should run on (a GPU, a TPU) is not on this machine."""

    code = "device_unavailable"
    status = 503


#: gRPC's status codes (which TensorFlow's errors use) and the HTTP status each maps to, as
#: TensorFlow Serving's REST API answers them (google.rpc's table).
GRPC_HTTP_STATUS = {
    "CANCELLED": 499, "UNKNOWN": 500, "INVALID_ARGUMENT": 400, "DEADLINE_EXCEEDED": 504,
    "NOT_FOUND": 404, "ALREADY_EXISTS": 409, "PERMISSION_DENIED": 403, "RESOURCE_EXHAUSTED": 429,
    "FAILED_PRECONDITION": 400, "ABORTED": 409, "OUT_OF_RANGE": 400, "UNIMPLEMENTED": 501,
    "INTERNAL": 500, "UNAVAILABLE": 503, "DATA_LOSS": 500, "UNAUTHENTICATED": 401,
}


class ModelRuntimeError(ModelhubError):
    """TensorFlow (or LiteRT) failed while running a model, with a status code of its own (a
    dataset op failing, NotFound, FailedPrecondition, ...): answered with that code's status."""

    code = "model_error"

    def __init__(self, message: str, grpc_code: str = "UNKNOWN"):
        super().__init__(message)
        self.grpc_code = grpc_code
        self.status = GRPC_HTTP_STATUS.get(grpc_code, 500)


class TensorError(InvalidArgument):
    """A tensor in a request does not fit the signature (shape, dtype, encoding)."""

    code = "invalid_tensor"
    status = 400


# --- Talking to a hub ---------------------------------------------------------------------------


class HubUnavailable(ModelhubError, ConnectionError):
    """The hub server cannot be reached or answered with something that is not modelhub's."""

    code = "hub_unavailable"
    status = 503


def first_line(error: BaseException | str, limit: int = 300) -> str:
    """The first line of an error's message (TensorFlow's run to pages), or its type's name."""
    text = str(error).strip()
    if not text:
        return type(error).__name__ if isinstance(error, BaseException) else ""
    return text.splitlines()[0][:limit]


def all_error_classes() -> list[type[ModelhubError]]:
    """Every class of the hierarchy, for code-to-class tables (clients) and tests."""
    found, pending = [], [ModelhubError]
    while pending:
        cls = pending.pop()
        found.append(cls)
        pending.extend(cls.__subclasses__())
    return found
