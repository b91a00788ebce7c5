"""Who may do what: API tokens with scopes `read` < `write` < `admin`, kept hashed in the store,
and `Access`, the one rule every route and protocol asks.

    auth/tokens/<sha256 of the token>.json    {"scope": ..., "created": ..., "description": ...}

Only the hash is stored, so reading the store does not reveal a usable token. Tokens are long
random strings, so a plain sha256 is enough (no password-style slow hash is needed).
"""
from __future__ import annotations

import hashlib
import json
import secrets
import threading
import time
from datetime import datetime, timezone

from schemas.api import SCOPES
from schemas.errors import Forbidden, InvalidArgument, ObjectNotFound, Unauthorized

from storage import ObjectStore

TOKEN_PREFIX = "mh_"
#: How long a looked-up token is trusted before the store is asked again (revocation delay).
CACHE_SECONDS = 30.0


def token_id(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def scope_allows(granted: str, needed: str) -> bool:
    return SCOPES.index(granted) >= SCOPES.index(needed)


class TokenStore:
    def __init__(self, store: ObjectStore):
        self.store = store
        self._cache: dict[str, tuple[float, str]] = {}
        self._lock = threading.Lock()

    def create(self, scope: str, description: str = "") -> str:
        """Make a new token and return it; it is shown this once and stored only as a hash."""
        if scope not in SCOPES:
            raise InvalidArgument(f"invalid scope {scope!r}: use one of {', '.join(SCOPES)}")
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        record = {"scope": scope, "description": description,
                  "created": datetime.now(timezone.utc).isoformat()}
        self.store.put_if_absent(f"auth/tokens/{token_id(token)}.json", json.dumps(record).encode())
        return token

    def revoke(self, token: str) -> None:
        self.store.delete(f"auth/tokens/{token_id(token)}.json")
        with self._lock:
            self._cache.pop(token_id(token), None)

    def scope_of(self, token: str) -> str | None:
        """The scope of a token, or None if the hub does not know it."""
        key = token_id(token)
        with self._lock:
            cached = self._cache.get(key)
        if cached and time.monotonic() - cached[0] < CACHE_SECONDS:
            return cached[1]
        try:
            scope = self.store.get_json(f"auth/tokens/{key}.json")["scope"]
        except ObjectNotFound:
            return None
        with self._lock:
            self._cache[key] = (time.monotonic(), scope)
        return scope

    def authorize(self, token: str | None, needed: str | None) -> None:
        """Raise unless `token` grants `needed` (None: anonymous access is allowed)."""
        if needed is None:
            return
        if not token:
            raise Unauthorized(f"this request needs a token with scope {needed!r}")
        scope = self.scope_of(token)
        if scope is None:
            raise Unauthorized("unknown or revoked token")
        if not scope_allows(scope, needed):
            raise Forbidden(f"a {scope!r} token cannot do this; it needs scope {needed!r}")


def bearer_token(header: str | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` header (None: no header)."""
    if not header:
        return None
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("use the header 'Authorization: Bearer <token>'")
    return token.strip()


class Access:
    """The one access rule: reads need a `read` token unless anonymous reads are on; anything
    else needs a token of at least its scope. A token that is sent is always checked."""

    def __init__(self, tokens: TokenStore, anonymous_read: bool):
        self.tokens = tokens
        self.anonymous_read = anonymous_read

    def require(self, token: str | None, needed: str) -> None:
        if token or not (needed == "read" and self.anonymous_read):
            self.tokens.authorize(token, needed)
