"""modelhub's settings: one typed object, every default written once, validated once.

`load_settings(options)` reads each setting from, in order of precedence, the options given
(the command line's, or a test's), then its `MODELHUB_*` environment variable, then the default
below. This module is the only place the environment is read for modelhub's own settings; the
rest of the program receives a `Settings` object.

    MODELHUB_STORE=s3://models/hub MODELHUB_MAX_BATCH_SIZE=64 modelhub serve --port 9000
"""
from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from typing import Any

from marshmallow import RAISE, ValidationError, fields, post_load, validate

from schemas.errors import InvalidArgument
from schemas.manifest import NAME_PATTERN
from schemas.serving import (
    DEVICE_PATTERN,
    QUANTIZE_MODES,
    RUNTIMES,
    BatchingKnobs,
    BatchingOptions,
    cpu_cores,
)

ROLES = ("all", "hub", "serving")
ENV_PREFIX = "MODELHUB_"
GIB = 1024**3


class TextList(fields.List):
    """A list of names, also given as text "a,b" (an environment variable or an option)."""

    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, str):
            value = [part.strip() for part in value.split(",") if part.strip()]
        return super()._deserialize(value, attr, data, **kwargs)


def _setting(field: fields.Field, help: str, env: str | None = None) -> fields.Field:
    field.metadata.update(help=help, **({"env": env} if env else {}))
    return field


class SettingsSchema(BatchingKnobs):
    """Every setting, its default and its rule. The batching knobs come from `BatchingKnobs`."""

    class Meta:
        unknown = RAISE

    # --- where models live, and how this machine reaches them ----------------------------------
    store = _setting(fields.Str(load_default=os.path.join("~", ".modelhub", "store")),
                     "Store URI: a folder, file:///path or s3://bucket/prefix.")
    hub_url = _setting(fields.Str(load_default=None, allow_none=True),
                       "Work through a running hub at this URL instead of a store.",
                       env="MODELHUB_URL")
    token = _setting(fields.Str(load_default=None, allow_none=True),
                     "The token sent to a hub (Authorization: Bearer).")
    cache = _setting(fields.Str(load_default=os.path.join("~", ".cache", "modelhub")),
                     "The client's verified, content-addressed cache of fetched versions.")
    token_secret = _setting(fields.Str(load_default=None, allow_none=True),
                            "The server's secret that signs tokens and allowances (the same on "
                            "every hub and serving process; required for an S3 store).")
    secret_file = _setting(fields.Str(load_default=None, allow_none=True),
                           "Where a local store's secret is kept [default: <store folder>.secret, "
                           "made on first use].")
    offline = _setting(fields.Bool(load_default=False),
                       "Answer from the client cache alone, never asking a hub.")
    quiet = _setting(fields.Bool(load_default=False), "No progress bars.")

    # --- the server process ---------------------------------------------------------------------
    host = _setting(fields.Str(load_default="127.0.0.1"), "Address to listen on.")
    port = _setting(fields.Int(load_default=8080, validate=validate.Range(min=0, max=65535)),
                    "Port to listen on.")
    role = _setting(fields.Str(load_default="all", validate=validate.OneOf(ROLES)),
                    "Registry API (hub), prediction APIs (serving), or both (all).")
    grpc_port = _setting(fields.Int(load_default=8500, validate=validate.Range(min=0, max=65535)),
                         "Port of the gRPC APIs (TF Serving's and KServe V2's), with the roles "
                         "that serve; 0 turns gRPC off.")
    workers = _setting(fields.Int(load_default=None, allow_none=True,
                                  validate=validate.Range(min=1)),
                       "Worker processes, each with its own socket [default: one per CPU core "
                       "with serving (each holds its models: use 1 for big models), 2-4 for "
                       "--role hub].")
    threads = _setting(fields.Int(load_default=16, validate=validate.Range(min=1)),
                       "Threads per worker for the hub API and the rest of the control plane "
                       "(predictions run on the event loop and the batchers' threads).")
    max_connections = _setting(fields.Int(load_default=2048, validate=validate.Range(min=1)),
                               "Open HTTP connections per worker (idle keep-alives included); "
                               "more are answered 503.")
    keep_alive = _setting(fields.Float(load_default=75.0, validate=validate.Range(min=0)),
                          "Seconds an idle keep-alive connection stays open.")
    header_timeout = _setting(fields.Float(load_default=10.0, validate=validate.Range(min=0.1)),
                              "Seconds a client has to send a request's headers (from its "
                              "first byte, or from connecting).")
    body_timeout = _setting(fields.Float(load_default=30.0, validate=validate.Range(min=0.1)),
                            "Seconds a request body may go without 1 KiB arriving.")
    max_header_bytes = _setting(fields.Int(load_default=65536, validate=validate.Range(min=1024)),
                                "Largest request line plus headers (publish metadata travels "
                                "in a header); more is answered 431.")
    max_headers = _setting(fields.Int(load_default=100, validate=validate.Range(min=1)),
                           "Most header fields in a request; more is answered 431.")
    access_log = _setting(fields.Bool(load_default=False),
                          "Log every request (written from a queue, off the request path).")
    timeout = _setting(fields.Int(load_default=120, validate=validate.Range(min=1)),
                       "Seconds a worker may stay silent before it is restarted.")
    graceful_timeout = _setting(fields.Int(load_default=30, validate=validate.Range(min=0)),
                                "Seconds in-flight requests get to finish on shutdown.")
    confine = _setting(fields.Bool(load_default=True),
                       "Confine each worker with Landlock where the kernel offers it: the "
                       "models it runs can open only what the worker needs.")

    # --- what is served, and how ------------------------------------------------------------------
    models = _setting(TextList(fields.Str(validate=validate.Regexp(NAME_PATTERN)),
                               load_default=list),
                      "Models to serve, NAME,... [default: every model in the registry].")
    model_config = _setting(fields.Str(load_default=None, allow_none=True),
                            "Serving config (JSON): per-model version policy, device, runtime "
                            "and batching.")
    device = _setting(fields.Str(load_default="auto",
                                 validate=validate.Regexp(DEVICE_PATTERN)),
                      "auto, cpu, gpu, gpu:N or tpu.")
    runtime = _setting(fields.Str(load_default="tensorflow", validate=validate.OneOf(RUNTIMES)),
                       "Run the SavedModel, or the version's TFLite artifact with LiteRT (the "
                       "numbers a device will produce).")
    tflite_quantize = _setting(fields.Str(load_default="dynamic",
                                          validate=validate.OneOf(QUANTIZE_MODES)),
                               "With the tflite runtime: which conversion (quantization mode).")
    memory_budget_mb = _setting(fields.Float(load_default=0.0, validate=validate.Range(min=0)),
                                "Unload least-recently-used versions above this much (0: no "
                                "limit).")
    poll_seconds = _setting(fields.Float(load_default=30.0, validate=validate.Range(min=0)),
                            "How often serving looks for new versions and alias moves (0: never).")
    batching = _setting(fields.Bool(load_default=True),
                        "Merge concurrent requests into one model call.")
    serving_cache = _setting(fields.Str(load_default=os.path.join("~", ".cache", "modelhub",
                                                                  "serving")),
                             "Where serving keeps the versions it loads.")

    # --- access and limits ------------------------------------------------------------------------
    anonymous_read = _setting(fields.Bool(load_default=True),
                              "Reads without a token; writes always need one.")
    max_upload_bytes = _setting(fields.Int(load_default=16 * GIB, validate=validate.Range(min=1)),
                                "Largest publish body (a compressed archive).")
    max_extracted_bytes = _setting(fields.Int(load_default=32 * GIB,
                                              validate=validate.Range(min=1)),
                                   "What a published archive may expand to.")
    max_content_length = _setting(fields.Int(load_default=64 * 1024**2,
                                             validate=validate.Range(min=1)),
                                  "Largest body of every other request (JSON, tensors).")

    @post_load
    def _settings(self, data: dict, **_) -> "Settings":
        return Settings(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})


def env_name(setting: str) -> str:
    """The environment variable a setting is read from."""
    declared = SettingsSchema._declared_fields[setting]
    return declared.metadata.get("env") or ENV_PREFIX + setting.upper()


def default_of(setting: str) -> Any:
    """A setting's default, as the schema writes it."""
    default = SettingsSchema._declared_fields[setting].load_default
    return default() if callable(default) else default


def option_name(setting: str) -> str:
    return "--" + setting.replace("_", "-")


def describe(setting: str) -> str:
    """A setting's help: what it does, its default and its environment variable."""
    declared = SettingsSchema._declared_fields[setting]
    default = default_of(setting)
    shown = ",".join(map(str, default)) if isinstance(default, list) else default
    tail = f"[default: {shown}; env {env_name(setting)}]" if shown not in (None, "", []) \
        else f"[env {env_name(setting)}]"
    return f"{declared.metadata['help']} {tail}"


@dataclasses.dataclass(frozen=True)
class Settings:
    """Validated settings (build them with `load_settings`). See `SettingsSchema` for each one."""

    store: str
    hub_url: str | None
    token: str | None = dataclasses.field(repr=False)  # never in logs or reprs
    token_secret: str | None = dataclasses.field(repr=False)
    secret_file: str | None
    cache: str
    offline: bool
    quiet: bool
    host: str
    port: int
    role: str
    grpc_port: int
    workers: int | None
    threads: int
    max_connections: int
    keep_alive: float
    header_timeout: float
    body_timeout: float
    max_header_bytes: int
    max_headers: int
    access_log: bool
    timeout: int
    graceful_timeout: int
    confine: bool
    models: tuple[str, ...]
    model_config: str | None
    device: str
    runtime: str
    tflite_quantize: str
    memory_budget_mb: float
    poll_seconds: float
    batching: bool
    max_batch_size: int
    batch_timeout_micros: int
    max_enqueued_batches: int
    num_batch_threads: int
    allowed_batch_sizes: tuple[int, ...]
    serving_cache: str
    anonymous_read: bool
    max_upload_bytes: int
    max_extracted_bytes: int
    max_content_length: int

    @property
    def batching_options(self) -> BatchingOptions:
        return BatchingOptions(
            enabled=self.batching, max_batch_size=self.max_batch_size,
            batch_timeout_micros=self.batch_timeout_micros,
            max_enqueued_batches=self.max_enqueued_batches,
            num_batch_threads=self.num_batch_threads,
            allowed_batch_sizes=tuple(self.allowed_batch_sizes))

    @property
    def worker_processes(self) -> int:
        """`workers`, or its default for the role."""
        if self.workers:
            return self.workers
        if self.role == "hub":
            return max(2, min(4, cpu_cores()))  # transfers are I/O bound
        # One event loop per core: a worker is one Python interpreter, whose lock is the
        # limit. Each worker holds its own copy of every model (use --workers 1 for big ones).
        return cpu_cores()

    @property
    def serves(self) -> bool:
        return self.role in ("all", "serving")

    @property
    def grpc_serving_port(self) -> int:
        """The port gRPC is served on, where this role serves predictions (0: none)."""
        return self.grpc_port if self.serves else 0

    @property
    def hosts_hub(self) -> bool:
        return self.role in ("all", "hub")

    def replace(self, **changes: Any) -> "Settings":
        """A copy with some settings changed, validated like the original."""
        return load_settings({**dataclasses.asdict(self), **changes}, environ={})


def load_settings(options: Mapping[str, Any] | None = None,
                  environ: Mapping[str, str] | None = None) -> Settings:
    """Settings from `options` (None values are not given), then the environment (`environ`,
    default `os.environ`; an empty variable counts as unset), then the defaults."""
    environ = os.environ if environ is None else environ
    raw: dict[str, Any] = {}
    for setting in SettingsSchema._declared_fields:
        value = environ.get(env_name(setting))
        if value:
            raw[setting] = value
    unknown = sorted(set(options or {}) - set(SettingsSchema._declared_fields))
    if unknown:
        raise InvalidArgument(f"unknown setting(s): {', '.join(unknown)}")
    raw.update({k: v for k, v in (options or {}).items() if v is not None})
    try:
        return SettingsSchema().load(raw)
    except ValidationError as e:
        problems = "; ".join(
            f"{option_name(k)} / {env_name(k)}: {' '.join(map(str, v)) if isinstance(v, list) else v}"
            if k in SettingsSchema._declared_fields else f"{k}: {v}"
            for k, v in sorted(e.messages.items()))
        raise InvalidArgument(f"invalid settings: {problems}") from e
