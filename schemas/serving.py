"""The serving config file (`modelhub serve --model-config FILE`): which models, which versions,
on which device.

    {"models": [
        {"name": "mnist", "policy": "latest", "latest": 2},
        {"name": "resnet", "policy": "specific", "versions": [3, 4], "device": "gpu:1"},
        {"name": "ranker", "policy": "all", "device": "cpu"}
    ]}
"""
from __future__ import annotations

from marshmallow import RAISE, Schema, ValidationError, fields, validate, validates_schema

from schemas.errors import InvalidArgument
from schemas.manifest import NAME_PATTERN

DEVICE_PATTERN = r"^(auto|cpu|tpu|gpu(:\d+)?)$"


class ModelEntrySchema(Schema):
    class Meta:
        unknown = RAISE

    name = fields.Str(required=True, validate=validate.Regexp(NAME_PATTERN))
    policy = fields.Str(load_default="latest", validate=validate.OneOf(["latest", "all", "specific"]))
    latest = fields.Int(load_default=1, strict=True, validate=validate.Range(min=1))
    versions = fields.List(fields.Int(strict=True, validate=validate.Range(min=1)), load_default=list)
    device = fields.Str(load_default=None, allow_none=True, validate=validate.Regexp(DEVICE_PATTERN))

    @validates_schema
    def _versions_with_specific(self, data: dict, **_) -> None:
        if data["policy"] == "specific" and not data["versions"]:
            raise ValidationError("policy 'specific' needs a list of versions", "versions")


class ServingConfigSchema(Schema):
    class Meta:
        unknown = RAISE

    models = fields.List(fields.Nested(ModelEntrySchema), required=True)


def load_serving_config(data: object, where: str) -> list[dict]:
    try:
        return ServingConfigSchema().load(data)["models"]
    except ValidationError as e:
        raise InvalidArgument(f"{where} is invalid: {e.messages}") from e
