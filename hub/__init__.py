"""The registry of versioned SavedModels and everything around it: the registry itself
(`registry`), reading SavedModels without TensorFlow (`savedmodel`), who may do what (`auth`),
the hub server (`server`), the Python client and its cache (`client`), the TFLite conversion
path (`conversion`), example models (`examples`) and the hub's commands (`cli`)."""
from __future__ import annotations


def load(ref: str, *, url: str | None = None, token: str | None = None, **load_options):
    """Load a model from a hub like `tensorflow_hub.load`: `hub.load("mnist@prod")`.

    The hub is `url` or MODELHUB_URL (token: MODELHUB_TOKEN); files come through the local cache
    (MODELHUB_CACHE), and with MODELHUB_OFFLINE=1 from the cache alone."""
    from schemas.settings import load_settings

    from .client import HubClient

    settings = load_settings({"hub_url": url, "token": token})
    return HubClient.from_settings(settings).load(ref, **load_options)
