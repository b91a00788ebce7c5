"""OpenAPI 3 description of the hub API, generated from the marshmallow schemas (apispec)."""
from __future__ import annotations

import functools
from importlib.metadata import PackageNotFoundError, version

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin

from schemas.api import (
    AliasRequestSchema,
    AliasSchema,
    ArtifactListSchema,
    AuditListSchema,
    ConvertRequestSchema,
    CreatedArtifactSchema,
    ErrorSchema,
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
from schemas.manifest import (
    ALIAS_PATTERN,
    MAX_VERSION,
    NAME_PATTERN,
    NAMESPACE_PATTERN,
    ManifestSchema,
)

def _ecma(pattern) -> str:
    """A Python pattern anchored with \\A..\\Z as the ECMA-262 regex OpenAPI uses (whose `$`,
    without the multiline flag, is the end of the input, as Python's \\Z is)."""
    text = getattr(pattern, "pattern", pattern)
    return "^" + text.removeprefix("\\A").replace("\\Z", "$")


def _ecma_patterns(node):
    """Every `pattern` of the document (the schemas' own, \\A..\\Z) in ECMA-262's anchors."""
    if isinstance(node, dict):
        return {k: (_ecma(v) if k == "pattern" and isinstance(v, str) and v.startswith("\\A")
                    else _ecma_patterns(v)) for k, v in node.items()}
    if isinstance(node, list):
        return [_ecma_patterns(v) for v in node]
    return node


NAME = {"name": "name", "in": "path", "required": True, "description": "model name",
        "schema": {"type": "string", "pattern": _ecma(NAME_PATTERN)}}
VERSION = {"name": "version", "in": "path", "required": True,
           "schema": {"type": "integer", "minimum": 1, "maximum": MAX_VERSION}}
ALIAS = {"name": "alias", "in": "path", "required": True,
         "schema": {"type": "string", "pattern": "^(?!latest$)" + _ecma(ALIAS_PATTERN)[1:]}}
#: a version number, an alias, or "latest"
SELECTOR = {"name": "version", "in": "path", "required": True,
            "description": "a version number, an alias, or latest",
            "schema": {"type": "string", "pattern": f"^(?:[1-9][0-9]{{0,17}}|"
                                                    f"{_ecma(ALIAS_PATTERN)[1:-1]})$"}}
ARTIFACT = {"name": "artifact", "in": "path", "required": True, "schema": {"type": "string"},
            "description": "artifact name: tflite-<quantize>[-<signature>], e.g. tflite-int8"}
PATH = {"name": "path", "in": "path", "required": True, "schema": {"type": "string"},
        "description": "file path inside the SavedModel, e.g. variables/variables.index"}

TOKEN_ID = {"name": "token_id", "in": "path", "required": True,
            "schema": {"type": "string", "pattern": "^[0-9a-f]{16}$"}}
NAMESPACE = {"name": "namespace", "in": "path", "required": True,
             "schema": {"type": "string", "pattern": _ecma(NAMESPACE_PATTERN)}}

BINARY = {"schema": {"type": "string", "format": "binary"}}


def _json(schema: str) -> dict:
    return {"application/json": {"schema": schema}}


def _ok(description: str, schema: str | None = None, status: str = "200", **extra) -> dict:
    response = {"description": description, **extra}
    if schema:
        response["content"] = _json(schema)
    return {status: response}


def _errors(*statuses: int) -> dict:
    return {str(s): {"description": "error", "content": _json("Error")} for s in statuses}


def _operations() -> dict[str, dict]:
    write = [{"bearer": []}]
    return {
        "/api/v1/models": {"get": {
            "summary": "List and search models (paginated)",
            "parameters": [
                {"name": "q", "in": "query", "schema": {"type": "string"},
                 "description": "matches name, description and tags"},
                {"name": "page", "in": "query", "schema": {"type": "integer", "minimum": 1}},
                {"name": "per_page", "in": "query",
                 "schema": {"type": "integer", "minimum": 1, "maximum": 100}}],
            "responses": {**_ok("models", "ModelList"), **_errors(400, 401)}}},
        "/api/v1/models/{name}": {"get": {
            "summary": "A model: its versions, aliases and card",
            "parameters": [NAME],
            "responses": {**_ok("the model", "ModelDetail"), **_errors(400, 401, 404)}}},
        "/api/v1/models/{name}/versions": {
            "get": {"summary": "The versions of a model", "parameters": [NAME],
                    "responses": {**_ok("versions", "VersionList"), **_errors(401, 404)}},
            "post": {
                "summary": "Publish a new version from a streamed tar or tar.gz of a SavedModel",
                "security": write,
                "parameters": [NAME, {
                    "name": "Modelhub-Metadata", "in": "header", "required": False,
                    "description": "The version's metadata as JSON, in UTF-8 (or ASCII with "
                                   "\\u escapes)",
                    "content": _json("PublishMetadata")}],
                "requestBody": {"required": True, "content": {
                    "application/gzip": BINARY, "application/x-tar": BINARY}},
                "responses": {**_ok("the new version's manifest", "Manifest", "201"),
                              **_errors(400, 401, 403, 413, 415, 422)}}},
        "/api/v1/models/{name}/versions/{version}": {
            "get": {"summary": "A version's manifest and artifacts", "parameters": [NAME, SELECTOR],
                    "responses": {**_ok("the version", "Version"), **_errors(400, 401, 404)}},
            "delete": {"summary": "Delete a version (admin); its number is never reused",
                       "security": write, "parameters": [NAME, VERSION],
                       "responses": {"204": {"description": "deleted"},
                                     **_errors(401, 403, 404, 409)}}},
        "/api/v1/models/{name}/versions/{version}/scan": {"post": {
            "summary": "Scan the version's graph for ops that could reach outside the model, and "
                       "record the verdict of a version published before the scan existed",
            "security": write, "parameters": [NAME, SELECTOR],
            "responses": {**_ok("the verdict", "ScanResult"), **_errors(400, 401, 403, 404)}}},
        "/api/v1/models/{name}/versions/{version}/archive": {"get": {
            "summary": "The whole version as a tar.gz whose root is the SavedModel root",
            "parameters": [NAME, SELECTOR],
            "responses": {"200": {"description": "tar.gz", "content": {"application/gzip": BINARY}},
                          **_errors(401, 404)}}},
        "/api/v1/models/{name}/versions/{version}/files/{path}": {"get": {
            "summary": "One file; ETag is its sha256; supports Range and If-None-Match",
            "parameters": [NAME, SELECTOR, PATH],
            "responses": {
                "200": {"description": "the file", "content": {"application/octet-stream": BINARY}},
                "206": {"description": "a byte range", "content": {"application/octet-stream": BINARY}},
                "304": {"description": "not modified"},
                **_errors(401, 404, 416)}}},
        "/api/v1/models/{name}/versions/{version}/artifacts": {
            "get": {"summary": "The version's artifacts (e.g. TFLite conversions) and their records",
                    "parameters": [NAME, SELECTOR],
                    "responses": {**_ok("artifacts", "ArtifactList"), **_errors(400, 401, 404)}},
            "post": {
                "summary": "Convert the version to TFLite, check parity with the SavedModel, and "
                           "store the result as the artifact tflite-<quantize>[-<signature>] "
                           "(create-only; 409 if it exists, 422 if conversion or parity fails)",
                "security": write, "parameters": [NAME, SELECTOR],
                "requestBody": {"required": True, "content": _json("ConvertRequest")},
                "responses": {**_ok("the new artifact's record", "CreatedArtifact", "201"),
                              **_errors(400, 401, 403, 404, 409, 413, 422)}}},
        "/api/v1/models/{name}/versions/{version}/artifacts/{artifact}": {"get": {
            "summary": "An artifact's file (e.g. model.tflite); ETag is its sha256; supports "
                       "Range and If-None-Match",
            "parameters": [NAME, SELECTOR, ARTIFACT],
            "responses": {
                "200": {"description": "the file", "content": {"application/octet-stream": BINARY}},
                "206": {"description": "a byte range", "content": {"application/octet-stream": BINARY}},
                "304": {"description": "not modified"},
                **_errors(401, 404, 416)}}},
        "/api/v1/models/{name}/aliases/{alias}": {
            "put": {"summary": "Point an alias at a version (compare-and-swap with expected_version)",
                    "security": write, "parameters": [NAME, ALIAS],
                    "requestBody": {"required": True, "content": _json("AliasRequest")},
                    "responses": {**_ok("the alias", "Alias"), **_errors(400, 401, 403, 404, 412)}},
            "delete": {"summary": "Remove an alias", "security": write,
                       "parameters": [NAME, ALIAS],
                       "responses": {"204": {"description": "removed"},
                                     **_errors(401, 403, 404)}}},
        "/api/v1/tokens": {
            "post": {"summary": "Create a token: a scope on every namespace, or grants "
                                "(SCOPE:NAMESPACE); needs admin where the token may act",
                     "security": write,
                     "requestBody": {"required": True, "content": _json("TokenRequest")},
                     "responses": {**_ok("the new token, shown once", "Token", "201"),
                                   **_errors(400, 401, 403, 404)}},
            "get": {"summary": "Every token's record (never the token): grants, created, last "
                               "used, expiry (admin on every namespace)", "security": write,
                    "responses": {**_ok("tokens", "TokenList"), **_errors(401, 403)}}},
        "/api/v1/tokens/{token_id}": {"delete": {
            "summary": "Revoke a token: every hub and serving process refuses it within a "
                       "second (admin on every namespace)", "security": write,
            "parameters": [TOKEN_ID],
            "responses": {"204": {"description": "revoked"}, **_errors(400, 401, 403, 404)}}},
        "/api/v1/namespaces": {
            "get": {"summary": "The namespaces the caller administers", "security": write,
                    "responses": {**_ok("namespaces", "NamespaceList"), **_errors(401)}},
            "post": {"summary": "Create a namespace, public or private (admin on it or on *)",
                     "security": write,
                     "requestBody": {"required": True, "content": _json("NamespaceRequest")},
                     "responses": {**_ok("the namespace", "Namespace", "201"),
                                   **_errors(400, 401, 403, 404, 409)}}},
        "/api/v1/namespaces/{namespace}": {"patch": {
            "summary": "Make a namespace private or public (admin on it or on *)",
            "security": write, "parameters": [NAMESPACE],
            "requestBody": {"required": True, "content": _json("NamespaceUpdate")},
            "responses": {**_ok("the namespace", "Namespace"),
                          **_errors(400, 401, 403, 404, 409)}}},
        "/api/v1/audit": {"get": {
            "summary": "The audit log: every write, who made it and how it ended (admin on the "
                       "namespace, or on * for every log)", "security": write,
            "parameters": [
                {"name": "namespace", "in": "query", "schema": {"type": "string"}},
                {"name": "since", "in": "query", "schema": {"type": "string",
                                                            "format": "date-time"}},
                {"name": "verify", "in": "query", "schema": {"type": "boolean"}}],
            "responses": {**_ok("records", "AuditList"), **_errors(400, 401, 403, 404)}}},
        "/models/{name}/{version}": {"get": {
            "summary": "tensorflow_hub download: ?tf-hub-format=compressed gives a tar.gz",
            "parameters": [NAME, SELECTOR,
                           {"name": "tf-hub-format", "in": "query",
                            "schema": {"type": "string", "enum": ["compressed"]}}],
            "responses": {"200": {"description": "tar.gz, or the manifest without tf-hub-format",
                                  "content": {"application/gzip": BINARY}},
                          **_errors(400, 401, 404)}}},
    }


@functools.lru_cache(maxsize=1)
def openapi_spec() -> dict:
    try:
        app_version = version("modelhub")
    except PackageNotFoundError:
        app_version = "0"
    spec = APISpec(title="modelhub hub API", version=app_version, openapi_version="3.0.3",
                   plugins=[MarshmallowPlugin()])
    spec.components.security_scheme("bearer", {"type": "http", "scheme": "bearer"})
    for name, schema in [("Error", ErrorSchema), ("ModelList", ModelListSchema),
                         ("ModelDetail", ModelDetailSchema), ("VersionList", VersionListSchema),
                         ("Manifest", ManifestSchema), ("Version", VersionSchema),
                         ("ScanResult", ScanResultSchema), ("PublishMetadata", PublishMetadataSchema),
                         ("AliasRequest", AliasRequestSchema), ("Alias", AliasSchema),
                         ("ConvertRequest", ConvertRequestSchema),
                         ("ArtifactList", ArtifactListSchema),
                         ("CreatedArtifact", CreatedArtifactSchema),
                         ("TokenRequest", TokenRequestSchema), ("Token", TokenSchema),
                         ("TokenList", TokenListSchema), ("Namespace", NamespaceSchema),
                         ("NamespaceList", NamespaceListSchema),
                         ("NamespaceRequest", NamespaceRequestSchema),
                         ("NamespaceUpdate", NamespaceUpdateSchema),
                         ("AuditList", AuditListSchema)]:
        spec.components.schema(name, schema=schema)
    for path, operations in _operations().items():
        spec.path(path=path, operations=operations)
    document = _ecma_patterns(spec.to_dict())
    # What the schema checks across fields, which apispec cannot read from it: a token request
    # gives a scope on every namespace, or grants, never both.
    document["components"]["schemas"]["TokenRequest"]["oneOf"] = [
        {"required": ["scope"]}, {"required": ["grants"]}]
    return document
