"""The hub HTTP API from Python (`HubClient`), with a verified, content-addressed local cache
(`ModelCache`)."""
from .cache import ModelCache
from .sdk import ERRORS_BY_CODE, HubClient

__all__ = ["ERRORS_BY_CODE", "HubClient", "ModelCache"]
