"""`Access`, the one rule every route and protocol asks; which namespaces are private; the
bearer token of a request and the catalog's signed-in sessions with their CSRF tokens."""
from __future__ import annotations

import hmac
import threading
import time

from schemas.errors import Forbidden, ModelNotFound, NamespaceNotFound, ObjectNotFound, Unauthorized
from schemas.manifest import namespace_of
from schemas.settings import Settings
from storage import ObjectStore

from ..registry.layout import namespace_key
from .secret import LazySecret, Secret
from .tokens import CACHE_SECONDS, EVERY_NAMESPACE, Identity, TokenStore


#: The catalog's sign-in: the token itself, in an HttpOnly, SameSite=Strict cookie.
SESSION_COOKIE = "modelhub_session"
CSRF_HEADER = "X-CSRF-Token"


def csrf_token(secret: Secret | LazySecret, token: str) -> str:
    """What a page signed in with `token` sends with anything it changes or runs (a form field,
    or the X-CSRF-Token header): another site can make a browser send the cookie, never this."""
    return secret.sign("csrf", token.encode())[:32]


def session_token(secret: Secret | LazySecret, cookie_header: str | None,
                  csrf: str | None) -> str | None:
    """The token of a catalog session, when the request also carries its CSRF token."""
    if not cookie_header or not csrf:
        return None
    from http.cookies import CookieError, SimpleCookie

    try:
        morsel = SimpleCookie(cookie_header).get(SESSION_COOKIE)
    except CookieError:
        return None
    if morsel is None or not morsel.value:
        return None
    return morsel.value if hmac.compare_digest(csrf_token(secret, morsel.value), csrf) else None


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
        readable = identity is not None or self.anonymous_read if whole \
            else self.can_read(identity, namespace)
        if not readable and not whole and self.privacy.private(namespace):
            raise NamespaceNotFound(f"namespace {namespace!r} not found")
        if needed == "read" and readable:
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
