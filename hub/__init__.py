"""The registry of versioned SavedModels, its HTTP API, client SDK and command line."""
from __future__ import annotations


def load(ref: str, *, url: str | None = None, token: str | None = None, **load_options):
    """Load a model from a hub like `tensorflow_hub.load`: `hub.load("mnist@prod")`.

    The hub is `url` or MODELHUB_URL (token: MODELHUB_TOKEN); files come through the local cache
    (MODELHUB_CACHE), and with MODELHUB_OFFLINE=1 from the cache alone."""
    from .client import HubClient

    return HubClient(url, token).load(ref, **load_options)
