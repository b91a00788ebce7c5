"""The server's secret: the key every signature of the hub is made with (tokens, allowances, the
audit log, sessions), kept outside the store: `MODELHUB_TOKEN_SECRET`, or for a local store a file
beside it, made on first use."""
from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import os
import secrets
import threading
from pathlib import Path

from schemas.errors import InvalidArgument
from schemas.settings import Settings
from storage import LocalStore, ObjectStore

MIN_SECRET_BYTES = 16


class Secret:
    """The key every signature of the hub is made with (HMAC-SHA256). Each use names its purpose,
    so a signature made for one thing is never valid for another."""

    def __init__(self, key: bytes):
        if len(key) < MIN_SECRET_BYTES:
            raise InvalidArgument(f"the token secret must be at least {MIN_SECRET_BYTES} bytes")
        self._key = key

    def __repr__(self) -> str:
        return "Secret(...)"

    def sign(self, purpose: str, payload: bytes) -> str:
        return hmac.new(self._key, purpose.encode() + b"\0" + payload, hashlib.sha256).hexdigest()

    def verify(self, purpose: str, payload: bytes, signature: object) -> bool:
        return isinstance(signature, str) and hmac.compare_digest(self.sign(purpose, payload),
                                                                  signature)


def secret_file_for(store: ObjectStore, settings: Settings) -> Path | None:
    """Where a local store's secret is kept: `--secret-file`, or `<store folder>.secret`."""
    if settings.secret_file:
        return Path(settings.secret_file).expanduser()
    if isinstance(store, LocalStore):
        return store.root.with_name(store.root.name + ".secret")
    return None


def load_secret(store: ObjectStore, settings: Settings) -> Secret:
    """The secret for this store: MODELHUB_TOKEN_SECRET, else the secret file (a local store's
    is made on first use, readable by its owner only)."""
    if settings.token_secret:
        return Secret(settings.token_secret.encode())
    path = secret_file_for(store, settings)
    if path is None:
        raise InvalidArgument(
            f"{store.uri} is not a local store, so its token secret cannot be made here: set "
            "MODELHUB_TOKEN_SECRET to the same random value on every hub and serving process "
            "(in Kubernetes, from a Secret)")
    try:
        return Secret(path.read_bytes().strip())
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(secrets.token_hex(32).encode())
        with contextlib.suppress(FileExistsError):  # another process made it first: use theirs
            os.link(temp, path)
    finally:
        temp.unlink(missing_ok=True)
    return Secret(path.read_bytes().strip())


class LazySecret:
    """The secret, resolved on first use: a serving process with anonymous reads may never need
    one, and must not fail to start for lack of it."""

    def __init__(self, store: ObjectStore, settings: Settings):
        self._store, self._settings = store, settings
        self._secret: Secret | None = None
        self._lock = threading.Lock()

    def get(self) -> Secret:
        with self._lock:
            if self._secret is None:
                self._secret = load_secret(self._store, self._settings)
            return self._secret

    def sign(self, purpose: str, payload: bytes) -> str:
        return self.get().sign(purpose, payload)

    def verify(self, purpose: str, payload: bytes, signature: object) -> bool:
        return self.get().verify(purpose, payload, signature)


def canonical(record: dict) -> bytes:
    """The bytes a record's signature covers: sorted keys, no spaces."""
    return json.dumps(record, sort_keys=True, separators=(",", ":")).encode()


def sign_record(secret: Secret | LazySecret, purpose: str, record: dict,
                field: str = "mac") -> str:
    """The signature of `record`, over everything but its signature `field`."""
    return secret.sign(purpose, canonical({k: v for k, v in record.items() if k != field}))


def record_is_signed(secret: Secret | LazySecret, purpose: str, record: object,
                     field: str = "mac") -> bool:
    """Whether `record[field]` is `sign_record`'s signature of it."""
    return isinstance(record, dict) and secret.verify(
        purpose, canonical({k: v for k, v in record.items() if k != field}), record.get(field))
