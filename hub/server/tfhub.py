"""The tensorflow_hub-compatible download: `tensorflow_hub.load("http://host/models/name/1")`
asks for `?tf-hub-format=compressed` and expects a tar.gz rooted at the SavedModel; without it a
program gets the manifest. (A browser gets the catalog's page at the same URL: the catalog
mounts the route and hands programs to `download`.)

    /models/NAME                  the newest version
    /models/NAME/SELECTOR         a version number, an alias, or `latest`
    /models/NS/NAME[/SELECTOR]    the same for a model of namespace NS

`/models/a/b` is model `a/b` if there is one, else version or alias `b` of model `a`.
"""
from __future__ import annotations

from flask import request

from schemas.errors import InvalidReference
from schemas.manifest import NAME_PATTERN, dump_manifest

from ..auth import bearer_token
from ..refs import Reference, reference_from_url
from ..registry import Registry
from .context import archive_response, get_access, get_registry


def resolve_path(registry: Registry, target: str) -> Reference:
    """The reference a `/models/...` path names (see the module's docstring)."""
    parts = target.split("/")
    if len(parts) == 1:
        return reference_from_url(parts[0], None)
    if len(parts) == 2:
        namespaced = "/".join(parts)
        if NAME_PATTERN.match(namespaced) and registry.versions(namespaced):
            return reference_from_url(namespaced, None)
        return reference_from_url(parts[0], parts[1])
    if len(parts) == 3:
        return reference_from_url("/".join(parts[:2]), parts[2])
    raise InvalidReference(f"not a model path: /models/{target}")


def download(target: str):
    """The archive (`?tf-hub-format=compressed`) or the manifest of the version `target`
    names, for a caller who may read it."""
    access, registry = get_access(), get_registry()
    who = access.authenticate(bearer_token(request.headers.get("Authorization")))
    access.check(who, "read")
    ref = resolve_path(registry, target)
    access.check_model(who, "read", ref.name)
    if request.args.get("tf-hub-format") == "compressed":
        manifest, chunks = registry.archive(ref)
        return archive_response(manifest, chunks)
    return dump_manifest(registry.get(ref))
