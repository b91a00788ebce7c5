"""The version manifest: what a published version is, file by file.

Written once, create-only, when a version is published; validated again on every read, so a
damaged or hand-edited manifest is an error and never a wrong model.
"""
from __future__ import annotations

import re
from datetime import timezone

from marshmallow import EXCLUDE, Schema, ValidationError, fields, validate, validates

from schemas.errors import InvalidManifest

MANIFEST_SCHEMA_VERSION = 1

# Every pattern is anchored with \A and \Z: `$` would also match before a trailing newline.

#: Words that are parts of URLs and store keys next to model names: never a name.
RESERVED_WORDS = ("versions", "aliases", "deleted", "artifacts", "scans", "labels", "metadata",
                  "ready", "infer", "files", "archive", "namespaces")
#: The namespace of names without one (`mnist` is `default`'s); never written in a name.
DEFAULT_NAMESPACE = "default"
_RESERVED = "|".join(RESERVED_WORDS)
#: A namespace: a team or a person. Same characters as names, at most 64.
NAMESPACE_REGEX = (rf"(?!(?:{_RESERVED}|{DEFAULT_NAMESPACE})(?:/|\Z))"
                   r"[a-z0-9][a-z0-9._-]{0,63}")
#: A model name: `NAME` (the default namespace) or `NAMESPACE/NAME`; lower-case letters, digits,
#: `.`, `_`, `-`, starting with a letter or digit. A namespaced name is not all digits
#: (`ns/3` is version 3 of model ns).
NAME_REGEX = (rf"(?:{NAMESPACE_REGEX}/(?![0-9]+(?:/|\Z)))?"
              rf"(?!(?:{_RESERVED})(?:/|\Z))[a-z0-9][a-z0-9._-]{{0,127}}")
NAME_PATTERN = re.compile(rf"\A{NAME_REGEX}\Z")
NAMESPACE_PATTERN = re.compile(rf"\A{NAMESPACE_REGEX}\Z")


def name_folder(name: str) -> str:
    """A model's folder in local caches: `mnist`, or `@nlp/bert` for a namespaced name (`@` is
    in no name, so `@nlp/` never meets a folder of model `nlp` or its aliases)."""
    return f"@{name}" if "/" in name else name


def namespace_of(name: str) -> str:
    """`nlp/bert` -> `nlp`; `mnist` -> `default`."""
    return name.split("/", 1)[0] if "/" in name else DEFAULT_NAMESPACE
#: Aliases (TF Serving version labels) start with a letter, so they never look like versions.
ALIAS_PATTERN = re.compile(r"\A[a-z][a-z0-9._-]{0,63}\Z")
#: Version numbers: plain ASCII digits (str.isdigit() also takes "²" and "٣").
VERSION_PATTERN = re.compile(r"\A[1-9][0-9]{0,17}\Z")
#: The largest version number VERSION_PATTERN allows (18 digits).
MAX_VERSION = 10**18 - 1
SHA256_PATTERN = re.compile(r"\A[0-9a-f]{64}\Z")
#: Artifact names (`tflite-int8`, `tflite-none-classify`): they become store keys and URL parts.
ARTIFACT_PATTERN = re.compile(r"\A[A-Za-z0-9][A-Za-z0-9._-]{0,199}\Z")
#: Tags are free text but bounded, so a manifest stays small.
TAG_KEY_PATTERN = re.compile(r"\A[A-Za-z0-9][A-Za-z0-9._:/-]{0,63}\Z")


#: What file systems take: a name of at most 255 bytes, a path of at most 4096.
MAX_NAME_BYTES, MAX_PATH_BYTES = 255, 4096


def is_safe_relative_path(path: str) -> bool:
    """A `/`-separated relative path that cannot leave the folder it is resolved in, and that
    can be stored and served back: valid UTF-8 (no undecodable bytes), no control characters (a
    newline would break headers and listings), and names short enough for any file system."""
    if not isinstance(path, str) or not path or path.startswith("/") or "\\" in path:
        return False
    try:
        encoded = path.encode("utf-8")  # surrogates (bytes that were not UTF-8) fail here
    except UnicodeEncodeError:
        return False
    if len(encoded) > MAX_PATH_BYTES or any(ord(c) < 32 or ord(c) == 127 for c in path):
        return False
    return all(part not in ("", ".", "..") and len(part.encode()) <= MAX_NAME_BYTES
               for part in path.split("/"))


class _Strict(Schema):
    class Meta:
        # Manifests written by a newer modelhub may carry fields this one does not know.
        unknown = EXCLUDE


class FileEntrySchema(_Strict):
    path = fields.Str(required=True)
    size = fields.Int(required=True, validate=validate.Range(min=0))
    sha256 = fields.Str(required=True, validate=validate.Regexp(SHA256_PATTERN))

    @validates("path")
    def _safe_path(self, value: str, **_) -> None:
        if not is_safe_relative_path(value):
            raise ValidationError(f"unsafe file path {value!r}")


class TensorSpecSchema(_Strict):
    name = fields.Str(required=True)
    dtype = fields.Str(required=True)
    #: -1 for an unknown dimension; None when even the rank is unknown.
    shape = fields.List(fields.Int(), allow_none=True, load_default=None)


class SignatureSchema(_Strict):
    method_name = fields.Str(load_default="")
    inputs = fields.Dict(keys=fields.Str(), values=fields.Nested(TensorSpecSchema), required=True)
    outputs = fields.Dict(keys=fields.Str(), values=fields.Nested(TensorSpecSchema), required=True)


class ArtifactSchema(FileEntrySchema):
    """A file derived from the version and stored beside it (e.g. `model.tflite`)."""

    kind = fields.Str(load_default="")
    metadata = fields.Dict(keys=fields.Str(), load_default=dict)


class DescriptionSchema(Schema):
    """What a publisher says about a version: the same rules in a manifest and in a publish
    request."""

    description = fields.Str(load_default="", validate=validate.Length(max=10_000))
    tags = fields.Dict(keys=fields.Str(validate=validate.Regexp(TAG_KEY_PATTERN)),
                       values=fields.Str(validate=validate.Length(max=256)),
                       load_default=dict)
    license = fields.Str(allow_none=True, load_default=None, validate=validate.Length(max=256))
    model_card = fields.Str(allow_none=True, load_default=None,
                            validate=validate.Length(max=1_000_000))


class FindingSchema(_Strict):
    """Something the graph safety scan refused: the op, where it sits, and what runs it."""

    op = fields.Str(required=True)
    node = fields.Str(required=True)
    function = fields.Str(allow_none=True, load_default=None)
    reached_from = fields.List(fields.Str(), load_default=list)
    reason = fields.Str(required=True)


class AllowanceSchema(_Strict):
    """Ops an admin allowed for one graph (the sha256 of its saved_model.pb), signed with the
    server's secret so that nobody who can only write into the store can grant one."""

    ops = fields.List(fields.Str(), required=True, validate=validate.Length(min=1))
    by = fields.Str(required=True)
    at = fields.Str(required=True)
    graph_sha256 = fields.Str(required=True, validate=validate.Regexp(SHA256_PATTERN))
    signature = fields.Str(required=True)


class SafetySchema(_Strict):
    """The graph safety scan's verdict on a version (hub/savedmodel/scan.py)."""

    safe = fields.Bool(required=True)
    scanner = fields.Int(required=True)
    allowlist = fields.Str(required=True)
    findings = fields.List(fields.Nested(FindingSchema), load_default=list)
    op_types = fields.Int(load_default=0)
    nodes = fields.Int(load_default=0)
    functions = fields.Int(load_default=0)
    scanned = fields.Str(allow_none=True, load_default=None)
    allowance = fields.Nested(AllowanceSchema, allow_none=True, load_default=None)


class ManifestSchema(DescriptionSchema, _Strict):
    schema_version = fields.Int(required=True,
                                validate=validate.Equal(MANIFEST_SCHEMA_VERSION))
    name = fields.Str(required=True, validate=validate.Regexp(NAME_PATTERN))
    version = fields.Int(required=True, validate=validate.Range(min=1))
    created = fields.AwareDateTime(required=True, format="iso", default_timezone=timezone.utc)
    files = fields.List(fields.Nested(FileEntrySchema), required=True,
                        validate=validate.Length(min=1))
    #: folders that hold no file (kept, so that a pulled tree equals the published one)
    folders = fields.List(fields.Str(validate=lambda p: is_safe_relative_path(p)),
                          load_default=list)
    total_size = fields.Int(required=True, validate=validate.Range(min=0))
    signatures = fields.Dict(keys=fields.Str(), values=fields.Nested(SignatureSchema),
                             load_default=dict)
    tensorflow_version = fields.Str(allow_none=True, load_default=None)
    #: None for versions published before the scan existed (see their scan records)
    safety = fields.Nested(SafetySchema, allow_none=True, load_default=None)
    publish_id = fields.Str(allow_none=True, load_default=None)

    @validates("files")
    def _unique_paths(self, files: list[dict], **_) -> None:
        paths = [f["path"] for f in files]
        if len(set(paths)) != len(paths):
            raise ValidationError("file paths must be unique")
        if not {"saved_model.pb", "saved_model.pbtxt"} & set(paths):
            raise ValidationError("a version must contain saved_model.pb or saved_model.pbtxt")


_MANIFEST = ManifestSchema()
_ARTIFACT = ArtifactSchema()
_SAFETY = SafetySchema()


def _checked(schema: Schema, data: object, where: str) -> dict:
    try:
        return schema.load(data)
    except ValidationError as e:
        raise InvalidManifest(f"{where} is invalid: {e.messages}") from e


def load_artifact(data: object, where: str = "artifact record") -> dict:
    """Validate an artifact record read from anywhere (store, HTTP)."""
    return _checked(_ARTIFACT, data, where)


def dump_artifact(record: dict) -> dict:
    """Validate an artifact record about to be written and return its JSON-ready form."""
    return _ARTIFACT.dump(load_artifact(_ARTIFACT.dump(record), "new artifact record"))


def load_manifest(data: object, where: str = "manifest") -> dict:
    """Validate a manifest read from anywhere (store, HTTP) and return it as typed values."""
    return _checked(_MANIFEST, data, where)


def dump_manifest(manifest: dict) -> dict:
    """Validate a manifest about to be written and return its JSON-ready form."""
    return _MANIFEST.dump(load_manifest(_MANIFEST.dump(manifest), "new manifest"))


def load_safety(data: object, where: str = "scan record") -> dict:
    return _checked(_SAFETY, data, where)


def dump_safety(record: dict) -> dict:
    return _SAFETY.dump(load_safety(_SAFETY.dump(record), "new scan record"))
