"""The tensorflow_hub-compatible download route: `tensorflow_hub.load("http://host/models/name/1")`
asks for `?tf-hub-format=compressed` and expects a tar.gz rooted at the SavedModel."""
from __future__ import annotations

from flask import Blueprint, request

from schemas.manifest import dump_manifest

from ..refs import reference_from_url
from .context import archive_response, get_registry, requires

tfhub = Blueprint("tfhub", __name__)


@tfhub.get("/models/<name>")
@tfhub.get("/models/<name>/<version>")
@requires("read")
def tfhub_model(name: str, version: str | None = None):
    ref = reference_from_url(name, version)
    registry = get_registry()
    if request.args.get("tf-hub-format") == "compressed":
        manifest, chunks = registry.archive(ref)
        return archive_response(manifest, chunks)
    return dump_manifest(registry.get(ref))
