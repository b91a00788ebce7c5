"""Request and response bodies of the hub HTTP API (`/api/v1`). Also the source of its OpenAPI."""
from __future__ import annotations

from marshmallow import EXCLUDE, RAISE, Schema, fields, validate

from schemas.manifest import ALIAS_PATTERN, TAG_KEY_PATTERN

SCOPES = ("read", "write", "admin")


class _Request(Schema):
    class Meta:
        unknown = RAISE  # a misspelt field is an error, not silently ignored


class PublishMetadataSchema(_Request):
    """Sent as JSON in the `Modelhub-Metadata` header of a publish request."""

    description = fields.Str(load_default="", validate=validate.Length(max=10_000))
    tags = fields.Dict(keys=fields.Str(validate=validate.Regexp(TAG_KEY_PATTERN)),
                       values=fields.Str(validate=validate.Length(max=256)), load_default=dict)
    license = fields.Str(allow_none=True, load_default=None, validate=validate.Length(max=256))
    model_card = fields.Str(allow_none=True, load_default=None,
                            validate=validate.Length(max=1_000_000))
    aliases = fields.List(fields.Str(validate=validate.Regexp(ALIAS_PATTERN)), load_default=list,
                          validate=validate.Length(max=16))


class AliasRequestSchema(_Request):
    version = fields.Int(required=True, strict=True, validate=validate.Range(min=1))
    #: Move only if the alias points here now (compare-and-swap); omitted: move unconditionally.
    expected_version = fields.Int(allow_none=True, load_default=None, strict=True)


class TokenRequestSchema(_Request):
    scope = fields.Str(required=True, validate=validate.OneOf(SCOPES))
    description = fields.Str(load_default="", validate=validate.Length(max=256))


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


class ModelSummarySchema(Schema):
    name = fields.Str()
    latest = fields.Int()
    versions = fields.List(fields.Int())
    aliases = fields.List(fields.Str())
    description = fields.Str()
    tags = fields.Dict(keys=fields.Str(), values=fields.Str())
    license = fields.Str(allow_none=True)
    updated = fields.AwareDateTime()


class ModelListSchema(Schema):
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


class TokenSchema(Schema):
    token = fields.Str(metadata={"description": "shown once; only its hash is stored"})
    scope = fields.Str()
