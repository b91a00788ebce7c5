"""The client's local cache of versions fetched from a hub.

    <root>/blobs/sha256/<2 hex>/<digest>       file contents, verified before they get this name
    <root>/manifests/<name>/<version>.json     a version's manifest, written after its blobs
    <root>/snapshots/<name>/<version>/...      the SavedModel folder: hard links to the blobs
    <root>/refs/<name>/<alias or "latest">     the version that ref last resolved to (offline use)
    <root>/artifacts/<name>/<version>/<a>.json the record of artifact a (e.g. tflite-int8), written
                                               after its blob
    <root>/artifacts/<name>/<version>/<a>/<path>  its file (e.g. model.tflite): a hard link to the blob

Every file is downloaded to a temp file unique to this process and thread, then renamed into
place. Locks are not used on purpose: on network file systems (NFS, SMB, FUSE mounts of object
stores) they are often silently no-ops, while a rename within one folder stays atomic. Several
processes fetching the same version each end with a complete copy, and since every name holds
only verified bytes, whichever rename lands last leaves the same content.

A version counts as cached only when its manifest is present and every file it lists is present
with its recorded size in the snapshot; a non-empty folder means nothing by itself.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import stat
import threading
import uuid
from pathlib import Path

from schemas.errors import NotCached
from schemas.manifest import (
    dump_artifact,
    dump_manifest,
    load_artifact,
    load_manifest,
    name_folder,
)

from ..refs import Reference, is_version_text


def _unique_suffix() -> str:
    return f"{os.getpid()}-{threading.get_ident()}-{uuid.uuid4().hex[:8]}"


class ModelCache:
    def __init__(self, root: str | os.PathLike):
        self.root = Path(os.path.expanduser(root))

    # --- paths --------------------------------------------------------------------------------

    def blob_path(self, sha256: str) -> Path:
        return self.root / "blobs" / "sha256" / sha256[:2] / sha256

    def temp_path(self, sha256: str) -> Path:
        """Where this process/thread downloads a blob before it is verified and renamed."""
        return self.blob_path(sha256).with_name(f".{sha256}.{_unique_suffix()}.part")

    def manifest_path(self, name: str, version: int) -> Path:
        return self.root / "manifests" / name_folder(name) / f"{version}.json"

    def snapshot_path(self, name: str, version: int) -> Path:
        return self.root / "snapshots" / name_folder(name) / str(version)

    def artifact_record_path(self, name: str, version: int, artifact: str) -> Path:
        return self.root / "artifacts" / name_folder(name) / str(version) / f"{artifact}.json"

    def artifact_file_path(self, name: str, version: int, artifact: str, record: dict) -> Path:
        return (self.root / "artifacts" / name_folder(name) / str(version) / artifact /
                record["path"])

    def _ref_path(self, ref: Reference) -> Path:
        return self.root / "refs" / name_folder(ref.name) / (ref.alias or "latest")

    # --- blobs --------------------------------------------------------------------------------

    def has_blob(self, entry: dict) -> bool:
        try:
            return self.blob_path(entry["sha256"]).stat().st_size == entry["size"]
        except FileNotFoundError:
            return False

    def commit_blob(self, temp: Path, sha256: str) -> Path:
        """Give a verified temp file its content-addressed name (atomic; last rename wins)."""
        target = self.blob_path(sha256)
        os.chmod(temp, stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH)  # guard against edits in place
        os.replace(temp, target)
        return target

    # --- manifests, refs, snapshots -----------------------------------------------------------

    def _write_atomically(self, path: Path, data: bytes) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        temp = path.with_name(f".{path.name}.{_unique_suffix()}")
        temp.write_bytes(data)
        os.replace(temp, path)

    def save_manifest(self, manifest: dict) -> None:
        body = json.dumps(dump_manifest(manifest), sort_keys=True).encode()
        self._write_atomically(self.manifest_path(manifest["name"], manifest["version"]), body)

    def cached_manifest(self, name: str, version: int) -> dict | None:
        path = self.manifest_path(name, version)
        try:
            return load_manifest(json.loads(path.read_bytes()), str(path))
        except (FileNotFoundError, ValueError):  # missing or damaged: fetch it again
            return None

    def remember_ref(self, ref: Reference, version: int) -> None:
        if ref.version is None:
            self._write_atomically(self._ref_path(ref), str(version).encode())

    def complete_snapshot(self, manifest: dict) -> Path | None:
        """The snapshot folder if every file of the manifest is in it with the right size."""
        folder = self.snapshot_path(manifest["name"], manifest["version"])
        if not all((folder / f).is_dir() for f in manifest["folders"]):
            return None
        for entry in manifest["files"]:
            try:
                if (folder / entry["path"]).stat().st_size != entry["size"]:
                    return None
            except FileNotFoundError:
                return None
        return folder

    def build_snapshot(self, manifest: dict) -> Path:
        """Link every (already cached) blob into the snapshot folder, atomically as a whole."""
        final = self.snapshot_path(manifest["name"], manifest["version"])
        if self.complete_snapshot(manifest):
            return final
        final.parent.mkdir(parents=True, exist_ok=True)
        temp = final.with_name(f".{final.name}.{_unique_suffix()}")
        try:
            for entry in manifest["files"]:
                target = temp / entry["path"]
                target.parent.mkdir(parents=True, exist_ok=True)
                blob = self.blob_path(entry["sha256"])
                try:
                    os.link(blob, target)
                except OSError:  # a file system without hard links: copy instead
                    shutil.copyfile(blob, target)
            for folder in manifest["folders"]:
                (temp / folder).mkdir(parents=True, exist_ok=True)
            if final.exists() and not self.complete_snapshot(manifest):
                shutil.rmtree(final, ignore_errors=True)  # an incomplete leftover
            with contextlib.suppress(OSError):  # another process finished first: keep theirs
                os.rename(temp, final)
        finally:
            shutil.rmtree(temp, ignore_errors=True)
        if not self.complete_snapshot(manifest):
            raise NotCached(f"could not assemble {manifest['name']}/{manifest['version']} "
                            f"in the cache at {self.root}")
        return final

    # --- artifacts ----------------------------------------------------------------------------

    def save_artifact(self, name: str, version: int, artifact: str, record: dict) -> None:
        body = json.dumps(dump_artifact(record), sort_keys=True).encode()
        self._write_atomically(self.artifact_record_path(name, version, artifact), body)

    def link_artifact(self, name: str, version: int, artifact: str, record: dict) -> Path:
        """Give an (already cached) artifact blob its file name, atomically."""
        final = self.artifact_file_path(name, version, artifact, record)
        final.parent.mkdir(parents=True, exist_ok=True)
        temp = final.with_name(f".{final.name}.{_unique_suffix()}")
        try:
            try:
                os.link(self.blob_path(record["sha256"]), temp)
            except OSError:  # a file system without hard links: copy instead
                shutil.copyfile(self.blob_path(record["sha256"]), temp)
            os.replace(temp, final)
        finally:
            temp.unlink(missing_ok=True)
        return final

    def cached_artifact(self, name: str, version: int, artifact: str) -> tuple[dict, Path] | None:
        """(record, file) if the artifact's record and file (of the recorded size) are here."""
        path = self.artifact_record_path(name, version, artifact)
        try:
            record = load_artifact(json.loads(path.read_bytes()), str(path))
            file = self.artifact_file_path(name, version, artifact, record)
            if file.stat().st_size == record["size"]:
                return record, file
        except (FileNotFoundError, ValueError):  # missing or damaged: fetch it again
            pass
        return None

    def _offline_version(self, ref: Reference) -> int | None:
        """The version `ref` names, or that an online fetch resolved it to; None for a bare name
        never resolved (the caller picks the newest cached version that fits)."""
        if ref.version is not None:
            return ref.version
        try:
            return int(self._ref_path(ref).read_text())
        except FileNotFoundError:
            if ref.alias is not None:
                raise NotCached(f"{ref} has never been resolved online, so offline mode "
                                f"cannot resolve it (cache {self.root})") from None
            return None

    def lookup_artifact(self, ref: Reference, artifact: str) -> tuple[dict, Path]:
        """Answer an artifact request from the cache alone (offline mode): `name/N`, a ref that
        a full fetch resolved before, or, for `name`, the newest version with that artifact."""
        version = self._offline_version(ref)
        if version is None:
            folder = self.root / "artifacts" / name_folder(ref.name)
            version = max((int(p.parent.name) for p in folder.glob(f"*/{artifact}.json")
                            if is_version_text(p.parent.name)), default=None)
        found = version is not None and self.cached_artifact(ref.name, version, artifact)
        if not found:
            raise NotCached(f"artifact {artifact} of {ref} is not in the cache at {self.root}")
        return found

    def lookup(self, ref: Reference) -> tuple[dict, Path]:
        """Answer a reference from the cache alone (offline mode)."""
        version = self._offline_version(ref)
        if version is None:
            folder = self.root / "manifests" / name_folder(ref.name)
            versions = [int(p.stem) for p in folder.glob("*.json") if is_version_text(p.stem)]
            if not versions:
                raise NotCached(f"no version of {ref.name!r} is in the cache at {self.root}")
            version = max(versions)
        manifest = self.cached_manifest(ref.name, version)
        snapshot = manifest and self.complete_snapshot(manifest)
        if not snapshot:
            raise NotCached(f"{ref.name}/{version} is not completely in the cache at {self.root}")
        return manifest, snapshot
