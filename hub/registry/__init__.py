"""The registry: named, versioned, immutable SavedModel bundles in an object store.

`layout` says where everything lives in the store; each part of the registry is its own module:
`reading` (names, versions, aliases, manifests, references), `publishing`, `aliases`,
`artifacts` (files derived from a version, e.g. TFLite), `safety` (the graph scan's verdict),
`cleanup` (delete, gc), `namespaces` (teams' models and who may see them) and `fetching` (verified bytes back out: files, folders, tar.gz). `files` and `archive` handle SavedModel folders
and archives on local disk.

    registry = Registry.open("s3://models/hub")
    manifest = registry.publish("./my_saved_model", "mnist", aliases=["prod"])
    registry.pull("mnist@prod", "./mnist")
"""
from __future__ import annotations

import os

from storage import ObjectStore, open_store

from .aliases import Aliases
from .artifacts import Artifacts
from .cleanup import Cleanup
from .fetching import Fetching
from .namespaces import Namespaces
from .publishing import Publishing
from .reading import Reading
from .safety import Safety


class Registry(Reading, Publishing, Aliases, Artifacts, Cleanup, Fetching, Safety, Namespaces):
    def __init__(self, store: ObjectStore):
        self.store = store

    @classmethod
    def open(cls, uri: str) -> "Registry":
        return cls(open_store(os.path.expanduser(uri)))

    def __repr__(self) -> str:
        return f"Registry({self.store.uri!r})"


__all__ = ["Registry"]
