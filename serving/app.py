"""The modelhub web application: `create_app()` builds it; gunicorn runs `serving.app:create_app()`.

Settings come from defaults, then `MODELHUB_*` environment variables (`MODELHUB_STORE`,
`MODELHUB_ROLE=serving`, `MODELHUB_MODELS=a,b`, `MODELHUB_ANONYMOUS_READ=false`, ...), then the
`config` mapping (tests pass theirs here).

Roles: `hub` serves the registry API, `serving` the prediction APIs, `all` both; each role gets
health endpoints, so Kubernetes can run the two apart.
"""
from __future__ import annotations

import json
import os

from flask import Flask

from hub import api as hub_api
from hub.registry import DEFAULT_STORE
from schemas.errors import InvalidArgument
from schemas.serving import load_batching, load_serving_config

from . import health, metrics
from .batching import BatchingOptions
from .inference import v2
from .manager import ModelConfig, ModelManager
from .tfserving import v1

ROLES = ("all", "hub", "serving")

DEFAULTS = {
    "STORE": DEFAULT_STORE,
    "ROLE": "all",
    "MODELS": "",                             # comma-separated names; empty: every model
    "MODEL_CONFIG": "",                       # a serving config file (JSON); overrides MODELS
    "MEMORY_BUDGET_MB": 0,                    # evict least-recently-used versions above it
    "DEVICE": "auto",                         # auto, cpu, gpu, gpu:N, tpu
    "RUNTIME": "tensorflow",                  # or tflite: the version's TFLite artifact
    "TFLITE_QUANTIZE": "dynamic",             # which TFLite artifact (quantization mode)
    "BATCHING": True,                         # merge concurrent requests (serving/batching.py)
    "MAX_BATCH_SIZE": 32,
    "BATCH_TIMEOUT_MICROS": 0,
    "MAX_ENQUEUED_BATCHES": 64,
    "NUM_BATCH_THREADS": 0,                   # 0: one per CPU core
    "ALLOWED_BATCH_SIZES": "",                # comma-separated, e.g. "8,16,32"
    "POLL_SECONDS": 30,                       # how often serving looks for new versions/aliases
    "SERVING_CACHE": os.path.join("~", ".cache", "modelhub", "serving"),
    "ANONYMOUS_READ": True,                   # reads without a token; writes always need one
    "MAX_UPLOAD_BYTES": 16 * 1024**3,         # a publish body (compressed archive)
    "MAX_EXTRACTED_BYTES": 32 * 1024**3,      # what that archive may expand to
    "MAX_CONTENT_LENGTH": 64 * 1024**2,       # every other request body (JSON, tensors)
}


def _model_configs(app: Flask) -> list[ModelConfig] | None:
    """From the serving config file if there is one, else from the list of names; None: all."""
    path = app.config["MODEL_CONFIG"]
    if path:
        try:
            with open(os.path.expanduser(path), "rb") as f:
                data = json.load(f)
        except (OSError, ValueError) as e:
            raise InvalidArgument(f"cannot read the serving config {path}: {e}") from e
        entries = load_serving_config(data, path)
        for entry in entries:
            if entry["batching"] is not None:
                entry["batching"] = _batching_options(entry["batching"])
        return [ModelConfig(**entry) for entry in entries]
    names = [n.strip() for n in str(app.config["MODELS"]).split(",") if n.strip()]
    return [ModelConfig(n) for n in names] if names else None


def _batching_options(settings: dict) -> BatchingOptions:
    return BatchingOptions(**{**settings,
                              "allowed_batch_sizes": tuple(settings["allowed_batch_sizes"])})


def _server_batching(config) -> BatchingOptions:
    """The server-wide batching settings (environment text or typed values), validated."""
    def number(key: str):
        try:
            return int(config[key])
        except (TypeError, ValueError):
            raise InvalidArgument(f"invalid MODELHUB_{key} {config[key]!r}: use a whole "
                                  "number") from None

    sizes = config["ALLOWED_BATCH_SIZES"]
    if isinstance(sizes, str):
        try:
            sizes = [int(s) for s in sizes.split(",") if s.strip()]
        except ValueError:
            raise InvalidArgument(f"invalid MODELHUB_ALLOWED_BATCH_SIZES {sizes!r}: use sizes "
                                  "like 8,16,32") from None
    settings = load_batching({
        "enabled": _as_bool(config["BATCHING"], "MODELHUB_BATCHING"),
        **{key.lower(): number(key) for key in ("MAX_BATCH_SIZE", "BATCH_TIMEOUT_MICROS",
                                                "MAX_ENQUEUED_BATCHES", "NUM_BATCH_THREADS")},
        "allowed_batch_sizes": list(sizes)}, "the batching settings")
    return _batching_options(settings)


def init_serving(app: Flask) -> None:
    """Start the model manager: it loads in the background; /readyz says when it is done."""
    manager = ModelManager(
        app.extensions["modelhub.registry"], _model_configs(app),
        os.path.expanduser(app.config["SERVING_CACHE"]), device=app.config["DEVICE"],
        poll_seconds=float(app.config["POLL_SECONDS"]),
        memory_budget=int(float(app.config["MEMORY_BUDGET_MB"]) * 1024 * 1024),
        runtime=app.config["RUNTIME"], quantize=app.config["TFLITE_QUANTIZE"],
        batching=_server_batching(app.config))
    app.extensions["modelhub.manager"] = manager
    app.register_blueprint(v1)
    app.register_blueprint(v2)
    metrics.init_app(app)
    manager.start_in_background()


def _as_bool(value, setting: str) -> bool:
    """Environment values arrive as text ("false", "0", "no", ...); "False" must not be truthy."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise InvalidArgument(f"invalid {setting} {value!r}: use true or false")


def create_app(config: dict | None = None) -> Flask:
    app = Flask("modelhub")
    app.config.from_mapping(DEFAULTS)
    app.config.from_prefixed_env("MODELHUB")
    if config:
        app.config.from_mapping(config)
    app.config["ANONYMOUS_READ"] = _as_bool(app.config["ANONYMOUS_READ"], "MODELHUB_ANONYMOUS_READ")
    role = app.config["ROLE"]
    if role not in ROLES:
        raise InvalidArgument(f"invalid role {role!r}: use one of {', '.join(ROLES)}")
    hub_api.init_app(app, routes=role in ("all", "hub"))
    if role in ("all", "serving"):
        init_serving(app)
    health.init_app(app)
    return app
