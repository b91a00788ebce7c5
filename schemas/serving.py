"""The serving config file (`modelhub serve --model-config FILE`): which models, which versions,
on which device, with which runtime and batching.

    {"models": [
        {"name": "mnist", "policy": "latest", "latest": 2,
         "batching": {"max_batch_size": 64, "batch_timeout_micros": 500}},
        {"name": "resnet", "policy": "specific", "versions": [3, 4], "device": "gpu:1"},
        {"name": "ranker", "policy": "all", "device": "cpu", "batching": {"enabled": false}},
        {"name": "phone-model", "runtime": "tflite", "quantize": "int8"}
    ]}

A model's `batching` replaces the server's settings (from `serve`'s flags) as a whole; knobs it
leaves out take TF Serving-like defaults.
"""
from __future__ import annotations

from marshmallow import RAISE, Schema, ValidationError, fields, validate, validates_schema

from schemas.api import QUANTIZE_MODES
from schemas.errors import InvalidArgument
from schemas.manifest import NAME_PATTERN

DEVICE_PATTERN = r"^(auto|cpu|tpu|gpu(:\d+)?)$"


class BatchingSchema(Schema):
    """TF Serving's batching parameters (see serving/batching.py)."""

    class Meta:
        unknown = RAISE

    enabled = fields.Bool(load_default=True)
    max_batch_size = fields.Int(load_default=32, strict=True, validate=validate.Range(min=1))
    batch_timeout_micros = fields.Int(load_default=0, strict=True, validate=validate.Range(min=0))
    max_enqueued_batches = fields.Int(load_default=64, strict=True, validate=validate.Range(min=1))
    num_batch_threads = fields.Int(load_default=0, strict=True, validate=validate.Range(min=0))
    allowed_batch_sizes = fields.List(fields.Int(strict=True, validate=validate.Range(min=1)),
                                      load_default=list)

    @validates_schema
    def _allowed_sizes(self, data: dict, **_) -> None:
        sizes = data.get("allowed_batch_sizes") or []
        if sizes and sizes != sorted(set(sizes)):
            raise ValidationError("must be increasing", "allowed_batch_sizes")
        if sizes and sizes[-1] != data.get("max_batch_size", 32):
            raise ValidationError("the last size must equal max_batch_size", "allowed_batch_sizes")


class ModelEntrySchema(Schema):
    class Meta:
        unknown = RAISE

    name = fields.Str(required=True, validate=validate.Regexp(NAME_PATTERN))
    policy = fields.Str(load_default="latest", validate=validate.OneOf(["latest", "all", "specific"]))
    latest = fields.Int(load_default=1, strict=True, validate=validate.Range(min=1))
    versions = fields.List(fields.Int(strict=True, validate=validate.Range(min=1)), load_default=list)
    device = fields.Str(load_default=None, allow_none=True, validate=validate.Regexp(DEVICE_PATTERN))
    runtime = fields.Str(load_default=None, allow_none=True,
                         validate=validate.OneOf(["tensorflow", "tflite"]))
    quantize = fields.Str(load_default=None, allow_none=True, validate=validate.OneOf(QUANTIZE_MODES))
    batching = fields.Nested(BatchingSchema, load_default=None, allow_none=True)

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


def load_batching(data: object, where: str) -> dict:
    try:
        return BatchingSchema().load(data)
    except ValidationError as e:
        raise InvalidArgument(f"{where} is invalid: {e.messages}") from e
