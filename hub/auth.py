"""Who may do what: API tokens, the server's secret that makes them unforgeable, and `Access`,
the one rule every route and protocol asks.

A token is `mh_<id>_<secret part>`. Its record lives in the store:

    auth/tokens/<id>.json   {"id", "identity", "description", "grants", "created", "expires",
                             "token_mac", "mac"}

`token_mac` is an HMAC of the whole token and `mac` an HMAC of the record's other fields, both
keyed with the server's secret, which is kept outside the store (`MODELHUB_TOKEN_SECRET`, or for
a local store a file beside it, made on first use). So reading the store reveals no usable token,
and writing into it cannot make one, nor widen a token's grants: a record that does not verify
is ignored. Tokens made before records were signed (`auth/tokens/<sha256>.json`) are not
accepted; create new ones with `modelhub token create`.
"""
from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import os
import re
import secrets
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from schemas.api import SCOPES
from schemas.errors import (
    Forbidden,
    InvalidArgument,
    InvalidManifest,
    ObjectExists,
    ObjectNotFound,
    Unauthorized,
)
from schemas.settings import Settings
from storage import LocalStore, ObjectStore

TOKEN_PREFIX = "mh_"
TOKEN_PATTERN = re.compile(r"mh_([0-9a-f]{16})_([A-Za-z0-9_-]{20,})")
#: How long a looked-up token is trusted before its record is read again (revocation delay).
CACHE_SECONDS = 1.0
MIN_SECRET_BYTES = 16


# --- the server's secret ------------------------------------------------------------------------


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


# --- tokens -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Identity:
    """Who a verified token speaks for, and what it may do."""

    token_id: str
    name: str
    description: str
    scope: str

    @property
    def label(self) -> str:
        """How the identity is named in records (allowances, logs): never the token."""
        return f"{self.name} (token {self.token_id})" + (
            f": {self.description}" if self.description else "")


def token_key(token_id: str) -> str:
    return f"auth/tokens/{token_id}.json"


def scope_allows(granted: str, needed: str) -> bool:
    return SCOPES.index(granted) >= SCOPES.index(needed)


class TokenStore:
    def __init__(self, store: ObjectStore, secret: Secret | LazySecret,
                 cache_seconds: float = CACHE_SECONDS):
        self.store = store
        self.secret = secret
        self.cache_seconds = cache_seconds
        self._cache: dict[str, tuple[float, tuple[Identity, str] | None]] = {}
        self._lock = threading.Lock()

    def create(self, scope: str, description: str = "", identity: str = "") -> str:
        """Make a new token and return it; it is shown this once and never stored."""
        if scope not in SCOPES:
            raise InvalidArgument(f"invalid scope {scope!r}: use one of {', '.join(SCOPES)}")
        token_id = secrets.token_hex(8)
        token = f"{TOKEN_PREFIX}{token_id}_{secrets.token_urlsafe(32)}"
        record = {"id": token_id, "identity": identity or "anonymous", "scope": scope,
                  "description": description, "created": datetime.now(timezone.utc).isoformat(),
                  "token_mac": self.secret.sign("token", token.encode())}
        record["mac"] = self.secret.sign("token record", canonical(record))
        try:
            self.store.put_if_absent(token_key(token_id), canonical(record))
        except ObjectExists:  # 64 random bits collided: astronomically unlikely, but refuse
            raise InvalidArgument("could not make a unique token id; try again") from None
        return token

    def revoke(self, token_id: str) -> None:
        self.store.delete(token_key(token_id))
        with self._lock:
            self._cache.pop(token_id, None)

    def cached(self, token: str) -> bool:
        """Whether `identify(token)` would answer from memory (no store read): async callers
        ask this before calling it on their event loop."""
        match = TOKEN_PATTERN.fullmatch(token)
        if not match:
            return True  # refused without a lookup
        with self._lock:
            cached = self._cache.get(match.group(1))
        return bool(cached) and time.monotonic() - cached[0] < self.cache_seconds

    def identify(self, token: str) -> Identity | None:
        """Who the token speaks for, or None if the hub does not know it (or its record does
        not verify)."""
        match = TOKEN_PATTERN.fullmatch(token)
        if not match:
            return None
        token_id = match.group(1)
        with self._lock:
            cached = self._cache.get(token_id)
        if cached and time.monotonic() - cached[0] < self.cache_seconds:
            found = cached[1]
        else:
            found = self._read(token_id)
            with self._lock:
                self._cache[token_id] = (time.monotonic(), found)
        if found is None:
            return None
        identity, token_mac = found
        return identity if self.secret.verify("token", token.encode(), token_mac) else None

    def _read(self, token_id: str) -> tuple[Identity, str] | None:
        """The identity a token record gives and the MAC of its token, if the record verifies."""
        try:
            record = self.store.get_json(token_key(token_id))
        except (ObjectNotFound, ValueError):
            return None
        if not isinstance(record, dict) or record.get("id") != token_id:
            return None
        signed = {k: v for k, v in record.items() if k != "mac"}
        if not self.secret.verify("token record", canonical(signed), record.get("mac")):
            return None  # written by someone without the secret: not a token
        if record.get("scope") not in SCOPES:
            raise InvalidManifest(f"token record {token_id} has an unknown scope")
        identity = Identity(token_id, str(record.get("identity", "")),
                            str(record.get("description", "")), record["scope"])
        return identity, record.get("token_mac")

    def authorize(self, token: str | None, needed: str) -> Identity:
        """The token's identity; raise unless it grants `needed`."""
        if not token:
            raise Unauthorized(f"this request needs a token with scope {needed!r}")
        identity = self.identify(token)
        if identity is None:
            raise Unauthorized("unknown or revoked token")
        if not scope_allows(identity.scope, needed):
            raise Forbidden(f"a {identity.scope!r} token cannot do this; it needs scope {needed!r}")
        return identity


def bearer_token(header: str | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` header (None: no header)."""
    if not header:
        return None
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("use the header 'Authorization: Bearer <token>'")
    return token.strip()


def access_for(store: ObjectStore, settings: Settings) -> "Access":
    """The access rule of a server on `store`: its tokens, checked with the store's secret."""
    return Access(TokenStore(store, LazySecret(store, settings)), settings.anonymous_read)


class Access:
    """The one access rule: reads need a `read` token unless anonymous reads are on; anything
    else needs a token of at least its scope. A token that is sent is always checked."""

    def __init__(self, tokens: TokenStore, anonymous_read: bool):
        self.tokens = tokens
        self.anonymous_read = anonymous_read

    def require(self, token: str | None, needed: str) -> Identity | None:
        """The caller's identity (None: anonymous, allowed); raise if not allowed."""
        if token or not (needed == "read" and self.anonymous_read):
            return self.tokens.authorize(token, needed)
        return None

    async def require_async(self, token: str | None, needed: str) -> Identity | None:
        """`require` for an event loop: a token not in memory is looked up on a thread, so a
        store read (an S3 request) never blocks the loop."""
        if token and not self.tokens.cached(token):
            import asyncio

            return await asyncio.get_running_loop().run_in_executor(
                None, self.require, token, needed)
        return self.require(token, needed)


# --- allowances ---------------------------------------------------------------------------------


def sign_allowance(secret: Secret | LazySecret, record: dict) -> str:
    """The signature of an allowance record (ops, by, at, graph_sha256)."""
    return secret.sign("allowance", canonical({k: v for k, v in record.items()
                                               if k != "signature"}))


def allowance_is_genuine(secret: Secret | LazySecret, record: dict | None) -> bool:
    return bool(record) and secret.verify(
        "allowance", canonical({k: v for k, v in record.items() if k != "signature"}),
        record.get("signature"))
