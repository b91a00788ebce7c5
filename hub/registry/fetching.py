"""Reading a version's bytes back: single files (whole or ranges), the whole folder, a tar.gz.
Every byte is checked against its recorded sha256 before it is handed over whole."""
from __future__ import annotations

import zlib
from pathlib import Path
from typing import Callable, Iterator

from schemas.errors import FileNotInVersion, IntegrityError, ObjectNotFound
from storage import ObjectStore
from storage.hashing import TrailingHasher

from ..refs import Reference
from .archive import tar_gz_chunks
from .files import check_digest, parallel_map, staged_folder, verified_chunks
from .layout import blob_key

Progress = Callable[[int], None]


class Fetching:
    store: ObjectStore

    def file_entry(self, manifest: dict, path: str) -> dict:
        for entry in manifest["files"]:
            if entry["path"] == path:
                return entry
        raise FileNotInVersion(f"{manifest['name']}/{manifest['version']} has no file {path!r}")

    def file_chunks(self, manifest: dict, entry: dict, start: int = 0,
                    end: int | None = None) -> Iterator[bytes]:
        """The bytes of one file of a version. A whole file is verified as it streams (the
        iterator raises `IntegrityError` at the end on a mismatch); a range cannot be, so whoever
        reassembles ranges checks the sha256 of the whole."""
        label = f"file {entry['path']} of {manifest['name']}/{manifest['version']}"
        return self._blob_chunks(entry, label, start, end)

    def _blob_chunks(self, entry: dict, label: str, start: int = 0,
                     end: int | None = None) -> Iterator[bytes]:
        try:
            chunks = self.store.open(blob_key(entry["sha256"]), start, end)
        except ObjectNotFound:
            raise IntegrityError(f"{label} is missing from the store") from None
        if start or end is not None:
            return chunks
        return verified_chunks(chunks, entry["sha256"], entry["size"], label)

    def _fetch_blob(self, entry: dict, target: Path, label: str,
                    on_progress: Progress | None) -> None:
        """Download the blob of a file entry or artifact record to `target`, hashing as it
        arrives; raises IntegrityError if it is missing or its sha256 or size differ."""
        hasher = TrailingHasher(target, on_progress)
        try:
            self.store.get_file(blob_key(entry["sha256"]), target, hasher.advance)
            check_digest(label, entry["sha256"], entry["size"], hasher.finish())
        except ObjectNotFound:
            raise IntegrityError(f"{label} is missing from the store") from None
        finally:
            hasher.close()

    def pull(self, ref: str | Reference, dest: str | Path, *,
             on_progress: Progress | None = None) -> dict:
        """Download a version into folder `dest`, verifying every file before `dest` appears."""
        manifest = self.get(ref)
        with staged_folder(dest) as staging:
            def fetch(entry: dict) -> None:
                target = staging / entry["path"]
                target.parent.mkdir(parents=True, exist_ok=True)
                label = f"file {entry['path']} of {manifest['name']}/{manifest['version']}"
                self._fetch_blob(entry, target, label, on_progress)

            parallel_map(fetch, manifest["files"])
            for folder in manifest["folders"]:
                (staging / folder).mkdir(parents=True, exist_ok=True)
        return manifest

    def archive(self, ref: str | Reference) -> tuple[dict, Iterator[bytes]]:
        """The manifest and a tar.gz stream of the version whose root is the SavedModel root.

        Each file is verified as it streams; a mismatch raises mid-stream, so a consumer must
        treat the archive as valid only once the iterator finishes."""
        manifest = self.get(ref)
        entries = ((e["path"], e["size"], self.file_chunks(manifest, e))
                   for e in manifest["files"])
        return manifest, tar_gz_chunks(entries, self._compression_level(manifest),
                                       manifest["folders"])

    def _compression_level(self, manifest: dict) -> int:
        """Deflate only if the weights compress. Trained float weights barely do, and deflate
        runs at ~30 MB/s on them, far below a network's speed, while storing runs at ~300 MB/s;
        so the largest file's first MiB decides."""
        largest = max(manifest["files"], key=lambda e: e["size"])
        try:
            sample = self.store.get_bytes(blob_key(largest["sha256"]), 0, 1024 * 1024)
        except ObjectNotFound:
            return 1  # the stream itself reports the missing file
        if not sample or len(zlib.compress(sample, 1)) < 0.9 * len(sample):
            return 1
        return 0
