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
    ModelNotFound,
    NamespaceNotFound,
    ObjectExists,
    ObjectNotFound,
    TokenNotFound,
    Unauthorized,
)
from schemas.manifest import DEFAULT_NAMESPACE, namespace_of
from schemas.settings import Settings
from storage import LocalStore, ObjectStore

from .refs import check_namespace
from .registry.layout import namespace_key

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

#: A grant on every namespace.
EVERY_NAMESPACE = "*"


@dataclass(frozen=True)
class Grant:
    """`scope` (read < write < admin) on one namespace, or on every one (`*`)."""

    namespace: str
    scope: str

    @classmethod
    def parse(cls, text: str) -> "Grant":
        """`write:vision`, `read:*`, `admin:default`."""
        scope, _, namespace = text.partition(":")
        grant = cls(namespace or EVERY_NAMESPACE, scope)
        grant.check()
        return grant

    def check(self) -> None:
        if self.scope not in SCOPES:
            raise InvalidArgument(f"invalid scope {self.scope!r} in a grant: use one of "
                                  f"{', '.join(SCOPES)}")
        if self.namespace != EVERY_NAMESPACE and self.namespace != DEFAULT_NAMESPACE:
            check_namespace(self.namespace)

    def __str__(self) -> str:
        return f"{self.scope}:{self.namespace}"

    def allows(self, namespace: str, needed: str) -> bool:
        return self.namespace in (EVERY_NAMESPACE, namespace) and scope_allows(self.scope, needed)


@dataclass(frozen=True)
class Identity:
    """Who a verified token speaks for, and what it may do."""

    token_id: str
    name: str
    description: str
    grants: tuple[Grant, ...]
    expires: datetime | None = None

    @property
    def label(self) -> str:
        """How the identity is named in records (allowances, logs): never the token."""
        return f"{self.name} (token {self.token_id})" + (
            f": {self.description}" if self.description else "")

    def allows(self, namespace: str, needed: str) -> bool:
        return any(g.allows(namespace, needed) for g in self.grants)

    @property
    def expired(self) -> bool:
        return self.expires is not None and datetime.now(timezone.utc) >= self.expires


def token_key(token_id: str) -> str:
    return f"auth/tokens/{token_id}.json"


def last_used_key(token_id: str) -> str:
    return f"auth/used/{token_id}.json"


def scope_allows(granted: str, needed: str) -> bool:
    return SCOPES.index(granted) >= SCOPES.index(needed)


def _grants_of(record: dict) -> tuple[Grant, ...]:
    """A record's grants; a record made before grants existed has one scope, on every
    namespace, as it always meant."""
    if "grants" in record:
        grants = tuple(Grant(str(g["namespace"]), str(g["scope"])) for g in record["grants"])
    else:
        grants = (Grant(EVERY_NAMESPACE, str(record.get("scope"))),)
    for grant in grants:
        if grant.scope not in SCOPES:
            raise InvalidManifest(f"token record {record.get('id')} has an unknown scope")
    return grants


class TokenStore:
    """Tokens: made, listed, revoked, and looked up (a lookup is trusted for `cache_seconds`,
    so a revocation reaches every process within that long)."""

    #: How often, at most, a process records that a token was used.
    LAST_USED_EVERY = 60.0

    def __init__(self, store: ObjectStore, secret: Secret | LazySecret,
                 cache_seconds: float = CACHE_SECONDS):
        self.store = store
        self.secret = secret
        self.cache_seconds = cache_seconds
        self._cache: dict[str, tuple[float, tuple[Identity, str] | None]] = {}
        self._used: dict[str, float] = {}
        self._lock = threading.Lock()

    def create(self, scope: str | None = None, description: str = "", identity: str = "", *,
               grants: tuple[Grant, ...] | list[Grant] | None = None,
               expires: datetime | None = None) -> tuple[str, dict] | str:
        """Make a new token and return it; it is shown this once and never stored. Either a
        `scope` on every namespace (what tokens always had), or `grants`."""
        return self.create_record(scope, description, identity, grants=grants,
                                  expires=expires)[0]

    def create_record(self, scope: str | None = None, description: str = "", identity: str = "",
                      *, grants=None, expires: datetime | None = None) -> tuple[str, dict]:
        """(the new token, its public record)."""
        if grants is None:
            if scope not in SCOPES:
                raise InvalidArgument(f"invalid scope {scope!r}: use one of {', '.join(SCOPES)}")
            grants = (Grant(EVERY_NAMESPACE, scope),)
        grants = tuple(grants)
        if not grants:
            raise InvalidArgument("a token needs at least one grant")
        for grant in grants:
            grant.check()
        token_id = secrets.token_hex(8)
        token = f"{TOKEN_PREFIX}{token_id}_{secrets.token_urlsafe(32)}"
        record = {"id": token_id, "identity": identity or "anonymous",
                  "grants": [{"namespace": g.namespace, "scope": g.scope} for g in grants],
                  "description": description, "created": _now(),
                  "expires": expires.isoformat() if expires else None,
                  "token_mac": self.secret.sign("token", token.encode())}
        record["mac"] = self.secret.sign("token record", canonical(record))
        try:
            self.store.put_if_absent(token_key(token_id), canonical(record))
        except ObjectExists:  # 64 random bits collided: astronomically unlikely, but refuse
            raise InvalidArgument("could not make a unique token id; try again") from None
        return token, public_record(record)

    def revoke(self, token_id: str) -> None:
        """Delete the token's record: every process refuses it once its lookup (at most
        `cache_seconds` old) expires."""
        if not re.fullmatch(r"[0-9a-f]{16}", token_id or ""):
            raise InvalidArgument(f"invalid token id {token_id!r}")
        if not self.store.exists(token_key(token_id)):
            raise TokenNotFound(f"no token {token_id}")
        self.store.delete(token_key(token_id))
        with contextlib.suppress(ObjectNotFound):
            self.store.delete(last_used_key(token_id))
        with self._lock:
            self._cache.pop(token_id, None)

    def list(self) -> list[dict]:
        """Every token's public record (never the token, nor its MACs), with when it was last
        used (to the minute), oldest first; records that do not verify are left out."""
        found = []
        for key in self.store.list_keys("auth/tokens/"):
            try:
                record = self.store.get_json(key)
            except (ObjectNotFound, ValueError):
                continue
            if not self._verified(record, key.rsplit("/", 1)[-1].removesuffix(".json")):
                continue
            public = public_record(record)
            try:
                public["last_used"] = self.store.get_json(last_used_key(record["id"])).get("at")
            except (ObjectNotFound, ValueError, AttributeError):
                public["last_used"] = None
            found.append(public)
        return sorted(found, key=lambda r: (r["created"], r["id"]))

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
        if not self.secret.verify("token", token.encode(), token_mac):
            return None
        self._note_use(token_id)
        return identity

    def _note_use(self, token_id: str) -> None:
        """Record (at most once a minute per process) that the token was used."""
        now = time.monotonic()
        with self._lock:
            if now - self._used.get(token_id, -self.LAST_USED_EVERY) < self.LAST_USED_EVERY:
                return
            self._used[token_id] = now
        with contextlib.suppress(Exception):  # best effort: never fail a request for this
            self.store.put_bytes(last_used_key(token_id), canonical({"at": _now()}))

    def _verified(self, record: object, token_id: str) -> bool:
        if not isinstance(record, dict) or record.get("id") != token_id:
            return False
        signed = {k: v for k, v in record.items() if k != "mac"}
        return self.secret.verify("token record", canonical(signed), record.get("mac"))

    def _read(self, token_id: str) -> tuple[Identity, str] | None:
        """The identity a token record gives and the MAC of its token, if the record verifies."""
        try:
            record = self.store.get_json(token_key(token_id))
        except (ObjectNotFound, ValueError):
            return None
        if not self._verified(record, token_id):
            return None  # written by someone without the secret: not a token
        expires = record.get("expires")
        identity = Identity(token_id, str(record.get("identity", "")),
                            str(record.get("description", "")), _grants_of(record),
                            datetime.fromisoformat(expires) if expires else None)
        return identity, record.get("token_mac")

    def authenticate(self, token: str) -> Identity:
        """The token's identity; raise Unauthorized for a token the hub does not know or that
        expired."""
        identity = self.identify(token)
        if identity is None:
            raise Unauthorized("unknown or revoked token")
        if identity.expired:
            raise Unauthorized(f"token {identity.token_id} expired at "
                               f"{identity.expires.isoformat()}")
        return identity

    def authorize(self, token: str | None, needed: str,
                  namespace: str = EVERY_NAMESPACE) -> Identity:
        """The token's identity; raise unless it grants `needed` on `namespace`."""
        if not token:
            raise Unauthorized(f"this request needs a token with scope {needed!r}")
        identity = self.authenticate(token)
        if not identity.allows(namespace, needed):
            where = "every namespace" if namespace == EVERY_NAMESPACE else \
                f"namespace {namespace!r}"
            raise Forbidden(f"token {identity.token_id} ({', '.join(map(str, identity.grants))}) "
                            f"cannot do this; it needs {needed!r} on {where}")
        return identity


def public_record(record: dict) -> dict:
    """What may be shown of a token record: never its MACs."""
    grants = _grants_of(record)
    return {"id": record["id"], "identity": record.get("identity", ""),
            "description": record.get("description", ""),
            "grants": [str(g) for g in grants], "created": record.get("created"),
            "expires": record.get("expires")}


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


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
    return Access(TokenStore(store, LazySecret(store, settings)), settings.anonymous_read,
                  NamespacePrivacy(store))


class NamespacePrivacy:
    """Which namespaces are private, from their records in the store (each read trusted for
    CACHE_SECONDS, like tokens)."""

    def __init__(self, store: ObjectStore, cache_seconds: float = CACHE_SECONDS):
        self.store = store
        self.cache_seconds = cache_seconds
        self._cache: dict[str, tuple[float, bool]] = {}
        self._lock = threading.Lock()

    def private(self, namespace: str) -> bool:
        with self._lock:
            cached = self._cache.get(namespace)
        if cached and time.monotonic() - cached[0] < self.cache_seconds:
            return cached[1]
        try:
            record = self.store.get_json(namespace_key(namespace))
            private = bool(record.get("private")) if isinstance(record, dict) else False
        except (ObjectNotFound, ValueError):
            private = False
        with self._lock:
            self._cache[namespace] = (time.monotonic(), private)
        return private

    def cached(self, namespace: str) -> bool:
        with self._lock:
            cached = self._cache.get(namespace)
        return bool(cached) and time.monotonic() - cached[0] < self.cache_seconds

    def forget(self, namespace: str) -> None:
        with self._lock:
            self._cache.pop(namespace, None)


class Access:
    """The one access rule, asked by every route and protocol.

    - A token that is sent is always checked (unknown, revoked or expired: 401).
    - Writes and admin work need a grant of that scope on the model's namespace (or `*`).
    - Reads of a public namespace are open when anonymous reads are on, and otherwise need a
      read grant on it; reads of a private namespace always need one. To anyone without, a
      private namespace does not exist: its models answer 404, never 403, and lists leave them
      out.
    """

    def __init__(self, tokens: TokenStore, anonymous_read: bool,
                 privacy: NamespacePrivacy | None = None):
        self.tokens = tokens
        self.anonymous_read = anonymous_read
        self.privacy = privacy or NamespacePrivacy(tokens.store)

    def authenticate(self, token: str | None) -> Identity | None:
        """The caller (None: anonymous); raise for a token that does not verify."""
        return self.tokens.authenticate(token) if token else None

    def can_read(self, identity: Identity | None, namespace: str) -> bool:
        if identity is not None and identity.allows(namespace, "read"):
            return True
        return self.anonymous_read and not self.privacy.private(namespace)

    def require(self, token: str | None, needed: str,
                namespace: str = EVERY_NAMESPACE) -> Identity | None:
        """The caller's identity (None: anonymous, allowed); raise if not allowed. With a
        namespace, a caller who may not read it is told it does not exist."""
        identity = self.authenticate(token)
        return self.check(identity, needed, namespace)

    def check(self, identity: Identity | None, needed: str,
              namespace: str = EVERY_NAMESPACE) -> Identity | None:
        """Raise unless `identity` may do `needed` on `namespace` (`*`: what is not about one
        namespace, such as lists, which are then filtered with `can_read`)."""
        whole = namespace == EVERY_NAMESPACE
        if not whole and not self.can_read(identity, namespace) and \
                self.privacy.private(namespace):
            raise NamespaceNotFound(f"namespace {namespace!r} not found")
        if needed == "read" and (self.can_read(identity, namespace) if not whole
                                 else identity is not None or self.anonymous_read):
            return identity
        if identity is None:
            raise Unauthorized(f"this request needs a token with scope {needed!r}")
        if not identity.allows(namespace, needed):
            where = "every namespace" if whole else f"namespace {namespace!r}"
            raise Forbidden(f"token {identity.token_id} ({', '.join(map(str, identity.grants))}) "
                            f"cannot do this; it needs {needed!r} on {where}")
        return identity

    def check_model(self, identity: Identity | None, needed: str, name: str) -> None:
        """`check` on the model's namespace; a hidden namespace reads as a missing model."""
        try:
            self.check(identity, needed, namespace_of(name))
        except NamespaceNotFound:
            raise ModelNotFound(f"model {name!r} not found") from None

    async def authenticate_async(self, token: str | None) -> Identity | None:
        """`authenticate` for an event loop: a token not in memory is looked up on a thread, so
        a store read (an S3 request) never blocks the loop."""
        if token and not self.tokens.cached(token):
            import asyncio

            return await asyncio.get_running_loop().run_in_executor(
                None, self.authenticate, token)
        return self.authenticate(token)

    async def check_model_async(self, identity: Identity | None, needed: str, name: str) -> None:
        """`check_model` for an event loop: a namespace's record not in memory is read on a
        thread."""
        if not self.privacy.cached(namespace_of(name)):
            import asyncio

            await asyncio.get_running_loop().run_in_executor(
                None, self.check_model, identity, needed, name)
            return
        self.check_model(identity, needed, name)

    def filter_names(self, identity: Identity | None, names) -> list[str]:
        """The names among `names` whose namespace the caller may read."""
        return [n for n in names if self.can_read(identity, namespace_of(n))]

    async def require_async(self, token: str | None, needed: str) -> Identity | None:
        identity = await self.authenticate_async(token)
        return self.check(identity, needed)


# --- allowances ---------------------------------------------------------------------------------


def sign_allowance(secret: Secret | LazySecret, record: dict) -> str:
    """The signature of an allowance record (ops, by, at, graph_sha256)."""
    return secret.sign("allowance", canonical({k: v for k, v in record.items()
                                               if k != "signature"}))


def allowance_is_genuine(secret: Secret | LazySecret, record: dict | None) -> bool:
    return bool(record) and secret.verify(
        "allowance", canonical({k: v for k, v in record.items() if k != "signature"}),
        record.get("signature"))
