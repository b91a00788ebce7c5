"""Request and response bodies of the hub HTTP API (`/api/v1`). Also the source of its OpenAPI."""
from __future__ import annotations

import base64
import binascii
import re

from marshmallow import (
    EXCLUDE,
    RAISE,
    Schema,
    ValidationError,
    fields,
    validate,
    validates_schema,
)

from schemas.manifest import (
    ALIAS_PATTERN,
    MAX_VERSION,
    NAMESPACE_PATTERN,
    ArtifactSchema,
    DescriptionSchema,
    ManifestSchema,
    SafetySchema,
)

SCOPES = ("read", "write", "admin")
#: The graph safety scan's verdict on a version, in one word: safe; unsafe ops an admin allowed;
#: unsafe (never stored by a publish, but older versions can be); never scanned.
SAFETY_STATES = ("safe", "allowed", "unsafe", "unscanned")
#: TensorFlow op type names.
OP_PATTERN = re.compile(r"\A[A-Za-z_][A-Za-z0-9_]{0,127}\Z")
#: TFLite conversion modes: none (float32), dynamic (int8 weights, float activations),
#: float16 (float16 weights), int8 (full integer, calibrated on samples; float32 inputs/outputs).
QUANTIZE_MODES = ("none", "dynamic", "float16", "int8")


#: Standard base64, padded (what OpenAPI's format byte means).
BASE64_PATTERN = r"^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$"


class Base64Bytes(fields.Field):
    """Bytes sent as a standard base64 string."""

    def _serialize(self, value, attr, obj, **kwargs):
        return None if value is None else base64.b64encode(value).decode("ascii")

    def _deserialize(self, value, attr, data, **kwargs) -> bytes:
        if not isinstance(value, str):
            raise ValidationError("must be a base64 string")
        try:
            return base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError) as e:
            raise ValidationError(f"is not valid base64: {e}") from e


class _Request(Schema):
    class Meta:
        unknown = RAISE  # a misspelt field is an error, not silently ignored


class PublishMetadataSchema(DescriptionSchema, _Request):
    """Sent as JSON in the `Modelhub-Metadata` header of a publish request."""

    aliases = fields.List(fields.Str(validate=validate.Regexp(ALIAS_PATTERN)), load_default=list,
                          validate=validate.Length(max=16))
    allow_ops = fields.List(fields.Str(validate=validate.Regexp(OP_PATTERN)), load_default=list,
                            validate=validate.Length(max=64), metadata={
                                "description": "ops the safety scan refuses that this publish "
                                               "may use anyway (admin tokens only)"})


class AliasRequestSchema(_Request):
    version = fields.Int(required=True, strict=True,
                         validate=validate.Range(min=1, max=MAX_VERSION))
    #: Move only if the alias points here now (compare-and-swap); omitted: move unconditionally.
    expected_version = fields.Int(allow_none=True, load_default=None, strict=True,
                                  validate=validate.Range(min=1, max=MAX_VERSION))


#: `read:nlp`, `write:*`, `admin:default`.
GRANT_PATTERN = re.compile(r"\A(?:read|write|admin):(?:\*|[a-z0-9][a-z0-9._-]{0,63})\Z")


class TokenRequestSchema(_Request):
    """A new token: a `scope` on every namespace (as tokens always had), or `grants`."""

    scope = fields.Str(validate=validate.OneOf(SCOPES))
    grants = fields.List(fields.Str(validate=validate.Regexp(GRANT_PATTERN)),
                         validate=validate.Length(min=1, max=64),
                         metadata={"description": "SCOPE:NAMESPACE (or SCOPE:*), e.g. write:nlp"})
    identity = fields.Str(load_default="", validate=validate.Length(max=128))
    description = fields.Str(load_default="", validate=validate.Length(max=256))
    expires_in_days = fields.Int(load_default=None, allow_none=True,
                                 validate=validate.Range(min=1, max=36500))

    @validates_schema
    def _scope_or_grants(self, data: dict, **_) -> None:
        if (data.get("scope") is None) == (data.get("grants") is None):
            raise ValidationError("give a scope or grants")


class NamespaceRequestSchema(_Request):
    name = fields.Str(required=True, validate=validate.Regexp(NAMESPACE_PATTERN))
    private = fields.Bool(load_default=False)


class NamespaceUpdateSchema(_Request):
    private = fields.Bool(required=True)


class AuditQuerySchema(Schema):
    class Meta:
        unknown = EXCLUDE

    namespace = fields.Str(load_default=None)
    since = fields.AwareDateTime(load_default=None)
    verify = fields.Bool(load_default=False)


class ParityThresholdsSchema(_Request):
    """Limits on how far the converted model may stray from the SavedModel; an omitted field
    keeps the quantization mode's default."""

    max_abs_error = fields.Float(allow_none=True, validate=validate.Range(min=0),
                                 metadata={"description": "largest |tflite - savedmodel|"})
    max_rel_error = fields.Float(allow_none=True, validate=validate.Range(min=0), metadata={
        "description": "largest |tflite - savedmodel| / largest |savedmodel|, per output"})
    min_top1_agreement = fields.Float(allow_none=True, validate=validate.Range(min=0, max=1),
                                      metadata={"description": "classifier outputs: share of "
                                                "rows whose arg-max agrees"})


class ConvertRequestSchema(_Request):
    """`POST .../versions/{version}/artifacts`: convert the version and store the result."""

    to = fields.Str(load_default="tflite", validate=validate.OneOf(["tflite"]))
    quantize = fields.Str(load_default="dynamic", validate=validate.OneOf(QUANTIZE_MODES))
    signature = fields.Str(allow_none=True, load_default=None, validate=validate.Length(min=1, max=200))
    allow_select_tf_ops = fields.Bool(load_default=False)
    thresholds = fields.Nested(ParityThresholdsSchema, load_default=dict)
    samples = Base64Bytes(allow_none=True, load_default=None, metadata={
        "type": "string", "format": "byte", "pattern": BASE64_PATTERN,
        "description": "an .npz file, base64: one array per input name, first axis = samples; "
                       "omitted: samples are generated from the signature"})


class ListQuerySchema(Schema):
    class Meta:
        unknown = EXCLUDE  # cache-busting and tracking parameters are not errors

    q = fields.Str(load_default=None, validate=validate.Length(max=256))
    page = fields.Int(load_default=1, validate=validate.Range(min=1))
    per_page = fields.Int(load_default=20, validate=validate.Range(min=1, max=100))


# --- responses ----------------------------------------------------------------------------------


class ErrorDetailSchema(Schema):
    code = fields.Str(required=True, metadata={"description": "machine-readable error code"})
    message = fields.Str(required=True)


class ErrorSchema(Schema):
    error = fields.Nested(ErrorDetailSchema, required=True)


class _Response(Schema):
    class Meta:
        unknown = EXCLUDE  # a client reading a newer hub's answer ignores what it does not know


class ModelSummarySchema(_Response):
    name = fields.Str()
    latest = fields.Int()
    versions = fields.List(fields.Int())
    aliases = fields.List(fields.Str())
    description = fields.Str()
    tags = fields.Dict(keys=fields.Str(), values=fields.Str())
    license = fields.Str(allow_none=True)
    updated = fields.AwareDateTime()
    safety = fields.Str(validate=validate.OneOf(SAFETY_STATES),
                        metadata={"description": "the latest version's safety verdict"})


class ModelListSchema(_Response):
    models = fields.List(fields.Nested(ModelSummarySchema))
    page = fields.Int()
    per_page = fields.Int()
    total = fields.Int()


class VersionSummarySchema(Schema):
    version = fields.Int()
    created = fields.AwareDateTime()
    total_size = fields.Int()
    description = fields.Str()
    tensorflow_version = fields.Str(allow_none=True)
    safety = fields.Str(validate=validate.OneOf(SAFETY_STATES))


class VersionListSchema(Schema):
    name = fields.Str()
    versions = fields.List(fields.Nested(VersionSummarySchema))


class ModelDetailSchema(Schema):
    name = fields.Str()
    latest = fields.Int()
    versions = fields.List(fields.Nested(VersionSummarySchema))
    aliases = fields.Dict(keys=fields.Str(), values=fields.Int())
    description = fields.Str()
    tags = fields.Dict(keys=fields.Str(), values=fields.Str())
    license = fields.Str(allow_none=True)
    model_card = fields.Str(allow_none=True)


class AliasSchema(Schema):
    name = fields.Str()
    alias = fields.Str()
    version = fields.Int()
    previous = fields.Int(allow_none=True)
    updated = fields.Str()


class VersionSchema(ManifestSchema):
    """A version as the API answers it: its manifest, and the artifacts added to it since
    (they are kept beside the manifest, which is never rewritten)."""

    artifacts = fields.Dict(keys=fields.Str(), values=fields.Nested(ArtifactSchema),
                            load_default=dict)


class ScanResultSchema(SafetySchema):
    """A fresh scan of a version: its verdict now, and whether it was recorded."""

    name = fields.Str()
    version = fields.Int()
    recorded = fields.Bool(metadata={"description": "a verdict was written for a version "
                                                    "published before the scan existed"})


class ArtifactListSchema(Schema):
    name = fields.Str()
    version = fields.Int()
    artifacts = fields.Dict(keys=fields.Str(), values=fields.Nested(ArtifactSchema))


class CreatedArtifactSchema(ArtifactSchema):
    name = fields.Str(metadata={"description": "the model"})
    version = fields.Int()
    artifact = fields.Str(metadata={"description": "the new artifact's name, e.g. tflite-int8"})


class TokenRecordSchema(_Response):
    id = fields.Str()
    identity = fields.Str()
    description = fields.Str()
    grants = fields.List(fields.Str())
    created = fields.Str(allow_none=True)
    expires = fields.Str(allow_none=True)
    last_used = fields.Str(allow_none=True)


class TokenListSchema(_Response):
    tokens = fields.List(fields.Nested(TokenRecordSchema))


class NamespaceSchema(_Response):
    name = fields.Str()
    private = fields.Bool()
    created = fields.Str(allow_none=True)
    updated = fields.Str(allow_none=True)
    models = fields.Int()


class NamespaceListSchema(_Response):
    namespaces = fields.List(fields.Nested(NamespaceSchema))


class AuditRecordSchema(_Response):
    seq = fields.Int()
    at = fields.Str()
    namespace = fields.Str()
    identity = fields.Str()
    token_id = fields.Str(allow_none=True)
    address = fields.Str()
    action = fields.Str()
    model = fields.Str(allow_none=True)
    version = fields.Int(allow_none=True)
    outcome = fields.Str()
    detail = fields.Str()
    prev = fields.Str()
    mac = fields.Str()


class AuditListSchema(_Response):
    records = fields.List(fields.Nested(AuditRecordSchema))
    problems = fields.List(fields.Str(), allow_none=True,
                           metadata={"description": "with verify=true: what does not verify"})


class TokenSchema(Schema):
    token = fields.Str(metadata={"description": "shown once; only its hash is stored"})
    id = fields.Str()
    scope = fields.Str(allow_none=True)
    grants = fields.List(fields.Str())
