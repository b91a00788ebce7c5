"""`HubClient`: the hub HTTP API from Python, with a verified local cache.

    client = HubClient("http://hub:8080", token="mh_...", cache="~/.cache/modelhub")
    client = HubClient.from_settings(load_settings())        # MODELHUB_URL, MODELHUB_TOKEN, ...
    client.publish("./saved_model", "mnist", aliases=["prod"])
    model = client.load("mnist@prod")                         # like tensorflow_hub.load
    client.convert("mnist/3", quantize="int8", samples="calibration.npz")   # on the hub
    client.pull_artifact("mnist/3", "tflite-int8", "mnist.tflite")        # verified, via the cache

It offers the same operations as `Registry`, so the CLI works against either. Failed requests
go through one funnel (`_raise_for_error`) that maps the server's error code to its class.
"""
from __future__ import annotations

import base64
import json
import shutil
from pathlib import Path
from typing import Callable, Iterable, Iterator
from urllib.parse import quote

import requests

from schemas.errors import (
    ArtifactNotFound,
    Forbidden,
    HubUnavailable,
    IntegrityError,
    InvalidArgument,
    InvalidModel,
    ModelhubError,
    ModelNotFound,
    TooLarge,
    Unauthorized,
    UnsupportedMediaType,
    all_error_classes,
)
from schemas.api import ModelListSchema
from schemas.manifest import load_artifact, load_manifest
from schemas.settings import Settings, default_of
from storage.base import CHUNK_SIZE
from storage.hashing import TrailingHasher

from ..refs import Reference, check_name, parse_reference
from ..registry.archive import saved_model_root, tar_gz_chunks
from ..registry.files import (
    check_digest,
    empty_folders,
    parallel_map,
    scan_folder,
    staged_file,
    staged_folder,
)
from .cache import ModelCache

#: Small enough that a cut connection loses little: a partial read is discarded, not yielded.
DOWNLOAD_CHUNK = 256 * 1024
DOWNLOAD_ATTEMPTS = 5
#: A conversion runs inside the request: TensorFlow starts, converts, and runs both models.
CONVERT_TIMEOUT = 900.0

ERRORS_BY_CODE = {cls.code: cls for cls in all_error_classes()}
ERRORS_BY_STATUS = {401: Unauthorized, 403: Forbidden, 404: ModelNotFound, 413: TooLarge,
                    415: UnsupportedMediaType}

Progress = Callable[[int], None]


def _raise_for_error(response: requests.Response) -> None:
    """The one place an error response becomes a typed exception."""
    if response.status_code < 400:
        return
    try:
        error = response.json()["error"]
        code, message = error["code"], error["message"]
    except (ValueError, KeyError, TypeError):
        code, message = None, f"HTTP {response.status_code} from {response.url}"
    cls = ERRORS_BY_CODE.get(code) or ERRORS_BY_STATUS.get(response.status_code)
    if cls is None:
        cls = HubUnavailable if response.status_code >= 500 else ModelhubError
    raise cls(message)


class HubClient:
    def __init__(self, url: str | None, token: str | None = None, *,
                 cache: ModelCache | str | Path | None = None, offline: bool = False,
                 timeout: float = 60.0):
        """`cache`: the local cache's folder (default: the `cache` setting's default);
        `offline`: answer from the cache alone, never asking the hub."""
        self.url = (url or "").rstrip("/")
        self.token = token or None
        self.cache = cache if isinstance(cache, ModelCache) else ModelCache(
            cache or default_of("cache"))
        self.offline = offline
        self.timeout = timeout
        self.session = requests.Session()
        self.session.headers["User-Agent"] = "modelhub-client"
        if self.token:
            self.session.headers["Authorization"] = f"Bearer {self.token}"

    @classmethod
    def from_settings(cls, settings: Settings) -> "HubClient":
        return cls(settings.hub_url, settings.token, cache=settings.cache,
                   offline=settings.offline)

    def __repr__(self) -> str:  # never shows the token
        return f"HubClient({self.url!r})"

    # --- transport ----------------------------------------------------------------------------

    def _request(self, method: str, path: str, *, stream: bool = False, **kwargs) -> requests.Response:
        if not self.url:
            raise InvalidArgument("no hub URL: pass --hub or set MODELHUB_URL")
        try:
            kwargs.setdefault("timeout", self.timeout)
            response = self.session.request(method, self.url + path, stream=stream, **kwargs)
        except requests.RequestException as e:
            raise HubUnavailable(f"cannot reach the hub at {self.url}: {e}") from e
        _raise_for_error(response)
        return response

    def _json(self, method: str, path: str, **kwargs):
        return self._request(method, path, **kwargs).json()

    @staticmethod
    def _version_path(name: str, version: int | str) -> str:
        return f"/api/v1/models/{quote(name)}/versions/{quote(str(version))}"

    # --- reading ------------------------------------------------------------------------------

    def list_models(self, query: str | None = None) -> list[dict]:
        models, page = [], 1
        while True:
            params = {"page": page, "per_page": 100, **({"q": query} if query else {})}
            body = ModelListSchema().load(self._json("GET", "/api/v1/models", params=params))
            models.extend(body["models"])
            if page * body["per_page"] >= body["total"]:
                return models
            page += 1

    def model(self, name: str) -> dict:
        return self._json("GET", f"/api/v1/models/{quote(check_name(name))}")

    def versions(self, name: str) -> list[int]:
        body = self._json("GET", f"/api/v1/models/{quote(check_name(name))}/versions")
        return [v["version"] for v in body["versions"]]

    def model_names(self) -> list[str]:
        return [m["name"] for m in self.list_models()]

    def aliases(self, name: str) -> dict[str, int]:
        return self.model(name)["aliases"]

    def get(self, ref: str | Reference) -> dict:
        """The manifest a reference points to (one request; versions come from the cache)."""
        ref = parse_reference(ref) if isinstance(ref, str) else ref
        if ref.version is not None:
            cached = self.cache.cached_manifest(ref.name, ref.version)
            if cached:
                return cached  # versions are immutable
        selector = ref.version or ref.alias or "latest"
        body = self._json("GET", self._version_path(ref.name, selector))
        manifest = load_manifest(body, f"manifest of {ref} from {self.url}")
        if manifest["name"] != ref.name or ref.version not in (None, manifest["version"]):
            raise IntegrityError(f"the hub answered {ref} with {manifest['name']}/{manifest['version']}")
        return manifest

    def resolve(self, ref: str | Reference) -> tuple[str, int]:
        manifest = self.get(ref)
        return manifest["name"], manifest["version"]

    def archive(self, ref: str | Reference) -> tuple[dict, Iterator[bytes]]:
        manifest = self.get(ref)
        response = self._request("GET", self._version_path(manifest["name"], manifest["version"])
                                 + "/archive", stream=True)
        return manifest, response.iter_content(CHUNK_SIZE)

    # --- downloading into the cache -----------------------------------------------------------

    def _download_blob(self, url: str, entry: dict, label: str,
                       on_progress: Progress | None) -> None:
        """Fetch the bytes at `url` (size and sha256 in `entry`) into the cache; a connection cut
        mid-file resumes with Range."""
        temp = self.cache.temp_path(entry["sha256"])
        temp.parent.mkdir(parents=True, exist_ok=True)
        have = 0
        # Hashing runs on a second thread over what has been written, beside the download.
        hasher = TrailingHasher(temp, on_progress)
        try:
            with open(temp, "r+b") as out:
                for attempt in range(DOWNLOAD_ATTEMPTS):
                    headers = {"Range": f"bytes={have}-", "If-Range": f'"{entry["sha256"]}"'} \
                        if have else {}
                    try:
                        with self._request("GET", url, stream=True, headers=headers) as response:
                            if have and response.status_code != 206:  # range ignored: start over
                                hasher.close()
                                out.seek(0)
                                out.truncate()
                                hasher, have = TrailingHasher(temp, on_progress), 0
                            for chunk in response.iter_content(DOWNLOAD_CHUNK):
                                out.write(chunk)
                                out.flush()  # the hasher reads the file, not this buffer
                                hasher.advance(len(chunk))
                                have += len(chunk)
                        break
                    except (HubUnavailable, requests.RequestException):
                        if attempt == DOWNLOAD_ATTEMPTS - 1:
                            raise
            check_digest(f"{label}, as downloaded,", entry["sha256"], entry["size"], hasher.finish())
            self.cache.commit_blob(temp, entry["sha256"])
        finally:
            hasher.close()
            temp.unlink(missing_ok=True)

    def fetch(self, ref: str | Reference, on_progress: Progress | None = None) -> tuple[dict, Path]:
        """Make sure a version is completely in the cache; return its manifest and folder.

        Offline, only the cache is asked."""
        ref = parse_reference(ref) if isinstance(ref, str) else ref
        if self.offline:
            return self.cache.lookup(ref)
        manifest = self.get(ref)
        snapshot = self.cache.complete_snapshot(manifest)
        if not snapshot:
            missing = {e["sha256"]: e for e in manifest["files"] if not self.cache.has_blob(e)}
            base = self._version_path(manifest["name"], manifest["version"])
            label = f"{manifest['name']}/{manifest['version']}"
            parallel_map(lambda e: self._download_blob(
                f"{base}/files/{quote(e['path'])}", e, f"file {e['path']} of {label}", on_progress),
                missing.values())
            self.cache.save_manifest(manifest)
            snapshot = self.cache.build_snapshot(manifest)
        # Only now: offline mode must never resolve a ref to a version that is not all there.
        self.cache.remember_ref(ref, manifest["version"])
        return manifest, snapshot

    def load(self, ref: str | Reference, **load_options):
        """The loaded SavedModel (`tf.saved_model.load`), fetched through the cache."""
        import tensorflow as tf

        _, folder = self.fetch(ref)
        return tf.saved_model.load(str(folder), **load_options)

    def pull(self, ref: str | Reference, dest: str | Path, *,
             on_progress: Progress | None = None) -> dict:
        """Copy a version out of the cache (fetching it first) into folder `dest`."""
        manifest, snapshot = self.fetch(ref, on_progress)
        with staged_folder(dest) as staging:
            # Copies, not links: editing the pulled files must not change the cache.
            shutil.copytree(snapshot, staging, copy_function=shutil.copyfile, dirs_exist_ok=True)
        return manifest

    # --- artifacts (TFLite conversions) --------------------------------------------------------

    def artifacts(self, name: str, version: int | str) -> dict[str, dict]:
        """{artifact name: record} of a version, asked of the hub every time (artifacts are added
        after publishing, so a cached manifest may not list them all)."""
        body = self._json("GET", self._version_path(check_name(name), version) + "/artifacts")
        return {key: load_artifact(record, f"artifact {key} from {self.url}")
                for key, record in body["artifacts"].items()}

    def artifact(self, name: str, version: int, artifact: str) -> dict:
        found = self.artifacts(name, version)
        if artifact not in found:
            raise ArtifactNotFound(f"{name}/{version} has no artifact {artifact!r} "
                                   f"(it has: {', '.join(sorted(found)) or 'none'})")
        return found[artifact]

    def convert(self, ref: str | Reference, *, quantize: str = "dynamic",
                samples: str | Path | bytes | None = None, signature: str | None = None,
                allow_select_tf_ops: bool = False, thresholds: dict | None = None) -> dict:
        """Have the hub convert a version to TFLite and store it (see `hub.convert`); return the
        new artifact's record. `samples`: an .npz file (path or bytes), sent along."""
        ref = parse_reference(ref) if isinstance(ref, str) else ref
        if isinstance(samples, (str, Path)):
            if not Path(samples).is_file():
                raise InvalidArgument(f"samples file {samples} does not exist")
            samples = Path(samples).read_bytes()
        body = {"to": "tflite", "quantize": quantize, "signature": signature,
                "allow_select_tf_ops": allow_select_tf_ops,
                "thresholds": {k: v for k, v in (thresholds or {}).items() if v is not None}}
        if samples is not None:
            body["samples"] = base64.b64encode(samples).decode("ascii")
        selector = ref.version or ref.alias or "latest"
        answer = self._json("POST", self._version_path(ref.name, selector) + "/artifacts",
                            json=body, timeout=max(self.timeout, CONVERT_TIMEOUT))
        return load_artifact(answer, "artifact record from the hub")

    def fetch_artifact(self, ref: str | Reference, artifact: str,
                       on_progress: Progress | None = None) -> tuple[dict, Path]:
        """Make sure an artifact is in the cache (verified); return its record and file.

        Artifacts never change once written, so a cached one costs no request for `name/N`.
        Offline, only the cache is asked."""
        ref = parse_reference(ref) if isinstance(ref, str) else ref
        if self.offline:
            return self.cache.lookup_artifact(ref, artifact)
        name, version = (ref.name, ref.version) if ref.version is not None else self.resolve(ref)
        cached = self.cache.cached_artifact(name, version, artifact)
        if cached:
            return cached
        record = self.artifact(name, version, artifact)
        if not self.cache.has_blob(record):
            self._download_blob(f"{self._version_path(name, version)}/artifacts/{quote(artifact)}",
                                record, f"artifact {artifact} of {name}/{version}", on_progress)
        self.cache.save_artifact(name, version, artifact, record)
        return record, self.cache.link_artifact(name, version, artifact, record)

    def pull_artifact(self, ref: str | Reference, artifact: str, dest_file: str | Path, *,
                      on_progress: Progress | None = None) -> dict:
        """Copy an artifact out of the cache (fetching it first) to the file `dest_file`."""
        record, path = self.fetch_artifact(ref, artifact, on_progress)
        with staged_file(dest_file) as temp:
            shutil.copyfile(path, temp)  # a copy: editing it must not change the cache
        return record

    # --- writing ------------------------------------------------------------------------------

    def publish(self, source: str | Path, name: str, *, description: str = "",
                tags: dict[str, str] | None = None, license: str | None = None,
                model_card: str | None = None, aliases: Iterable[str] = (),
                allow_ops: Iterable[str] = (), on_progress: Progress | None = None) -> dict:
        """Stream a SavedModel folder (as tar.gz, built on the fly) or a tar(.gz) file to the hub.
        `allow_ops`: ops the safety scan refuses that this publish may use (admin tokens)."""
        check_name(name)
        source = Path(source)
        metadata = {"description": description, "tags": tags or {}, "license": license,
                    "model_card": model_card, "aliases": list(aliases)}
        if allow_ops:
            metadata["allow_ops"] = list(allow_ops)
        if source.is_dir():
            root = saved_model_root(source)
            entries = ((f.path, f.size, _read_file(f.source, on_progress)) for f in scan_folder(root))
            body = tar_gz_chunks(entries, folders=empty_folders(root))
        elif source.is_file():
            body = _read_file(source, on_progress)
        else:
            raise InvalidModel(f"{source} does not exist")
        headers = {"Content-Type": "application/gzip",
                   "Modelhub-Metadata": json.dumps(metadata, ensure_ascii=True)}
        body_json = self._json("POST", f"/api/v1/models/{quote(name)}/versions", data=body,
                               headers=headers)
        return load_manifest(body_json, "published manifest")

    def safety(self, manifest: dict) -> dict | None:
        """The version's verdict, as the hub answered it with the manifest."""
        return manifest.get("safety")

    def scan(self, ref: str | Reference) -> dict:
        """Have the hub scan a version (and record the verdict of one published before the
        scan existed)."""
        ref = parse_reference(ref) if isinstance(ref, str) else ref
        selector = ref.version or ref.alias or "latest"
        return self._json("POST", self._version_path(ref.name, selector) + "/scan")

    def set_alias(self, name: str, alias: str, version: int, *,
                  expected_version: int | None = None) -> dict:
        return self._json("PUT", f"/api/v1/models/{quote(check_name(name))}/aliases/{quote(alias)}",
                          json={"version": version, "expected_version": expected_version})

    def remove_alias(self, name: str, alias: str) -> None:
        self._request("DELETE", f"/api/v1/models/{quote(check_name(name))}/aliases/{quote(alias)}")

    def delete_version(self, name: str, version: int) -> None:
        self._request("DELETE", self._version_path(check_name(name), version))

    # --- tokens, namespaces, the audit log (admin) ---------------------------------------------

    def create_token(self, grants: list[str], description: str = "", identity: str = "",
                     expires_in_days: int | None = None) -> tuple[str, dict]:
        """(the new token, its public record) for `grants` (`write:nlp`, `admin:*`)."""
        body = self._json("POST", "/api/v1/tokens", json={
            "grants": list(grants), "description": description, "identity": identity,
            "expires_in_days": expires_in_days})
        return body["token"], {"id": body["id"], "grants": body["grants"],
                               "identity": identity, "description": description}

    def list_tokens(self) -> list[dict]:
        return self._json("GET", "/api/v1/tokens")["tokens"]

    def revoke_token(self, token_id: str) -> None:
        self._request("DELETE", f"/api/v1/tokens/{quote(token_id)}")

    def namespaces(self) -> list[dict]:
        return self._json("GET", "/api/v1/namespaces")["namespaces"]

    def create_namespace(self, name: str, private: bool) -> dict:
        return self._json("POST", "/api/v1/namespaces", json={"name": name, "private": private})

    def set_namespace(self, name: str, private: bool) -> dict:
        return self._json("PATCH", f"/api/v1/namespaces/{quote(name)}", json={"private": private})

    def audit_records(self, namespace: str | None, since) -> list[dict]:
        params = {k: v for k, v in (("namespace", namespace),
                                    ("since", since.isoformat() if since else None)) if v}
        return self._json("GET", "/api/v1/audit", params=params)["records"]

    def audit_verify(self, namespace: str | None) -> list[str]:
        params = {"verify": "true", **({"namespace": namespace} if namespace else {})}
        return self._json("GET", "/api/v1/audit", params=params)["problems"]

    def gc(self, grace) -> dict:
        raise InvalidArgument("gc runs against a store (--store), not through a hub")


def _read_file(path: Path, on_progress: Progress | None) -> Iterator[bytes]:
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK_SIZE):
            if on_progress:
                on_progress(len(chunk))
            yield chunk

