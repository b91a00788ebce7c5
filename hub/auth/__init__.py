"""Who may do what: the server's secret that makes everything it signs unforgeable (`secret`),
API tokens and their grants per namespace (`tokens`), `Access`, the one rule every route and
protocol asks, with private namespaces and the catalog's sessions (`access`), and an admin's
allowance of ops the safety scan refuses (`allowances`)."""
from __future__ import annotations

from .access import (
    CSRF_HEADER,
    SESSION_COOKIE,
    Access,
    NamespacePrivacy,
    access_for,
    bearer_token,
    csrf_token,
    session_token,
)
from .allowances import allowance_is_genuine, sign_allowance
from .secret import (
    MIN_SECRET_BYTES,
    LazySecret,
    Secret,
    canonical,
    load_secret,
    record_is_signed,
    secret_file_for,
    sign_record,
)
from .tokens import (
    CACHE_SECONDS,
    EVERY_NAMESPACE,
    TOKEN_PATTERN,
    TOKEN_PREFIX,
    Grant,
    Identity,
    TokenStore,
    last_used_key,
    public_record,
    scope_allows,
    token_key,
)

__all__ = ["Access", "CACHE_SECONDS", "CSRF_HEADER", "EVERY_NAMESPACE", "Grant", "Identity",
           "LazySecret", "MIN_SECRET_BYTES", "NamespacePrivacy", "SESSION_COOKIE", "Secret",
           "TOKEN_PATTERN", "TOKEN_PREFIX", "TokenStore", "access_for", "allowance_is_genuine",
           "bearer_token", "canonical", "csrf_token", "last_used_key", "load_secret",
           "public_record", "record_is_signed", "scope_allows", "secret_file_for",
           "session_token", "sign_allowance", "sign_record", "token_key"]
