"""The catalog's pages: the model list (`/`), a page per model and per version at the URL
`tensorflow_hub.load()` takes (`/models/NAME[/VERSION|/ALIAS]`, which still answers programs
with the archive or the manifest), and sign-in for private hubs.

Pages are rendered on the server and work with JavaScript off; the little JavaScript there is
(`static/try.js`) runs "try it" and resizes uploaded images. A page shows only what the caller
may read, and a model the caller may not read is not found.
"""
from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass
from urllib.parse import urlencode

from flask import (
    Blueprint,
    Response,
    abort,
    current_app,
    redirect,
    render_template,
    request,
    url_for,
)

from schemas.errors import ModelhubError, ModelNotFound, Unauthorized
from schemas.manifest import namespace_of
from schemas.settings import Settings

from ..auth import SESSION_COOKIE, Access, Identity, bearer_token, csrf_token
from ..registry import Registry
from ..server.tfhub import download, resolve_path
from . import cards, changes, snippets
from .index import CatalogIndex

catalog = Blueprint("catalog", __name__, template_folder="templates", static_folder="static",
                    static_url_path="/catalog/static")

#: Where the catalog keeps its context in `app.extensions`.
EXTENSION = "catalog"
PER_PAGE = 20
SIGN_IN_COOKIE = "modelhub_sign_in"
SORTS = ("name", "updated", "size")
#: A "try it" body is prefilled only up to this many values (an image comes from an upload).
MAX_PREFILL_VALUES = 4096


@dataclass(frozen=True)
class CatalogContext:
    registry: Registry
    access: Access
    settings: Settings
    index: CatalogIndex
    manager: object | None  # serving's ModelManager with role all: what this process serves


def context() -> CatalogContext:
    return current_app.extensions[EXTENSION]


# --- who is asking ----------------------------------------------------------------------------


def caller() -> Identity | None:
    """The token of the Authorization header, or of the signed-in session."""
    ctx = context()
    token = bearer_token(request.headers.get("Authorization")) or \
        request.cookies.get(SESSION_COOKIE)
    if not token:
        return None
    try:
        return ctx.access.authenticate(token)
    except Unauthorized:
        return None  # an expired or revoked session: shown as signed out


def wants_html() -> bool:
    """A browser asks for HTML first; programs (tensorflow_hub, requests, curl) do not."""
    if request.args.get("tf-hub-format"):
        return False
    best = request.accept_mimetypes.best_match(["application/json", "text/html"])
    return best == "text/html" and request.accept_mimetypes["text/html"] > 0


def _sign_in_needed(who: Identity | None) -> Response | None:
    if who is None and not context().access.anonymous_read:
        return redirect(url_for("catalog.sign_in", next=request.full_path.rstrip("?")))
    return None


def _page(template: str, who: Identity | None, **values) -> str:
    session = request.cookies.get(SESSION_COOKIE)
    csrf = csrf_token(context().access.tokens.secret, session) if session and who else ""
    return render_template(template, who=who, csrf=csrf, base_url=request.host_url.rstrip("/"),
                           **values)


# --- the list ---------------------------------------------------------------------------------


@catalog.get("/")
def model_list():
    who = caller()
    if (redirected := _sign_in_needed(who)) is not None:
        return redirected
    ctx = context()
    q = request.args.get("q", "").strip()[:256]
    tag = request.args.get("tag") or None
    license_ = request.args.get("license") or None
    safety = request.args.get("safety") or None
    sort = request.args.get("sort", "name")
    sort = sort if sort in SORTS else "name"
    try:
        page = max(1, int(request.args.get("page", "1")))
    except ValueError:
        page = 1
    visible = lambda namespace: ctx.access.can_read(who, namespace)  # noqa: E731
    ctx.index.sync_changes()  # what any hub wrote: shown at once
    everything = ctx.index.search(None, visible=visible)
    found = ctx.index.search(q, tag=tag, license=license_, safety=safety, sort=sort,
                             visible=visible)
    pages = max(1, -(-len(found) // PER_PAGE))
    page = min(page, pages)
    shown = found[(page - 1) * PER_PAGE: page * PER_PAGE]
    served = _served_states(ctx, [e["name"] for e in shown])
    facets = {"tags": sorted({f"{k}={v}" for e in everything for k, v in e["tags"].items()}),
              "licenses": sorted({e["license"] for e in everything if e["license"]}),
              "safety": ("safe", "allowed", "unsafe", "unscanned")}

    def link(**changed) -> str:
        args = {"q": q, "tag": tag, "license": license_, "safety": safety, "sort": sort,
                "page": page, **changed}
        return "/?" + urlencode({k: v for k, v in args.items() if v not in (None, "", 1)
                                 or (k == "page" and v != 1 and v)})

    return _page("list.html", who, models=shown, total=len(found), q=q, tag=tag,
                 license=license_, safety=safety, sort=sort, sorts=SORTS, page=page,
                 pages=pages, facets=facets, served=served, link=link)


def _served_states(ctx: CatalogContext, names: list[str]) -> dict[str, str]:
    """What this process's model manager says of each model (role all), if anything."""
    states = {}
    if ctx.manager is None:
        return states
    for name in names:
        try:
            versions = ctx.manager.statuses(name)
        except ModelhubError:
            continue
        states[name] = "serving" if any(v.state == "AVAILABLE" for v in versions) else \
            versions[0].state.lower() if versions else ""
    return states


# --- a model, a version -----------------------------------------------------------------------


@catalog.get("/models/<path:target>")
def model_page(target: str):
    if not wants_html():
        return download(target)  # tensorflow_hub and other programs: as before
    who = caller()
    if (redirected := _sign_in_needed(who)) is not None:
        return redirected
    ctx = context()
    registry = ctx.registry
    try:
        ref = resolve_path(registry, target)
        if not ctx.access.can_read(who, namespace_of(ref.name)):
            raise ModelNotFound(f"model {ref.name!r} not found")
        name, version = registry.resolve(ref)
    except ModelhubError as e:
        return _page("missing.html", who, message=str(e)), e.status if e.status < 500 else 404
    versions = registry.versions(name)
    manifests = {v: registry.manifest(name, v) for v in versions}
    manifest = manifests[version]
    aliases = registry.aliases(name)
    by_version: dict[int, list[str]] = {}
    for alias, target_version in sorted(aliases.items()):
        by_version.setdefault(target_version, []).append(alias)
    entry = ctx.index.entry(name) or {}
    card_metadata, card_html = cards.render(manifest.get("model_card"))
    earlier = [v for v in versions if v < version]
    diff = changes.compare(manifests[earlier[-1]] if earlier else None, manifest)
    artifacts = registry.artifacts(name, version)
    states = _version_states(ctx, name)
    signature_name = "serving_default" if "serving_default" in manifest["signatures"] else \
        next(iter(sorted(manifest["signatures"])), None)
    signature = manifest["signatures"].get(signature_name) if signature_name else None
    served_here = states.get(version) == "AVAILABLE"
    prefill = None
    if served_here and signature is not None:
        body = snippets.example_body(signature_name, signature)
        if sum(_count(v) for v in body["inputs"].values()) <= MAX_PREFILL_VALUES:
            prefill = body
    image_input = _image_input(signature) if signature else None
    return _page(
        "model.html", who, name=name, version=version, manifest=manifest,
        latest=versions[-1], is_version_page="/" in target and target != name,
        versions=[manifests[v] for v in reversed(versions)], deleted=entry.get("deleted", []),
        aliases_of=by_version, aliases=aliases, card_html=card_html,
        card_rows=cards.metadata_rows(card_metadata), changes=diff,
        artifacts=sorted(artifacts.items()), safety=registry.safety(manifest), states=states,
        served_here=served_here, snippets=snippets.snippets(
            request.host_url.rstrip("/"), name, version, signature_name, signature),
        signature_name=signature_name, prefill=prefill, image_input=image_input,
        file_base=f"/api/v1/models/{name}/versions/{version}/files/")


def _count(value) -> int:
    return sum(_count(v) for v in value) if isinstance(value, list) else 1


def _image_input(signature: dict) -> dict | None:
    """The input an uploaded image fills: one [N, H, W, 3] float input."""
    if len(signature["inputs"]) != 1:
        return None
    (input_name, spec), = signature["inputs"].items()
    shape = spec["shape"]
    if shape and len(shape) == 4 and shape[3] == 3 and shape[1] > 0 and shape[2] > 0 and \
            spec["dtype"].startswith("float"):
        return {"name": input_name, "height": shape[1], "width": shape[2]}
    return None


def _version_states(ctx: CatalogContext, name: str) -> dict[int, str]:
    if ctx.manager is None:
        return {}
    try:
        return {s.version: s.state for s in ctx.manager.statuses(name)}
    except ModelhubError:
        return {}


# --- signing in -------------------------------------------------------------------------------


def _safe_next(target: str | None) -> str:
    if target and target.startswith("/") and not target.startswith("//"):
        return target
    return "/"


@catalog.route("/sign-in", methods=["GET", "POST"])
def sign_in():
    ctx = context()
    if request.method == "GET":
        nonce = secrets.token_urlsafe(24)
        response = Response(_page("sign_in.html", caller(), nonce=nonce,
                                  next=_safe_next(request.args.get("next")), error=None))
        response.set_cookie(SIGN_IN_COOKIE, nonce, httponly=True, samesite="Strict",
                            secure=request.is_secure, path="/sign-in")
        return response
    nonce = request.cookies.get(SIGN_IN_COOKIE, "")
    if not nonce or not hmac.compare_digest(nonce, request.form.get("csrf", "")):
        abort(403, "the sign-in form expired or came from another site; load it again")
    token = request.form.get("token", "").strip()
    try:
        ctx.access.authenticate(token)
    except Unauthorized as e:
        return _page("sign_in.html", None, nonce=nonce, next=_safe_next(request.form.get("next")),
                     error=str(e)), 401
    response = redirect(_safe_next(request.form.get("next")))
    response.set_cookie(SESSION_COOKIE, token, httponly=True, samesite="Strict",
                        secure=request.is_secure)
    response.delete_cookie(SIGN_IN_COOKIE, path="/sign-in")
    return response


@catalog.post("/sign-out")
def sign_out():
    session = request.cookies.get(SESSION_COOKIE)
    expected = csrf_token(context().access.tokens.secret, session) if session else ""
    if not session or not hmac.compare_digest(expected, request.form.get("csrf", "")):
        abort(403, "sign out from the catalog's own page")
    response = redirect("/")
    response.delete_cookie(SESSION_COOKIE)
    return response


__all__ = ["catalog", "CatalogContext", "EXTENSION"]
