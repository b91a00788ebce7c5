"""The registry over every store: publish, resolve, aliases, pull with verification, delete, gc."""
from __future__ import annotations

import io
import json
import tarfile
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest

from hub.registry import Registry
from hub.registry.layout import alias_key, blob_key, manifest_key, tombstone_key
from schemas.errors import (
    AliasNotFound,
    IntegrityError,
    InvalidArgument,
    InvalidManifest,
    InvalidModel,
    InvalidReference,
    ModelNotFound,
    PreconditionFailed,
    VersionInUse,
    VersionNotFound,
)


def tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes()
            for p in sorted(root.rglob("*")) if p.is_file()}


def blob_keys(registry: Registry) -> list[str]:
    return registry.store.list_keys("blobs/")


def test_publish_then_pull_round_trips_byte_identical_files(registry, examples, tmp_path):
    source = examples["image_classifier"]
    manifest = registry.publish(source, "classifier", description="cnn", tags={"task": "vision"},
                                license="Apache-2.0", model_card="# Card")
    assert (manifest["name"], manifest["version"]) == ("classifier", 1)
    assert manifest["tensorflow_version"]
    assert manifest["signatures"]["serving_default"]["inputs"]["image"]["shape"] == [-1, 32, 32, 3]
    assert {f["path"] for f in manifest["files"]} == set(tree(source))

    dest = tmp_path / "pulled"
    registry.pull("classifier/1", dest)
    assert tree(dest) == tree(source)
    assert registry.get("classifier") == manifest


def test_a_pulled_model_loads_and_predicts_the_same_numbers(registry, examples, tmp_path):
    import tensorflow as tf

    registry.publish(examples["image_classifier"], "classifier")
    registry.pull("classifier", tmp_path / "pulled")
    images = np.random.default_rng(0).random((4, 32, 32, 3), dtype=np.float32)
    original = tf.saved_model.load(str(examples["image_classifier"])).signatures["serving_default"]
    pulled = tf.saved_model.load(str(tmp_path / "pulled")).signatures["serving_default"]
    expected = original(image=tf.constant(images))["output_0"].numpy()
    np.testing.assert_array_equal(pulled(image=tf.constant(images))["output_0"].numpy(), expected)


def test_versions_count_up_and_identical_files_are_stored_once(registry, examples):
    registry.publish(examples["half_plus_two"], "hpt")
    blobs = blob_keys(registry)
    second = registry.publish(examples["half_plus_two"], "hpt")
    assert second["version"] == 2
    assert blob_keys(registry) == blobs
    assert registry.versions("hpt") == [1, 2]
    assert registry.resolve("hpt") == ("hpt", 2)


def test_publish_from_a_tar_gz_whose_files_sit_in_one_top_folder(registry, examples, tmp_path):
    archive = tmp_path / "model.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(examples["multi_io"], arcname="multi_io")
    manifest = registry.publish(archive, "multi")
    registry.pull("multi/1", tmp_path / "out")
    assert tree(tmp_path / "out") == tree(examples["multi_io"])
    inputs = manifest["signatures"]["serving_default"]["inputs"]
    assert {k: v["dtype"] for k, v in inputs.items()} == {
        "text": "string", "values": "float32", "count": "int64"}


def test_archive_streams_a_tar_gz_rooted_at_the_saved_model(registry, examples, tmp_path):
    registry.publish(examples["half_plus_two"], "hpt")
    _, chunks = registry.archive("hpt/1")
    with tarfile.open(fileobj=io.BytesIO(b"".join(chunks)), mode="r:gz") as tar:
        tar.extractall(tmp_path / "x", filter="data")
    assert tree(tmp_path / "x") == tree(examples["half_plus_two"])


def test_references_resolve_latest_version_and_alias(registry, examples):
    registry.publish(examples["half_plus_two"], "hpt", aliases=["prod"])
    registry.publish(examples["half_plus_two"], "hpt")
    assert registry.resolve("hpt") == ("hpt", 2)
    assert registry.resolve("hpt/1") == ("hpt", 1)
    assert registry.resolve("hpt@prod") == ("hpt", 1)
    for ref, error in [("nope", ModelNotFound), ("hpt/9", VersionNotFound),
                       ("hpt@canary", AliasNotFound), ("Bad Name", InvalidReference),
                       ("hpt/0", InvalidReference), ("hpt@1x", InvalidReference)]:
        with pytest.raises(error):
            registry.resolve(ref)


def test_aliases_move_with_compare_and_swap(registry, examples):
    registry.publish(examples["half_plus_two"], "hpt")
    registry.publish(examples["half_plus_two"], "hpt")
    registry.set_alias("hpt", "prod", 1)
    record = registry.set_alias("hpt", "prod", 2, expected_version=1)
    assert record["previous"] == 1
    assert registry.aliases("hpt") == {"prod": 2}
    with pytest.raises(PreconditionFailed):
        registry.set_alias("hpt", "prod", 1, expected_version=1)  # it points to 2 now
    with pytest.raises(VersionNotFound):
        registry.set_alias("hpt", "prod", 7)
    registry.remove_alias("hpt", "prod")
    assert registry.aliases("hpt") == {}
    with pytest.raises(AliasNotFound):
        registry.remove_alias("hpt", "prod")


def test_deleted_versions_are_never_reused_and_gc_frees_their_blobs(registry, examples):
    registry.publish(examples["half_plus_two"], "hpt")
    registry.publish(examples["multi_io"], "hpt")  # version 2: different files
    with_both = set(blob_keys(registry))
    registry.set_alias("hpt", "prod", 2)
    with pytest.raises(VersionInUse):
        registry.delete_version("hpt", 2)
    registry.remove_alias("hpt", "prod")
    registry.delete_version("hpt", 2)
    assert registry.versions("hpt") == [1]
    with pytest.raises(VersionNotFound):
        registry.get("hpt/2")

    assert registry.gc(timedelta(hours=1))["removed_blobs"] == 0  # within the grace period
    report = registry.gc(timedelta(0))
    only_first = {blob_key(f["sha256"]) for f in registry.get("hpt/1")["files"]}
    assert set(blob_keys(registry)) == only_first
    assert report["removed_blobs"] == len(with_both - only_first) > 0
    assert registry.publish(examples["half_plus_two"], "hpt")["version"] == 3


def test_a_corrupted_blob_fails_the_pull_naming_the_file_and_leaves_nothing(registry, examples,
                                                                             tmp_path):
    manifest = registry.publish(examples["half_plus_two"], "hpt")
    victim = next(f for f in manifest["files"] if f["path"] == "saved_model.pb")
    data = bytearray(registry.store.get_bytes(blob_key(victim["sha256"])))
    data[len(data) // 2] ^= 0xFF  # same size, one bit pattern flipped
    registry.store.put_bytes(blob_key(victim["sha256"]), bytes(data))

    dest = tmp_path / "out" / "hpt"
    with pytest.raises(IntegrityError, match="saved_model.pb of hpt/1"):
        registry.pull("hpt/1", dest)
    assert not dest.exists()
    assert list((tmp_path / "out").iterdir()) == []  # no staging folder left behind

    _, chunks = registry.archive("hpt/1")
    with pytest.raises(IntegrityError, match="saved_model.pb"):
        b"".join(chunks)


def test_a_missing_blob_is_an_integrity_error(registry, examples, tmp_path):
    manifest = registry.publish(examples["half_plus_two"], "hpt")
    registry.store.delete(blob_key(manifest["files"][0]["sha256"]))
    with pytest.raises(IntegrityError, match="missing"):
        registry.pull("hpt", tmp_path / "out")


def test_a_tampered_manifest_is_rejected_on_read(registry, examples):
    registry.publish(examples["half_plus_two"], "hpt")
    key = manifest_key("hpt", 1)
    body = json.loads(registry.store.get_bytes(key))
    body["files"][0]["sha256"] = "not-a-digest"
    registry.store.put_bytes(key, json.dumps(body).encode())
    with pytest.raises(InvalidManifest, match="sha256"):
        registry.get("hpt/1")


def test_pull_refuses_a_non_empty_destination(registry, examples, tmp_path):
    registry.publish(examples["half_plus_two"], "hpt")
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "mine.txt").write_text("keep me")
    with pytest.raises(InvalidArgument, match="not empty"):
        registry.pull("hpt", tmp_path / "busy")
    assert (tmp_path / "busy" / "mine.txt").read_text() == "keep me"
    (tmp_path / "empty").mkdir()
    registry.pull("hpt", tmp_path / "empty")
    assert (tmp_path / "empty" / "saved_model.pb").is_file()


def test_folders_that_are_not_saved_models_are_refused(registry, tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(InvalidModel, match="saved_model.pb"):
        registry.publish(tmp_path / "empty", "x")
    (tmp_path / "junk.pb").mkdir()
    (tmp_path / "junk.pb" / "saved_model.pb").write_bytes(b"\xff\xff\xff garbage")
    with pytest.raises(InvalidModel, match="not a valid SavedModel"):
        registry.publish(tmp_path / "junk.pb", "x")
    with pytest.raises(InvalidModel, match="does not exist"):
        registry.publish(tmp_path / "nowhere", "x")
    assert registry.store.list_keys("") == []


def test_symlinks_inside_a_model_folder_are_refused(registry, examples, tmp_path):
    import shutil

    folder = tmp_path / "model"
    shutil.copytree(examples["half_plus_two"], folder)
    (folder / "secret").symlink_to("/etc/passwd")
    with pytest.raises(InvalidModel, match="regular file"):
        registry.publish(folder, "x")
    assert registry.model_names() == []


def test_list_and_search_models(registry, examples):
    registry.publish(examples["half_plus_two"], "hpt", description="Adds two", tags={"kind": "toy"})
    registry.publish(examples["image_classifier"], "cnn", description="Images", aliases=["prod"])
    models = {m["name"]: m for m in registry.list_models()}
    assert set(models) == {"hpt", "cnn"}
    assert models["cnn"]["aliases"] == ["prod"] and models["cnn"]["latest"] == 1
    assert [m["name"] for m in registry.list_models("adds")] == ["hpt"]
    assert [m["name"] for m in registry.list_models("kind=toy")] == ["hpt"]
    assert registry.list_models("nothing-matches") == []


def test_a_file_written_to_during_publish_fails_it_and_leaves_no_version(registry, examples,
                                                                         tmp_path):
    import shutil

    folder = tmp_path / "model"
    shutil.copytree(examples["half_plus_two"], folder)
    weights = folder / "variables" / "variables.data-00000-of-00001"

    def tamper(_: int) -> None:
        with open(weights, "ab") as f:  # a training job still writing its checkpoint
            f.write(b"more")

    with pytest.raises(IntegrityError, match="changed while it was being stored"):
        registry.publish(folder, "hpt", on_progress=tamper)
    assert registry.model_names() == []
    weights.unlink()
    shutil.copy(examples["half_plus_two"] / weights.relative_to(folder), weights)
    assert registry.publish(folder, "hpt")["version"] == 1


class StoreProxy:
    """Passes everything to a real store; tests override single methods to inject a fault."""

    def __init__(self, store):
        self._store = store

    def __getattr__(self, name):
        return getattr(self._store, name)


def test_a_lost_response_to_the_manifest_write_does_not_publish_twice(store, examples):
    class LostResponse(StoreProxy):
        def put_if_absent(self, key, data):
            self._store.put_if_absent(key, data)  # the write lands...
            if key.endswith("/versions/1.json"):
                from schemas.errors import ObjectExists
                raise ObjectExists("retried after a lost response: 412")  # ...the answer does not

    registry = Registry(LostResponse(store))
    assert registry.publish(examples["half_plus_two"], "hpt")["version"] == 1
    assert registry.versions("hpt") == [1]


def test_gc_keeps_a_blob_that_a_publish_reused_after_gc_listed_it(registry, examples):
    registry.publish(examples["half_plus_two"], "hpt")
    registry.publish(examples["multi_io"], "hpt")
    registry.delete_version("hpt", 2)
    orphans = set(blob_keys(registry)) - {blob_key(f["sha256"]) for f in registry.get("hpt/1")["files"]}
    assert orphans
    real_store = registry.store

    class ReusedMeanwhile(StoreProxy):
        def list(self, prefix=""):
            listed = list(self._store.list(prefix))
            if prefix.startswith("blobs/"):
                import time
                time.sleep(1.1)  # S3 times have one-second resolution
                for key in orphans:  # a publisher reuses them right after gc listed them
                    self._store.touch(key)
            return iter(listed)

    from datetime import timedelta
    racing = Registry(ReusedMeanwhile(real_store))
    assert racing.gc(timedelta(seconds=1))["removed_blobs"] == 0
    assert orphans <= set(blob_keys(registry))


def test_gc_stops_when_the_store_cannot_be_listed(tmp_path, examples, monkeypatch):
    from datetime import timedelta

    from schemas.errors import StoreError
    from storage.local import LocalStore
    import storage.local

    registry = Registry(LocalStore(tmp_path / "store"))
    registry.publish(examples["half_plus_two"], "hpt")
    real_walk = storage.local.os.walk

    def unreadable_models(top, onerror=None, **kwargs):
        if str(top).endswith("models"):
            onerror(PermissionError(13, "Permission denied", str(top)))
            return iter(())
        return real_walk(top, onerror=onerror, **kwargs)

    monkeypatch.setattr(storage.local.os, "walk", unreadable_models)
    with pytest.raises(StoreError, match="Permission denied"):
        registry.gc(timedelta(0))
    monkeypatch.undo()
    assert registry.pull("hpt/1", tmp_path / "out")  # nothing was deleted


def test_an_alias_set_while_its_version_is_deleted_is_undone(store, examples):

    class DeleteMeanwhile(StoreProxy):
        def put_if_match(self, key, data, etag):
            if key.endswith("aliases/prod.json"):  # a delete passes its alias check right now
                self._store.put_if_absent(tombstone_key("hpt", 1), b"{}")
                self._store.delete("models/hpt/versions/1.json")
            return self._store.put_if_match(key, data, etag)

    Registry(store).publish(examples["half_plus_two"], "hpt")
    racing = Registry(DeleteMeanwhile(store))
    with pytest.raises(VersionNotFound):
        racing.set_alias("hpt", "prod", 1)
    assert Registry(store).aliases("hpt") == {}


def test_a_delete_backs_out_when_an_alias_arrives_meanwhile(store, examples):

    class AliasMeanwhile(StoreProxy):
        def put_if_absent(self, key, data):
            info = self._store.put_if_absent(key, data)
            if "/deleted/" in key:  # someone points prod at the version right after our check
                self._store.put_bytes(alias_key("hpt", "prod"), b'{"version": 1}')
            return info

    Registry(store).publish(examples["half_plus_two"], "hpt")
    with pytest.raises(VersionInUse):
        Registry(AliasMeanwhile(store)).delete_version("hpt", 1)
    registry = Registry(store)
    assert registry.versions("hpt") == [1] and registry.aliases("hpt") == {"prod": 1}
    assert registry.publish(examples["half_plus_two"], "hpt")["version"] == 2


def test_gc_carries_on_when_a_models_last_version_goes_during_the_run(registry, examples):
    from datetime import timedelta

    registry.publish(examples["half_plus_two"], "going")
    registry.publish(examples["multi_io"], "staying")
    real_store = registry.store

    class DeletedMeanwhile(StoreProxy):
        def list_keys(self, prefix=""):
            keys = self._store.list_keys(prefix)
            if prefix == "models/going/":  # gc has listed the model: now it goes
                real_store.delete("models/going/versions/1.json")
            return keys

    report = Registry(DeletedMeanwhile(real_store)).gc(timedelta(0))
    assert report["removed_blobs"] >= 0  # it finished
    assert registry.get("staying/1")


def test_empty_folders_survive_publish_pull_and_archive(registry, examples, tmp_path):
    import io
    import shutil
    import tarfile

    source = tmp_path / "model"
    shutil.copytree(examples["half_plus_two"], source)
    (source / "assets").mkdir(exist_ok=True)
    (source / "extra" / "deeper").mkdir(parents=True)
    manifest = registry.publish(source, "hpt")
    assert manifest["folders"] == ["assets", "extra/deeper"]

    def tree(root: Path) -> set[str]:
        return {p.relative_to(root).as_posix() + ("/" if p.is_dir() else "")
                for p in root.rglob("*")}

    registry.pull("hpt/1", tmp_path / "pulled")
    assert tree(tmp_path / "pulled") == tree(source)
    _, chunks = registry.archive("hpt/1")
    with tarfile.open(fileobj=io.BytesIO(b"".join(chunks)), mode="r:gz") as tar:
        tar.extractall(tmp_path / "unpacked", filter="data")
    assert tree(tmp_path / "unpacked") == tree(source)
    republished = registry.publish(tmp_path / "unpacked", "hpt")  # and back again
    assert republished["folders"] == manifest["folders"]
