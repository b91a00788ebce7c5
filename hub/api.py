"""The hub HTTP API (`/api/v1`) and the tensorflow_hub-compatible download route (`/models`).

Views raise the project's errors; one handler turns them into `{"error": {"code", "message"}}`
with the status their class carries.
"""
from __future__ import annotations

import functools
import json
import logging
from pathlib import PurePosixPath

from flask import Blueprint, Flask, Response, current_app, jsonify, request, url_for
from marshmallow import ValidationError
from werkzeug.exceptions import HTTPException

from schemas.api import (
    AliasRequestSchema,
    ArtifactListSchema,
    ConvertRequestSchema,
    CreatedArtifactSchema,
    ListQuerySchema,
    ModelDetailSchema,
    ModelListSchema,
    PublishMetadataSchema,
    TokenRequestSchema,
    VersionListSchema,
)
from schemas.errors import InvalidArgument, ModelhubError, UnsupportedMediaType, Unauthorized
from schemas.manifest import dump_manifest

from .refs import check_alias, check_name, check_version, reference_from_url
from .registry import Registry
from .tokens import TokenStore

log = logging.getLogger(__name__)

api = Blueprint("hub_api", __name__, url_prefix="/api/v1")
tfhub = Blueprint("tfhub", __name__)

ARCHIVE_TYPES = {"application/gzip", "application/x-gzip", "application/x-tar",
                 "application/octet-stream", "application/x-compressed-tar"}
METADATA_HEADER = "Modelhub-Metadata"


def init_app(app: Flask, routes: bool = True) -> None:
    """Attach the registry and token store for `app.config["STORE"]`, the error handlers, and
    (unless `routes` is False, for a serving-only process) the hub's routes."""
    registry = Registry.open(app.config["STORE"])
    app.extensions["modelhub.registry"] = registry
    app.extensions["modelhub.tokens"] = TokenStore(registry.store)
    if routes:
        app.register_blueprint(api)
        app.register_blueprint(tfhub)
    app.register_error_handler(ModelhubError, error_response)
    app.register_error_handler(HTTPException, http_error_response)
    app.register_error_handler(Exception, unexpected_error_response)


def get_registry() -> Registry:
    return current_app.extensions["modelhub.registry"]


def get_tokens() -> TokenStore:
    return current_app.extensions["modelhub.tokens"]


# --- errors -------------------------------------------------------------------------------------


def _error(status: int, code: str, message: str, headers: dict | None = None) -> Response:
    response = jsonify({"error": {"code": code, "message": message}})
    response.status_code = status
    response.headers.update(headers or {})
    return response


def error_response(e: ModelhubError) -> Response:
    headers = {"WWW-Authenticate": 'Bearer realm="modelhub"'} if isinstance(e, Unauthorized) else None
    return _error(e.status, e.code, str(e), headers)


def http_error_response(e: HTTPException) -> Response:
    code = (e.name or "error").lower().replace(" ", "_")
    message = e.description or e.name
    if e.code == 413:
        message = f"the request body is larger than this server accepts ({request.max_content_length} bytes)"
    # keep what the exception says about the response (Allow on a 405, ...), not its body type
    headers = {k: v for k, v in e.get_headers() if k.lower() != "content-type"}
    return _error(e.code or 500, code, message, headers)


def unexpected_error_response(e: Exception) -> Response:
    log.exception("unexpected error on %s %s", request.method, request.path)
    return _error(500, "internal", "internal server error; the server log has the details")


# --- helpers ------------------------------------------------------------------------------------


def _bearer_token() -> str | None:
    header = request.headers.get("Authorization")
    if not header:
        return None
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("use the header 'Authorization: Bearer <token>'")
    return token.strip()


def require_read_access() -> None:
    """For read-only routes elsewhere (predictions): a read token unless reads are anonymous."""
    token = _bearer_token()
    if token or not current_app.config["ANONYMOUS_READ"]:
        get_tokens().authorize(token, "read")


def requires(scope: str):
    """Views that need a token of at least `scope`; reads may be anonymous (a server setting)."""
    def decorate(view):
        @functools.wraps(view)
        def guarded(*args, **kwargs):
            anonymous_ok = scope == "read" and current_app.config["ANONYMOUS_READ"]
            token = _bearer_token()
            if token or not anonymous_ok:
                get_tokens().authorize(token, scope)
            return view(*args, **kwargs)
        return guarded
    return decorate


def _load(schema, data, what: str) -> dict:
    try:
        return schema.load(data)
    except ValidationError as e:
        raise InvalidArgument(f"invalid {what}: {e.messages}") from e


def _json_body(schema, what: str) -> dict:
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise InvalidArgument(f"the {what} must be a JSON object")
    return _load(schema, body, what)


def _version_summary(manifest: dict) -> dict:
    return {key: manifest[key] for key in
            ("version", "created", "total_size", "description", "tensorflow_version")}


def _archive_response(manifest: dict, chunks) -> Response:
    filename = f"{manifest['name']}-{manifest['version']}.tar.gz"
    return Response(chunks, mimetype="application/gzip",
                    headers={"Content-Disposition": f'attachment; filename="{filename}"'})


# --- models -------------------------------------------------------------------------------------


@api.get("/models")
@requires("read")
def list_models():
    query = _load(ListQuerySchema(), request.args, "query")
    models = get_registry().list_models(query["q"])
    page, per_page = query["page"], query["per_page"]
    chosen = models[(page - 1) * per_page: page * per_page]
    return ModelListSchema().dump(
        {"models": chosen, "page": page, "per_page": per_page, "total": len(models)})


@api.get("/models/<name>")
@requires("read")
def model_detail(name: str):
    registry = get_registry()
    manifests = [registry.manifest(name, v, artifacts=False)
                 for v in registry.versions(check_name(name))]
    if not manifests:
        registry.resolve(name)  # raises ModelNotFound
    latest = manifests[-1]
    return ModelDetailSchema().dump({
        "name": name,
        "latest": latest["version"],
        "versions": [_version_summary(m) for m in manifests],
        "aliases": registry.aliases(name),
        **{key: latest[key] for key in ("description", "tags", "license", "model_card")},
    })


@api.get("/models/<name>/versions")
@requires("read")
def list_versions(name: str):
    registry = get_registry()
    versions = registry.versions(check_name(name))
    if not versions:
        registry.resolve(name)  # raises ModelNotFound
    return VersionListSchema().dump(
        {"name": name, "versions": [_version_summary(registry.manifest(name, v, artifacts=False))
                                    for v in versions]})


@api.post("/models/<name>/versions")
@requires("write")
def publish(name: str):
    """Publish the tar(.gz) in the body; metadata as JSON in the Modelhub-Metadata header."""
    check_name(name)
    content_type = (request.mimetype or "").lower()
    if content_type not in ARCHIVE_TYPES:
        raise UnsupportedMediaType(
            f"send the SavedModel as a tar or tar.gz body (Content-Type application/gzip), "
            f"not {content_type or 'no content type'}")
    raw_metadata = request.headers.get(METADATA_HEADER)
    try:
        metadata = json.loads(raw_metadata) if raw_metadata else {}
    except json.JSONDecodeError as e:
        raise InvalidArgument(f"the {METADATA_HEADER} header is not valid JSON: {e}") from e
    if not isinstance(metadata, dict):
        raise InvalidArgument(f"the {METADATA_HEADER} header must hold a JSON object")
    metadata = _load(PublishMetadataSchema(), metadata, "publish metadata")
    # Werkzeug enforces this while the body streams in: a declared Content-Length over it is
    # refused before any byte is read, and a chunked body is cut off as soon as it passes it.
    request.max_content_length = current_app.config["MAX_UPLOAD_BYTES"]
    manifest = get_registry().publish_archive(
        request.stream, name, max_bytes=current_app.config["MAX_EXTRACTED_BYTES"], **metadata)
    response = jsonify(dump_manifest(manifest))
    response.status_code = 201
    response.headers["Location"] = url_for(".version_manifest", name=name,
                                           version=manifest["version"])
    return response


@api.get("/models/<name>/versions/<version>")
@requires("read")
def version_manifest(name: str, version: str):
    """`version` is a number, `latest`, or an alias."""
    return dump_manifest(get_registry().get(reference_from_url(name, version)))


@api.delete("/models/<name>/versions/<version>")
@requires("admin")
def delete_version(name: str, version: str):
    get_registry().delete_version(check_name(name), check_version(version))
    return Response(status=204)


@api.get("/models/<name>/versions/<version>/archive")
@requires("read")
def version_archive(name: str, version: str):
    manifest, chunks = get_registry().archive(reference_from_url(name, version))
    return _archive_response(manifest, chunks)


@api.get("/models/<name>/versions/<version>/files/<path:path>")
@requires("read")
def version_file(name: str, version: str, path: str):
    """One file; its sha256 is its ETag. Supports Range, If-Range and If-None-Match."""
    registry = get_registry()
    manifest = registry.get(reference_from_url(name, version), artifacts=False)
    entry = registry.file_entry(manifest, path)
    return _blob_response(entry, version.isdigit(), path,
                          lambda start=0, end=None: registry.file_chunks(manifest, entry, start, end))


def _blob_response(entry: dict, by_number: bool, what: str, chunks) -> Response:
    """Stored bytes (`entry`: size and sha256; `chunks(start, end)` streams them) with their
    sha256 as ETag, Range, If-Range and If-None-Match."""
    etag, size = entry["sha256"], entry["size"]
    # By number, these bytes never change; by alias or `latest` they may, after a move. Private
    # hubs must not let shared caches keep what a token was needed for.
    scope = "public" if current_app.config["ANONYMOUS_READ"] else "private"
    caching = f"{scope}, max-age=31536000, immutable" if by_number else f"{scope}, no-cache"
    headers = {"ETag": f'"{etag}"', "Accept-Ranges": "bytes", "Cache-Control": caching}
    if request.if_none_match.contains_weak(etag):
        return Response(status=304, headers=headers)
    byte_range = request.range
    if byte_range is not None and (
            len(byte_range.ranges) != 1
            # If-Range needs a strong match; anything else means "send it all"
            or request.headers.get("If-Range", f'"{etag}"') != f'"{etag}"'):
        byte_range = None
    if byte_range is None:
        return Response(chunks(), content_type="application/octet-stream",
                        headers={**headers, "Content-Length": str(size)})
    bounds = byte_range.range_for_length(size)
    if bounds is None:
        return _error(416, "range_not_satisfiable", f"{what} has {size} bytes",
                      {**headers, "Content-Range": f"bytes */{size}"})
    start, stop = bounds
    return Response(chunks(start, stop), status=206,
                    content_type="application/octet-stream",
                    headers={**headers, "Content-Length": str(stop - start),
                             "Content-Range": byte_range.to_content_range_header(size)})


# --- artifacts ----------------------------------------------------------------------------------


@api.get("/models/<name>/versions/<version>/artifacts")
@requires("read")
def list_artifacts(name: str, version: str):
    registry = get_registry()
    manifest = registry.get(reference_from_url(name, version))
    return ArtifactListSchema().dump({"name": manifest["name"], "version": manifest["version"],
                                      "artifacts": manifest["artifacts"]})


@api.post("/models/<name>/versions/<version>/artifacts")
@requires("write")
def create_artifact(name: str, version: str):
    """Convert the version (JSON body: ConvertRequestSchema) and store the result as an
    artifact. Runs in the request (seconds for small models); conversions in one process run
    one at a time."""
    from .convert import artifact_name, convert

    body = _json_body(ConvertRequestSchema(), "conversion request")
    registry = get_registry()
    # Pinned to a number first: an alias moved meanwhile cannot change what gets converted.
    _, number = registry.resolve(reference_from_url(name, version))
    record = convert(registry, f"{name}/{number}", quantize=body["quantize"],
                     samples=body["samples"], signature=body["signature"],
                     allow_select_tf_ops=body["allow_select_tf_ops"],
                     thresholds=body["thresholds"])
    artifact = artifact_name(body["quantize"], body["signature"])
    response = jsonify(CreatedArtifactSchema().dump(
        {"name": name, "version": number, "artifact": artifact, **record}))
    response.status_code = 201
    response.headers["Location"] = url_for(".artifact_file", name=name, version=number,
                                           artifact=artifact)
    return response


@api.get("/models/<name>/versions/<version>/artifacts/<artifact>")
@requires("read")
def artifact_file(name: str, version: str, artifact: str):
    """An artifact's file; like files: sha256 as ETag, Range, If-Range and If-None-Match."""
    registry = get_registry()
    manifest = registry.get(reference_from_url(name, version), artifacts=False)
    record = registry.artifact(manifest["name"], manifest["version"], artifact)
    response = _blob_response(
        record, version.isdigit(), f"artifact {artifact}",
        lambda start=0, end=None: registry.artifact_chunks(manifest, artifact, record, start, end))
    suffix = PurePosixPath(record["path"]).suffix
    response.headers["Content-Disposition"] = (
        f'attachment; filename="{manifest["name"]}-{manifest["version"]}-{artifact}{suffix}"')
    return response


# --- aliases and tokens -------------------------------------------------------------------------


@api.put("/models/<name>/aliases/<alias>")
@requires("write")
def put_alias(name: str, alias: str):
    body = _json_body(AliasRequestSchema(), "alias request")
    record = get_registry().set_alias(check_name(name), check_alias(alias), body["version"],
                                      expected_version=body["expected_version"])
    return {"name": name, "alias": alias, **record}


@api.delete("/models/<name>/aliases/<alias>")
@requires("write")
def delete_alias(name: str, alias: str):
    get_registry().remove_alias(check_name(name), alias)
    return Response(status=204)


@api.post("/tokens")
@requires("admin")
def create_token():
    body = _json_body(TokenRequestSchema(), "token request")
    token = get_tokens().create(body["scope"], body["description"])
    return {"token": token, "scope": body["scope"]}, 201


@api.get("/openapi.json")
def openapi():
    from .openapi import openapi_spec

    return openapi_spec()


# --- tensorflow_hub -----------------------------------------------------------------------------


@tfhub.get("/models/<name>")
@tfhub.get("/models/<name>/<version>")
@requires("read")
def tfhub_model(name: str, version: str | None = None):
    """`tensorflow_hub.load("http://host/models/name/1")` asks for
    `?tf-hub-format=compressed` and expects a tar.gz rooted at the SavedModel."""
    ref = reference_from_url(name, version)
    registry = get_registry()
    if request.args.get("tf-hub-format") == "compressed":
        manifest, chunks = registry.archive(ref)
        return _archive_response(manifest, chunks)
    return dump_manifest(registry.get(ref))
