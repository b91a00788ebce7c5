"""How models are served: batching knobs, and the serving config file
(`modelhub serve --model-config FILE`): which models, which versions, on which device, with
which runtime and batching.

    {"models": [
        {"name": "mnist", "policy": "latest", "latest": 2,
         "batching": {"max_batch_size": 64, "batch_timeout_micros": 500}},
        {"name": "resnet", "policy": "specific", "versions": [3, 4], "device": "gpu:1"},
        {"name": "ranker", "policy": "all", "device": "cpu", "batching": {"enabled": false}},
        {"name": "phone-model", "runtime": "tflite", "quantize": "int8"}
    ]}

A model's `batching` replaces the server's settings (from `serve`'s flags) as a whole; knobs it
leaves out take TF Serving-like defaults.

Each schema's defaults are the only place those defaults are written: the typed values it loads
into (`BatchingOptions`, `ModelConfig`) take theirs from it, and check themselves with its rules.
"""
from __future__ import annotations

import os
import re
from dataclasses import asdict, dataclass, field

from marshmallow import (
    RAISE,
    Schema,
    ValidationError,
    fields,
    post_load,
    validate,
    validates_schema,
)

from schemas.api import QUANTIZE_MODES
from schemas.errors import InvalidArgument
from schemas.manifest import NAME_PATTERN

RUNTIMES = ("tensorflow", "tflite")
POLICIES = ("latest", "all", "specific")
DEVICE_PATTERN = re.compile(r"\A(auto|cpu|tpu|gpu(:[0-9]+)?)\Z")


class IntList(fields.List):
    """A list of whole numbers, also given as text "8,16,32" (an environment variable)."""

    def __init__(self, **kwargs):
        super().__init__(fields.Int(strict=True, validate=validate.Range(min=1)), **kwargs)

    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, str):
            try:
                value = [int(part) for part in value.split(",") if part.strip()]
            except ValueError:
                raise ValidationError("use whole numbers separated by commas, like 8,16,32") from None
        return super()._deserialize(value, attr, data, **kwargs)


def cpu_cores() -> int:
    """The cores this process may use: its CPU set, and a container's CPU quota (cgroup v2's
    cpu.max, rounded up), not the host's count."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1
    try:
        with open("/sys/fs/cgroup/cpu.max") as f:
            quota, period = f.read().split()[:2]
        if quota != "max":
            cores = min(cores, max(1, -(-int(quota) // int(period))))
    except (OSError, ValueError):
        pass
    return cores


class BatchingKnobs(Schema):
    """TF Serving's batching parameters (see serving/batching.py), shared by the server's
    settings and a model's entry in the serving config."""

    class Meta:
        unknown = RAISE

    max_batch_size = fields.Int(load_default=32, validate=validate.Range(min=1), metadata={
        "help": "Rows in one merged call."})
    batch_timeout_micros = fields.Int(load_default=0, validate=validate.Range(min=0), metadata={
        "help": "How long a batch waits to fill (0: run what is queued as soon as the model is "
                "free)."})
    max_enqueued_batches = fields.Int(load_default=64, validate=validate.Range(min=1), metadata={
        "help": "Queue depth (in batches) before requests are refused with 503."})
    num_batch_threads = fields.Int(load_default=0, validate=validate.Range(min=0), metadata={
        "help": "Batches run at the same time, per model signature (0: one per CPU core)."})
    allowed_batch_sizes = IntList(load_default=list, metadata={
        "help": "Pad each batch up to the next of these sizes, e.g. 8,16,32 (the last must "
                "equal the max batch size)."})

    @validates_schema
    def _allowed_sizes(self, data: dict, **_) -> None:
        sizes = list(data.get("allowed_batch_sizes") or [])
        if sizes and sizes != sorted(set(sizes)):
            raise ValidationError("must be increasing", "allowed_batch_sizes")
        maximum = data.get("max_batch_size", self.fields["max_batch_size"].load_default)
        if sizes and sizes[-1] != maximum:
            raise ValidationError(f"the last size ({sizes[-1]}) must equal max_batch_size "
                                  f"({maximum})", "allowed_batch_sizes")


class BatchingSchema(BatchingKnobs):
    enabled = fields.Bool(load_default=True)

    @post_load
    def _options(self, data: dict, **_) -> "BatchingOptions":
        return BatchingOptions(**data)


def _defaults(schema: type[Schema]) -> dict:
    return {name: f.load_default for name, f in schema._declared_fields.items()}


_BATCHING = _defaults(BatchingSchema)


def _refused(what: str, error: ValidationError) -> InvalidArgument:
    return InvalidArgument(f"{what} is invalid: {error.messages}")


@dataclass(frozen=True)
class BatchingOptions:
    """Validated batching knobs; `num_batch_threads` 0 becomes one per CPU core (TF Serving's
    default)."""

    enabled: bool = _BATCHING["enabled"]
    max_batch_size: int = _BATCHING["max_batch_size"]
    batch_timeout_micros: int = _BATCHING["batch_timeout_micros"]
    max_enqueued_batches: int = _BATCHING["max_enqueued_batches"]
    num_batch_threads: int = _BATCHING["num_batch_threads"]
    allowed_batch_sizes: tuple[int, ...] = ()

    def __post_init__(self):
        object.__setattr__(self, "allowed_batch_sizes", tuple(self.allowed_batch_sizes))
        errors = BatchingSchema().validate({**asdict(self),
                                            "allowed_batch_sizes": list(self.allowed_batch_sizes)})
        if errors:
            raise InvalidArgument(f"batching: {errors}")
        if self.num_batch_threads == 0:
            object.__setattr__(self, "num_batch_threads", cpu_cores())

    def padded_size(self, rows: int) -> int:
        for size in self.allowed_batch_sizes:
            if size >= rows:
                return size
        return rows


def load_batching(data: object, where: str) -> BatchingOptions:
    try:
        return BatchingSchema().load(data)
    except ValidationError as e:
        raise _refused(where, e) from e


class ModelEntrySchema(Schema):
    class Meta:
        unknown = RAISE

    name = fields.Str(required=True, validate=validate.Regexp(NAME_PATTERN))
    policy = fields.Str(load_default="latest", validate=validate.OneOf(POLICIES))
    latest = fields.Int(load_default=1, strict=True, validate=validate.Range(min=1))
    versions = fields.List(fields.Int(strict=True, validate=validate.Range(min=1)),
                           load_default=list)
    #: None: the server's setting (so for runtime, quantize and batching too)
    device = fields.Str(load_default=None, allow_none=True,
                        validate=validate.Regexp(DEVICE_PATTERN))
    runtime = fields.Str(load_default=None, allow_none=True, validate=validate.OneOf(RUNTIMES))
    quantize = fields.Str(load_default=None, allow_none=True,
                          validate=validate.OneOf(QUANTIZE_MODES))
    batching = fields.Nested(BatchingSchema, load_default=None, allow_none=True)

    @validates_schema
    def _versions_with_specific(self, data: dict, **_) -> None:
        if data.get("policy") == "specific" and not data.get("versions"):
            raise ValidationError("policy 'specific' needs a list of versions", "versions")

    @post_load
    def _config(self, data: dict, **_) -> "ModelConfig":
        return ModelConfig(**data)


_ENTRY = _defaults(ModelEntrySchema)


@dataclass(frozen=True)
class ModelConfig:
    """How one model is served (from `--models` or a serving config file)."""

    name: str
    #: "latest" (the newest `latest` versions), "all", or "specific" (`versions`).
    policy: str = _ENTRY["policy"]
    latest: int = _ENTRY["latest"]
    versions: tuple[int, ...] = ()
    device: str | None = _ENTRY["device"]
    runtime: str | None = _ENTRY["runtime"]
    quantize: str | None = _ENTRY["quantize"]
    batching: BatchingOptions | None = field(default=_ENTRY["batching"])

    def __post_init__(self):
        object.__setattr__(self, "versions", tuple(self.versions))
        errors = ModelEntrySchema(exclude=("batching",)).validate(
            {k: v for k, v in {**asdict(self), "versions": list(self.versions)}.items()
             if k != "batching"})
        if errors:
            raise InvalidArgument(f"serving config for {self.name!r}: {errors}")

    def wanted(self, published: list[int]) -> set[int]:
        """Which of the published versions this policy serves."""
        if self.policy == "all":
            return set(published)
        if self.policy == "specific":
            return set(self.versions) & set(published)
        return set(published[-self.latest:]) if published else set()


class ServingConfigSchema(Schema):
    class Meta:
        unknown = RAISE

    models = fields.List(fields.Nested(ModelEntrySchema), required=True)


def load_serving_config(data: object, where: str) -> list[ModelConfig]:
    try:
        return ServingConfigSchema().load(data)["models"]
    except ValidationError as e:
        raise _refused(where, e) from e
