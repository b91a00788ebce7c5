"""What the hub's views share: the registry, the access rule, the audit log and the settings the
app was built with (its `extensions`), the `requires` guard, the `audited` record of writes, and
the JSON error body."""
from __future__ import annotations

import functools
from dataclasses import dataclass

from flask import Response, current_app, g, jsonify, request

from schemas.settings import Settings

from ..audit import Actor, AuditLog, outcome_of
from ..auth import EVERY_NAMESPACE, Access, Identity, bearer_token
from ..refs import is_version_text
from ..registry import Registry


#: Where the hub keeps its context in `app.extensions`.
EXTENSION = "hub"


@dataclass(frozen=True)
class HubContext:
    registry: Registry
    access: Access
    settings: Settings
    audit: AuditLog


def get_registry() -> Registry:
    return current_app.extensions[EXTENSION].registry


def get_access() -> Access:
    return current_app.extensions[EXTENSION].access


def get_settings() -> Settings:
    return current_app.extensions[EXTENSION].settings


def get_audit() -> AuditLog:
    return current_app.extensions[EXTENSION].audit


def identity() -> Identity | None:
    """Who the request is from (set by `requires`; None: anonymous)."""
    return g.get("identity")


def requires(scope: str):
    """Views that need `scope`: on the model's namespace for views of one model (whose namespace
    the caller may not read: 404), on every namespace for the others. Reads may be anonymous:
    see `Access`. The caller's identity is kept for the view (`identity()`)."""
    def decorate(view):
        @functools.wraps(view)
        def guarded(*args, **kwargs):
            access = get_access()
            g.identity = access.authenticate(bearer_token(request.headers.get("Authorization")))
            if "name" in kwargs:
                access.check_model(g.identity, scope, kwargs["name"])
            else:
                access.check(g.identity, scope, EVERY_NAMESPACE)
            return view(*args, **kwargs)
        return guarded
    return decorate


def actor() -> Actor:
    return Actor.of(identity(), request.remote_addr)


def audited(action: str):
    """A write view whose every outcome (done, or the error it ended with) goes into the audit
    log, with the caller. The view may add `g.audit_version` and `g.audit_detail`."""
    def decorate(view):
        @functools.wraps(view)
        def logged(*args, **kwargs):
            version = kwargs.get("version")
            g.audit_version = int(version) if version and is_version_text(version) else None
            g.audit_detail = ""
            error = None
            try:
                return view(*args, **kwargs)
            except Exception as e:
                error = e
                raise
            finally:
                get_audit().append(actor(), action, model=kwargs.get("name"),
                                   version=g.audit_version, outcome=outcome_of(error),
                                   detail=g.audit_detail, namespace=g.get("audit_namespace"))
                catalog = current_app.extensions.get("catalog")
                if catalog is not None and kwargs.get("name") and error is None:
                    catalog.index.touch(kwargs["name"])  # this hub's own write: shown at once
        return logged
    return decorate


def error_response(status: int, code: str, message: str, headers: dict | None = None) -> Response:
    """The hub's error body: `{"error": {"code": ..., "message": ...}}`."""
    response = jsonify({"error": {"code": code, "message": message}})
    response.status_code = status
    response.headers.update(headers or {})
    return response


def archive_response(manifest: dict, chunks) -> Response:
    filename = f"{manifest['name'].replace('/', '-')}-{manifest['version']}.tar.gz"
    return Response(chunks, mimetype="application/gzip",
                    headers={"Content-Disposition": f'attachment; filename="{filename}"'})
