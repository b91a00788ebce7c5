"""API tokens and their grants.

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
import re
import secrets
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone

from schemas.api import SCOPES
from schemas.errors import (
    Forbidden,
    InvalidArgument,
    InvalidManifest,
    ObjectExists,
    ObjectNotFound,
    TokenNotFound,
    Unauthorized,
)
from schemas.manifest import DEFAULT_NAMESPACE
from storage import ObjectStore

from ..refs import check_namespace
from .secret import LazySecret, Secret, canonical, record_is_signed, sign_record

TOKEN_PREFIX = "mh_"
TOKEN_PATTERN = re.compile(r"mh_([0-9a-f]{16})_([A-Za-z0-9_-]{20,})")
#: How long a looked-up token is trusted before its record is read again (revocation delay).
CACHE_SECONDS = 1.0


#: Characters that would break a printed line (newlines, terminal escapes).
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")

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
        for field, text in (("identity", identity), ("description", description)):
            if _CONTROL.search(text):  # they are printed in lists and logs: one line each
                raise InvalidArgument(f"the token's {field} may not hold control characters "
                                      "(newlines, escapes)")
        token_id = secrets.token_hex(8)
        token = f"{TOKEN_PREFIX}{token_id}_{secrets.token_urlsafe(32)}"
        record = {"id": token_id, "identity": identity or "anonymous",
                  "grants": [{"namespace": g.namespace, "scope": g.scope} for g in grants],
                  "description": description, "created": _now(),
                  "expires": expires.isoformat() if expires else None,
                  "token_mac": self.secret.sign("token", token.encode())}
        record["mac"] = sign_record(self.secret, "token record", record)
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
        return record_is_signed(self.secret, "token record", record)

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
