"""The hub HTTP API (`/api/v1`).

Views raise the project's errors; one handler (`errors`) turns them into
`{"error": {"code", "message"}}` with the status their class carries.
"""
from __future__ import annotations

import json
from pathlib import PurePosixPath

from datetime import datetime, timedelta, timezone

from flask import Blueprint, Response, current_app, g, jsonify, request, url_for
from marshmallow import ValidationError

from schemas.api import (
    AliasRequestSchema,
    AliasSchema,
    AuditListSchema,
    AuditQuerySchema,
    ArtifactListSchema,
    ConvertRequestSchema,
    CreatedArtifactSchema,
    ListQuerySchema,
    ModelDetailSchema,
    ModelListSchema,
    NamespaceListSchema,
    NamespaceRequestSchema,
    NamespaceSchema,
    NamespaceUpdateSchema,
    PublishMetadataSchema,
    ScanResultSchema,
    TokenListSchema,
    TokenRequestSchema,
    TokenSchema,
    VersionListSchema,
    VersionSchema,
)
from schemas.errors import InvalidArgument, Unauthorized, UnsupportedMediaType
from schemas.manifest import dump_manifest, namespace_of

from ..audit import HUB_LOG, log_name
from ..auth import EVERY_NAMESPACE, Grant, sign_allowance
from ..refs import check_alias, check_name, check_version, is_version_text, reference_from_url
from ..registry.publishing import AllowOps
from ..registry.safety import safety_state
from .context import (
    archive_response,
    audited,
    error_response,
    get_access,
    get_audit,
    get_registry,
    get_settings,
    identity,
    requires,
)

api = Blueprint("hub_api", __name__, url_prefix="/api/v1")

ARCHIVE_TYPES = {"application/gzip", "application/x-gzip", "application/x-tar",
                 "application/octet-stream", "application/x-compressed-tar"}
METADATA_HEADER = "Modelhub-Metadata"


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
    return {**{key: manifest[key] for key in
               ("version", "created", "total_size", "description", "tensorflow_version")},
            "safety": safety_state(get_registry().safety(manifest))}


# --- models -------------------------------------------------------------------------------------


@api.get("/models")
@requires("read")
def list_models():
    query = _load(ListQuerySchema(), request.args, "query")
    access, caller = get_access(), identity()
    catalog = current_app.extensions.get("catalog")
    if catalog is not None:
        # The catalog's index, brought up to date with every hub's writes first (one small
        # listing): a client reads its own writes, whichever worker or replica answers.
        catalog.index.sync_changes()
        models = [{**e, "aliases": sorted(e["aliases"]),
                   "updated": datetime.fromisoformat(e["updated"])}
                  for e in catalog.index.search(
                      query["q"], visible=lambda ns: access.can_read(caller, ns))]
    else:
        models = [m for m in get_registry().list_models(query["q"])
                  if access.can_read(caller, namespace_of(m["name"]))]
    page, per_page = query["page"], query["per_page"]
    chosen = models[(page - 1) * per_page: page * per_page]
    return ModelListSchema().dump(
        {"models": chosen, "page": page, "per_page": per_page, "total": len(models)})


@api.get("/models/<model:name>")
@requires("read")
def model_detail(name: str):
    registry = get_registry()
    manifests = [registry.manifest(name, v)
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


@api.get("/models/<model:name>/versions")
@requires("read")
def list_versions(name: str):
    registry = get_registry()
    versions = registry.versions(check_name(name))
    if not versions:
        registry.resolve(name)  # raises ModelNotFound
    return VersionListSchema().dump(
        {"name": name, "versions": [_version_summary(registry.manifest(name, v))
                                    for v in versions]})


@api.post("/models/<model:name>/versions")
@requires("write")
@audited("publish")
def publish(name: str):
    """Publish the tar(.gz) in the body; metadata as JSON in the Modelhub-Metadata header."""
    check_name(name)
    content_type = (request.mimetype or "").lower()
    if content_type not in ARCHIVE_TYPES:
        raise UnsupportedMediaType(
            f"send the SavedModel as a tar or tar.gz body (Content-Type application/gzip), "
            f"not {content_type or 'no content type'}")
    raw_metadata = request.headers.get(METADATA_HEADER)
    if raw_metadata:
        # HTTP hands header bytes over as latin-1; this header's bytes are UTF-8 (JSON's
        # encoding), so a model card in any script arrives as it was written.
        try:
            raw_metadata = raw_metadata.encode("latin-1").decode("utf-8")
        except UnicodeError:
            raise InvalidArgument(f"the {METADATA_HEADER} header must be UTF-8 JSON") from None
    try:
        metadata = json.loads(raw_metadata) if raw_metadata else {}
    except json.JSONDecodeError as e:
        raise InvalidArgument(f"the {METADATA_HEADER} header is not valid JSON: {e}") from e
    if not isinstance(metadata, dict):
        raise InvalidArgument(f"the {METADATA_HEADER} header must hold a JSON object")
    metadata = _load(PublishMetadataSchema(), metadata, "publish metadata")
    allow_ops = metadata.pop("allow_ops")
    if allow_ops:  # only an admin may publish what the safety scan refuses: a safety override
        access = get_access()
        access.check_model(identity(), "admin", name)
        g.audit_detail = f"safety override: allows {', '.join(allow_ops)}"
        metadata["allow"] = AllowOps(tuple(allow_ops), identity().label,
                                     lambda record: sign_allowance(access.tokens.secret, record))
    # Werkzeug enforces this while the body streams in: a declared Content-Length over it is
    # refused before any byte is read, and a chunked body is cut off as soon as it passes it.
    settings = get_settings()
    request.max_content_length = settings.max_upload_bytes
    manifest = get_registry().publish_archive(
        request.stream, name, max_bytes=settings.max_extracted_bytes, **metadata)
    g.audit_version = manifest["version"]
    response = jsonify(dump_manifest(manifest))
    response.status_code = 201
    response.headers["Location"] = url_for(".version_manifest", name=name,
                                           version=manifest["version"])
    return response


@api.get("/models/<model:name>/versions/<version>")
@requires("read")
def version_manifest(name: str, version: str):
    """`version` is a number, `latest`, or an alias; with the version's artifacts."""
    registry = get_registry()
    manifest = registry.get(reference_from_url(name, version))
    return VersionSchema().dump({**manifest, "safety": registry.safety(manifest),
                                 "artifacts": registry.artifacts(manifest["name"],
                                                                 manifest["version"])})


@api.delete("/models/<model:name>/versions/<version>")
@requires("admin")
@audited("delete")
def delete_version(name: str, version: str):
    get_registry().delete_version(check_name(name), check_version(version))
    return Response(status=204)


@api.post("/models/<model:name>/versions/<version>/scan")
@requires("write")
@audited("scan")
def scan_version(name: str, version: str):
    """Scan the version's graph afresh; record the verdict of a version that has none."""
    return ScanResultSchema().dump(get_registry().scan(reference_from_url(name, version)))


@api.get("/models/<model:name>/versions/<version>/archive")
@requires("read")
def version_archive(name: str, version: str):
    manifest, chunks = get_registry().archive(reference_from_url(name, version))
    return archive_response(manifest, chunks)


@api.get("/models/<model:name>/versions/<version>/files/<path:path>")
@requires("read")
def version_file(name: str, version: str, path: str):
    """One file; its sha256 is its ETag. Supports Range, If-Range and If-None-Match."""
    registry = get_registry()
    manifest = registry.get(reference_from_url(name, version))
    entry = registry.file_entry(manifest, path)
    return _blob_response(entry, is_version_text(version), path,
                          lambda start=0, end=None: registry.file_chunks(manifest, entry, start, end))


def _blob_response(entry: dict, by_number: bool, what: str, chunks) -> Response:
    """Stored bytes (`entry`: size and sha256; `chunks(start, end)` streams them) with their
    sha256 as ETag, Range, If-Range and If-None-Match."""
    etag, size = entry["sha256"], entry["size"]
    # By number, these bytes never change; by alias or `latest` they may, after a move. Private
    # hubs must not let shared caches keep what a token was needed for.
    scope = "public" if get_access().anonymous_read else "private"
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
        return error_response(416, "range_not_satisfiable", f"{what} has {size} bytes",
                              {**headers, "Content-Range": f"bytes */{size}"})
    start, stop = bounds
    return Response(chunks(start, stop), status=206,
                    content_type="application/octet-stream",
                    headers={**headers, "Content-Length": str(stop - start),
                             "Content-Range": byte_range.to_content_range_header(size)})


# --- artifacts ----------------------------------------------------------------------------------


@api.get("/models/<model:name>/versions/<version>/artifacts")
@requires("read")
def list_artifacts(name: str, version: str):
    registry = get_registry()
    manifest = registry.get(reference_from_url(name, version))
    artifacts = registry.artifacts(manifest["name"], manifest["version"])
    return ArtifactListSchema().dump({"name": manifest["name"], "version": manifest["version"],
                                      "artifacts": artifacts})


@api.post("/models/<model:name>/versions/<version>/artifacts")
@requires("write")
@audited("convert")
def create_artifact(name: str, version: str):
    """Convert the version (JSON body: ConvertRequestSchema) and store the result as an
    artifact. Runs in the request (seconds for small models); conversions in one process run
    one at a time."""
    from ..conversion import artifact_name, convert

    body = _json_body(ConvertRequestSchema(), "conversion request")
    registry = get_registry()
    # Pinned to a number first: an alias moved meanwhile cannot change what gets converted.
    _, number = registry.resolve(reference_from_url(name, version))
    g.audit_version, g.audit_detail = number, f"to tflite, quantize {body['quantize']}"
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


@api.get("/models/<model:name>/versions/<version>/artifacts/<artifact>")
@requires("read")
def artifact_file(name: str, version: str, artifact: str):
    """An artifact's file; like files: sha256 as ETag, Range, If-Range and If-None-Match."""
    registry = get_registry()
    manifest = registry.get(reference_from_url(name, version))
    record = registry.artifact(manifest["name"], manifest["version"], artifact)
    response = _blob_response(
        record, is_version_text(version), f"artifact {artifact}",
        lambda start=0, end=None: registry.artifact_chunks(manifest, artifact, record, start, end))
    suffix = PurePosixPath(record["path"]).suffix
    response.headers["Content-Disposition"] = (
        f'attachment; filename="{manifest["name"].replace("/", "-")}-{manifest["version"]}-'
        f'{artifact}{suffix}"')
    return response


# --- aliases and tokens -------------------------------------------------------------------------


@api.put("/models/<model:name>/aliases/<alias>")
@requires("write")
@audited("alias set")
def put_alias(name: str, alias: str):
    body = _json_body(AliasRequestSchema(), "alias request")
    g.audit_version, g.audit_detail = body["version"], f"alias {alias}"
    record = get_registry().set_alias(check_name(name), check_alias(alias), body["version"],
                                      expected_version=body["expected_version"])
    return AliasSchema().dump({"name": name, "alias": alias, **record})


@api.delete("/models/<model:name>/aliases/<alias>")
@requires("write")  # like moving it: undone by setting it again (deleting versions is admin's)
@audited("alias remove")
def delete_alias(name: str, alias: str):
    g.audit_detail = f"alias {alias}"
    get_registry().remove_alias(check_name(name), alias)
    return Response(status=204)


@api.post("/tokens")
@requires("read")  # who may make which token is checked below, grant by grant
@audited("token create")
def create_token():
    body = _json_body(TokenRequestSchema(), "token request")
    grants = ([Grant(EVERY_NAMESPACE, body["scope"])] if "scope" in body
              else [Grant.parse(text) for text in body["grants"]])
    access = get_access()
    for grant in grants:  # admin where the token may act: on `*` for a `*` grant
        access.check(identity(), "admin", grant.namespace)
    expires = (datetime.now(timezone.utc) + timedelta(days=body["expires_in_days"])
               if body["expires_in_days"] else None)
    token, record = access.tokens.create_record(
        description=body["description"], identity=body["identity"], grants=grants,
        expires=expires)
    g.audit_detail = f"token {record['id']} for {record['identity']}: " + \
        ", ".join(record["grants"])
    return TokenSchema().dump({"token": token, "id": record["id"], "scope": body.get("scope"),
                               "grants": record["grants"]}), 201


@api.get("/tokens")
@requires("admin")
def list_tokens():
    return TokenListSchema().dump({"tokens": get_access().tokens.list()})


@api.delete("/tokens/<token_id>")
@requires("admin")
@audited("token revoke")
def revoke_token(token_id: str):
    g.audit_detail = f"token {token_id}"
    get_access().tokens.revoke(token_id)
    return Response(status=204)


# --- namespaces and the audit log -----------------------------------------------------------


@api.get("/namespaces")
@requires("read")
def list_namespaces():
    """The namespaces the caller may administer."""
    caller = identity()
    if caller is None:
        raise Unauthorized("listing namespaces needs a token (it lists those it administers)")
    found = [n for n in get_registry().namespaces() if caller.allows(n["name"], "admin")]
    return NamespaceListSchema().dump({"namespaces": found})


@api.post("/namespaces")
@requires("read")
@audited("namespace create")
def create_namespace():
    body = _json_body(NamespaceRequestSchema(), "namespace request")
    g.audit_namespace = body["name"]
    g.audit_detail = "private" if body["private"] else "public"
    get_access().check(identity(), "admin", body["name"])
    created = get_registry().create_namespace(body["name"], private=body["private"])
    get_access().privacy.forget(body["name"])
    return NamespaceSchema().dump(created), 201


@api.patch("/namespaces/<namespace>")
@requires("read")
@audited("namespace set")
def update_namespace(namespace: str):
    body = _json_body(NamespaceUpdateSchema(), "namespace update")
    g.audit_namespace = namespace
    g.audit_detail = "private" if body["private"] else "public"
    get_access().check(identity(), "admin", namespace)
    updated = get_registry().set_namespace(namespace, private=body["private"])
    get_access().privacy.forget(namespace)
    return NamespaceSchema().dump(updated)


@api.get("/audit")
@requires("read")
def audit_log():
    """The audit records of a namespace (admin on it), or of every one (admin on `*`)."""
    query = _load(AuditQuerySchema(), request.args, "query")
    log = log_name(query["namespace"])
    get_access().check(identity(), "admin", log if log and log != HUB_LOG else EVERY_NAMESPACE)
    audit = get_audit()
    return AuditListSchema().dump({
        "records": audit.records(log, query["since"]),
        "problems": audit.verify(log) if query["verify"] else None})


@api.get("/openapi.json")
def openapi():
    from .openapi import openapi_spec

    return openapi_spec()
