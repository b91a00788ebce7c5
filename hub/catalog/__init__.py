"""The hub's face for people: a web catalog where they find, understand and try models.

Server-rendered pages (Jinja2 templates, plain CSS, a little JavaScript, all shipped in the
package: nothing from a CDN) at `/` and `/models/...` (the URL tensorflow_hub takes), cards
rendered from Markdown and sanitised (`cards`), what changed between versions (`changes`),
snippets written for each model's signature (`snippets`), and an index that keeps the list and
search fast on big stores (`index`). It belongs to the hub role.
"""
from __future__ import annotations

from flask import Flask

from schemas.settings import Settings

from ..auth import Access
from ..registry import Registry
from .index import CatalogIndex
from .views import EXTENSION, CatalogContext, catalog


def init_app(app: Flask, registry: Registry, access: Access, settings: Settings,
             manager=None, index: CatalogIndex | None = None) -> CatalogIndex:
    """Mount the catalog; start its index (refreshed every `poll_seconds`). `manager`: the
    serving side's model manager when this process also serves (role all)."""
    index = index or CatalogIndex(registry, settings.poll_seconds)
    app.extensions[EXTENSION] = CatalogContext(registry, access, settings, index, manager)
    app.register_blueprint(catalog)
    index.start()
    return index


__all__ = ["init_app", "CatalogIndex"]
