"""The TFLite conversion path: convert, check parity, store as an artifact, fetch it back."""
from __future__ import annotations

import base64
import hashlib
import io
import json
import zipfile
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
import requests
from click.testing import CliRunner

from hub.client import HubClient
from hub.conversion import DEFAULT_THRESHOLDS, artifact_name, convert
from hub.registry import Registry
from hub.registry.layout import artifact_key, artifacts_prefix, blob_key, manifest_key
from modelhub.cli import cli
from schemas.api import QUANTIZE_MODES
from schemas.errors import (
    ArtifactExists,
    ArtifactNotFound,
    Forbidden,
    IntegrityError,
    InvalidArgument,
    InvalidReference,
    ModelNotFound,
    NotCached,
    ParityFailed,
    UnsupportedOps,
    VersionNotFound,
)
from tests.support.processes import run_cli

#: Which modes each example's ops allow (multi_io: none, see its test).
CONVERTIBLE = [(example, mode) for example in ("half_plus_two", "image_classifier")
               for mode in QUANTIZE_MODES]


def tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes()
            for p in sorted(root.rglob("*")) if p.is_file()}


def stored_keys(registry: Registry) -> list[str]:
    return registry.store.list_keys("")


def run_tflite(data: bytes, signature: str = "serving_default", **inputs) -> dict:
    from ai_edge_litert.interpreter import Interpreter

    return Interpreter(model_content=data).get_signature_runner(signature)(**inputs)


def images(n: int, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).random((n, 32, 32, 3), dtype=np.float32)


@pytest.fixture(scope="module")
def determinant(tmp_path_factory) -> Path:
    from hub.examples import build_determinant

    return build_determinant(tmp_path_factory.mktemp("models") / "determinant")


@pytest.fixture(scope="module")
def shared(tmp_path_factory, examples, determinant) -> Registry:
    """One local registry holding every example at version 1, shared by tests that store
    nothing or each their own artifact. `scratch` (image_classifier) and `scratch-hpt`
    (half_plus_two) are never converted: failures are tried on them."""
    registry = Registry.open(str(tmp_path_factory.mktemp("shared") / "store"))
    for name, path in {**examples, "determinant": determinant,
                       "scratch": examples["image_classifier"],
                       "scratch-hpt": examples["half_plus_two"]}.items():
        registry.publish(path, name)
    return registry


@pytest.fixture(scope="module")
def converted(shared) -> dict[tuple[str, str], dict]:
    """Every example in every mode its ops allow, converted once for the module."""
    return {(example, mode): convert(shared, example, quantize=mode)
            for example, mode in CONVERTIBLE}


# --- naming -------------------------------------------------------------------------------------


def test_artifact_names_carry_the_mode_and_a_non_default_signature():
    assert artifact_name("int8") == "tflite-int8"
    assert artifact_name("none", "serving_default") == "tflite-none"
    assert artifact_name("float16", "classify_x_to_y") == "tflite-float16-classify_x_to_y"
    with pytest.raises(InvalidArgument, match="unknown quantization mode 'int4'"):
        artifact_name("int4")
    with pytest.raises(InvalidReference):
        artifact_name("dynamic", "no/slashes")


# --- converting the examples --------------------------------------------------------------------


@pytest.mark.parametrize("example,mode", CONVERTIBLE)
def test_every_example_converts_in_every_mode_its_ops_allow(shared, converted, example, mode):
    record = converted[(example, mode)]
    assert shared.artifacts(example, 1)[artifact_name(mode)] == record
    assert (record["path"], record["kind"]) == ("model.tflite", "tflite")
    data = shared.store.get_bytes(blob_key(record["sha256"]))
    assert hashlib.sha256(data).hexdigest() == record["sha256"] and len(data) == record["size"]

    meta = record["metadata"]
    assert meta["quantize"] == mode and meta["signature"] == "serving_default"
    assert meta["converter"].startswith("tensorflow 2.")
    assert (meta["samples"], meta["sample_count"]) == ("generated", 32)
    assert meta["select_tf_ops"] == [] and meta["io"] == "kept"
    assert meta["size_ratio"] == pytest.approx(record["size"] / meta["saved_model_size"], rel=1e-3)
    assert meta["size_ratio"] < 0.2  # a .tflite holds no graph-building machinery

    parity = meta["parity"]
    limits = DEFAULT_THRESHOLDS[mode]
    assert parity["run"] and parity["samples"] == 32 and parity["thresholds"] == limits
    assert 0 <= parity["max_rel_error"] <= limits["max_rel_error"]
    assert parity["max_abs_error"] >= 0
    if example == "image_classifier":  # rank-2 float probabilities: a classifier
        assert parity["top1_agreement"] >= limits["min_top1_agreement"]
    else:
        assert parity["top1_agreement"] is None


def test_the_stored_models_answer_like_the_saved_model_with_float_inputs(shared, converted,
                                                                          examples):
    import tensorflow as tf

    batch = images(4, seed=5)
    expected = tf.saved_model.load(str(examples["image_classifier"])).signatures[
        "serving_default"](image=tf.constant(batch))["output_0"].numpy()
    for mode in QUANTIZE_MODES:
        data = shared.store.get_bytes(blob_key(converted[("image_classifier", mode)]["sha256"]))
        from ai_edge_litert.interpreter import Interpreter

        runner = Interpreter(model_content=data).get_signature_runner("serving_default")
        # int8 too keeps float32 inputs and outputs: a drop-in for the SavedModel.
        assert runner.get_input_details()["image"]["dtype"] == np.float32
        assert runner.get_output_details()["output_0"]["dtype"] == np.float32
        actual = runner(image=batch)["output_0"]
        tolerance = {"none": 1e-5, "float16": 1e-3, "dynamic": 1e-2, "int8": 5e-2}[mode]
        np.testing.assert_allclose(actual, expected, atol=tolerance)
    hpt = shared.store.get_bytes(blob_key(converted[("half_plus_two", "none")]["sha256"]))
    np.testing.assert_allclose(run_tflite(hpt, x=np.array([1, 2, 5], np.float32))["y"],
                               [2.5, 3.0, 4.5])


def test_quantization_makes_the_classifier_smaller(converted):
    sizes = {mode: converted[("image_classifier", mode)]["size"] for mode in QUANTIZE_MODES}
    assert sizes["dynamic"] < sizes["float16"] < sizes["none"]
    assert sizes["int8"] < sizes["none"]


def test_a_model_with_ops_no_tflite_runtime_has_fails_naming_them(shared):
    before = stored_keys(shared)
    with pytest.raises(UnsupportedOps, match="StringUpper.*StringLength"):
        convert(shared, "multi_io", quantize="none")
    # Select TF ops do not help: TensorFlow Lite has no Flex kernel for StringUpper either.
    with pytest.raises(UnsupportedOps, match="neither TFLite nor TensorFlow's select ops can run: "
                                             "StringUpper"):
        convert(shared, "multi_io", quantize="dynamic", allow_select_tf_ops=True)
    assert stored_keys(shared) == before


def test_an_op_tflite_lacks_is_named_with_the_flag_that_allows_it(shared):
    before = stored_keys(shared)
    for mode in QUANTIZE_MODES:
        with pytest.raises(UnsupportedOps) as failure:
            convert(shared, "determinant", quantize=mode)
        message = str(failure.value)
        assert "MatrixDeterminant" in message and "--allow-select-tf-ops" in message
        assert "\n" not in message
    with pytest.raises(UnsupportedOps, match="ParseExampleV2"):
        convert(shared, "half_plus_two", quantize="none", signature="regress_x_to_y")
    assert stored_keys(shared) == before


def test_allowed_select_ops_are_stored_with_parity_recorded_as_not_run(shared):
    record = convert(shared, "determinant", quantize="float16", allow_select_tf_ops=True)
    meta = record["metadata"]
    assert meta["select_tf_ops"] == ["MatrixDeterminant"]
    assert meta["parity"]["run"] is False
    assert "no Flex delegate" in meta["parity"]["reason"]
    assert "MatrixDeterminant" in meta["parity"]["reason"]
    assert "tflite-float16" in shared.artifacts("determinant", 1)
    # int8 calibration has to run the model, which the calibrator cannot do with select ops.
    with pytest.raises(UnsupportedOps, match="cannot be calibrated for int8"):
        convert(shared, "determinant", quantize="int8", allow_select_tf_ops=True)
    assert "tflite-int8" not in shared.artifacts("determinant", 1)


def test_another_signature_becomes_its_own_artifact(shared):
    record = convert(shared, "half_plus_two", quantize="none", signature="classify_x_to_y",
                     allow_select_tf_ops=True)
    assert record["metadata"]["signature"] == "classify_x_to_y"
    assert record["metadata"]["select_tf_ops"] == ["ParseExampleV2"]
    assert "tflite-none-classify_x_to_y" in shared.artifacts("half_plus_two", 1)


# --- artifacts are create-only ------------------------------------------------------------------


def test_artifacts_are_create_only_and_never_touch_the_version(registry, examples, tmp_path):
    registry.publish(examples["half_plus_two"], "hpt")
    manifest_bytes = registry.store.get_bytes(manifest_key("hpt", 1))

    first = convert(registry, "hpt", quantize="dynamic")
    with pytest.raises(ArtifactExists, match="already has an artifact 'tflite-dynamic'"):
        convert(registry, "hpt/1", quantize="dynamic")
    with pytest.raises(ArtifactExists):  # the registry refuses it too, not only convert()
        registry.add_artifact("hpt", 1, "tflite-dynamic", tmp_path / "x", "tflite", {})
    second = convert(registry, "hpt", quantize="none")

    artifacts = registry.artifacts("hpt", 1)
    assert artifacts == {"tflite-dynamic": first, "tflite-none": second}
    assert "artifacts" not in registry.get("hpt/1")  # the manifest is never rewritten
    assert registry.store.get_bytes(manifest_key("hpt", 1)) == manifest_bytes
    registry.pull("hpt/1", tmp_path / "pulled")
    assert tree(tmp_path / "pulled") == tree(examples["half_plus_two"])


def test_an_artifact_for_a_missing_or_deleted_version_is_refused(registry, examples, tmp_path):
    registry.publish(examples["half_plus_two"], "hpt")
    registry.publish(examples["half_plus_two"], "hpt")
    registry.delete_version("hpt", 1)
    file = tmp_path / "model.tflite"
    file.write_bytes(b"tflite bytes")
    for version in (1, 3):
        with pytest.raises(VersionNotFound):
            registry.add_artifact("hpt", version, "tflite-none", file, "tflite", {})
    assert registry.store.list_keys(artifacts_prefix("hpt")) == []


# --- samples ------------------------------------------------------------------------------------


def npz(**arrays) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def test_int8_calibrates_on_a_samples_file_or_on_generated_samples(examples, tmp_path):
    registry = Registry.open(str(tmp_path / "store"))
    registry.publish(examples["image_classifier"], "ic")
    registry.publish(examples["image_classifier"], "ic")
    samples = tmp_path / "calibration.npz"
    samples.write_bytes(npz(image=images(12)))

    generated = convert(registry, "ic/1", quantize="int8")["metadata"]
    from_file = convert(registry, "ic/2", quantize="int8", samples=samples)["metadata"]
    assert (generated["samples"], generated["sample_count"]) == ("generated", 32)
    assert (from_file["samples"], from_file["sample_count"]) == ("file", 12)
    assert from_file["parity"]["samples"] == 12
    # Calibrated on different data, checked on different data: different figures.
    assert from_file["parity"]["max_abs_error"] != generated["parity"]["max_abs_error"]


def zip_of(**members: bytes) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def npy_header(shape: tuple) -> bytes:
    """Just the header of a float32 .npy of `shape`: it declares far more than it holds."""
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, {"descr": "<f4", "fortran_order": False,
                                                  "shape": shape})
    return buffer.getvalue()


BAD_SAMPLES = {
    "not an npz": (b"just some text", "is not an .npz archive"),
    "missing input": (npz(other=np.zeros((2, 3), np.float32)), "lacks input(s) image"),
    "extra array": (npz(image=images(2), label=np.zeros(2)), "not inputs of signature"),
    "wrong shape": (npz(image=images(2)[:, :16]), "has shape [2, 16, 32, 3]"),
    "wrong dtype": (npz(image=images(2).astype(np.float64)), "is float64, the signature wants float32"),
    "no samples": (npz(image=np.zeros((0, 32, 32, 3), np.float32)), "holds no samples"),
    "object arrays": (npz(image=np.array([None], dtype=object)), "object (pickled) arrays"),
    "a member that is not an array": (zip_of(x=b"hello"), "member 'x' is not an .npy array"),
    "too many samples": (zip_of(**{"image.npy": npy_header((2001, 32, 32, 3))}),
                         "2001 samples in 'image'; at most 2000"),
    "gigabytes declared": (zip_of(**{"image.npy": npy_header((1000, 512, 1024))}),
                           "holds 2000 MiB of arrays; at most 1024 MiB"),
}


@pytest.mark.parametrize("case", sorted(BAD_SAMPLES))
def test_bad_samples_are_one_line_errors_and_store_nothing(shared, tmp_path, case):
    data, message = BAD_SAMPLES[case]
    before = stored_keys(shared)
    path = tmp_path / "samples.npz"
    path.write_bytes(data)
    for samples in (path, data):  # a file (CLI, SDK) or its bytes (API)
        with pytest.raises(InvalidArgument) as failure:
            convert(shared, "scratch", quantize="int8", samples=samples)
        assert message in str(failure.value) and "\n" not in str(failure.value)
    assert stored_keys(shared) == before


@pytest.mark.parametrize("ref,options,error,message", [
    ("never-published", {}, ModelNotFound, "not found"),
    ("scratch/9", {}, VersionNotFound, "no version 9"),
    ("Bad Name", {}, InvalidReference, "invalid model name"),
    ("scratch", {"signature": "nope"}, InvalidArgument,
     "has no signature 'nope' (it has: serve, serving_default)"),
    ("scratch", {"quantize": "int4"}, InvalidArgument, "unknown quantization mode"),
    ("scratch", {"thresholds": {"max_error": 1}}, InvalidArgument, "unknown threshold"),
    ("scratch", {"thresholds": {"min_top1_agreement": 2}}, InvalidArgument, "share"),
    ("scratch", {"samples": "/nonexistent/samples.npz"}, InvalidArgument,
     "does not exist"),
])
def test_bad_requests_are_one_line_errors_and_store_nothing(shared, ref, options, error, message):
    before = stored_keys(shared)
    with pytest.raises(error, match=message.replace("(", r"\(").replace(")", r"\)")):
        convert(shared, ref, **{"quantize": "float16", **options})
    assert stored_keys(shared) == before


def test_parity_beyond_the_thresholds_fails_and_stores_nothing(shared):
    before = stored_keys(shared)
    with pytest.raises(ParityFailed, match=r"max rel error .* > 1e-09 \(output output_0\)"):
        convert(shared, "scratch", quantize="float16", thresholds={"max_rel_error": 1e-9})
    with pytest.raises(ParityFailed, match="max abs error"):
        convert(shared, "scratch-hpt", quantize="int8", thresholds={"max_abs_error": 0})
    assert stored_keys(shared) == before


# --- gc, delete, verified pulls -----------------------------------------------------------------


def test_gc_keeps_artifact_blobs_and_delete_version_removes_their_records(registry, examples,
                                                                          tmp_path):
    registry.publish(examples["half_plus_two"], "hpt")
    registry.publish(examples["half_plus_two"], "hpt")
    file = tmp_path / "model.tflite"
    file.write_bytes(b"a converted model, unique to this test")
    record = registry.add_artifact("hpt", 1, "tflite-none", file, "tflite", {"quantize": "none"})
    assert registry.artifacts("hpt", 1) == {"tflite-none": record}
    assert registry.artifacts("hpt", 2) == {}

    registry.gc(timedelta(0))
    assert registry.store.exists(blob_key(record["sha256"]))

    registry.delete_version("hpt", 1)
    assert registry.store.list_keys(artifacts_prefix("hpt")) == []
    registry.gc(timedelta(0))
    assert not registry.store.exists(blob_key(record["sha256"]))


def test_gc_removes_records_an_interrupted_delete_left_behind(registry, examples, tmp_path):
    registry.publish(examples["half_plus_two"], "hpt")
    registry.publish(examples["half_plus_two"], "hpt")
    file = tmp_path / "model.tflite"
    file.write_bytes(b"left behind")
    record = registry.add_artifact("hpt", 1, "tflite-none", file, "tflite", {})
    key = artifact_key("hpt", 1, "tflite-none")
    body = registry.store.get_bytes(key)
    registry.delete_version("hpt", 1)
    registry.store.put_bytes(key, body)  # as if the delete had stopped before the records
    report = registry.gc(timedelta(0))
    assert report["removed_artifact_records"] == 1
    assert not registry.store.exists(key) and not registry.store.exists(blob_key(record["sha256"]))


def test_gc_finds_left_behind_records_of_a_model_with_no_version_left(registry, examples, tmp_path):
    registry.publish(examples["half_plus_two"], "solo")
    file = tmp_path / "model.tflite"
    file.write_bytes(b"the last version's artifact")
    registry.add_artifact("solo", 1, "tflite-none", file, "tflite", {})
    key = artifact_key("solo", 1, "tflite-none")
    body = registry.store.get_bytes(key)
    registry.delete_version("solo", 1)
    registry.store.put_bytes(key, body)
    assert registry.gc(timedelta(0))["removed_artifact_records"] == 1
    assert not registry.store.exists(key)


def test_pull_artifact_writes_only_verified_bytes(registry, examples, tmp_path):
    registry.publish(examples["half_plus_two"], "hpt", aliases=["prod"])
    file = tmp_path / "model.tflite"
    file.write_bytes(b"tflite " * 1000)
    record = registry.add_artifact("hpt", 1, "tflite-none", file, "tflite", {})
    dest = tmp_path / "out" / "hpt.tflite"
    assert registry.pull_artifact("hpt@prod", "tflite-none", dest) == record
    assert dest.read_bytes() == file.read_bytes()

    with pytest.raises(ArtifactNotFound, match=r"no artifact 'tflite-int8' \(it has: tflite-none\)"):
        registry.pull_artifact("hpt", "tflite-int8", tmp_path / "out" / "other.tflite")
    data = bytearray(file.read_bytes())
    data[10] ^= 0xFF
    registry.store.put_bytes(blob_key(record["sha256"]), bytes(data))
    corrupted = tmp_path / "out" / "corrupted.tflite"
    with pytest.raises(IntegrityError, match="artifact tflite-none of hpt/1"):
        registry.pull_artifact("hpt", "tflite-none", corrupted)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["hpt.tflite"]


# --- the command line ---------------------------------------------------------------------------


def test_cli_converts_shows_and_pulls_tflite(examples, tmp_path):
    store = str(tmp_path / "store")
    runner = CliRunner()

    def modelhub(*args: str, ok: bool = True):
        result = runner.invoke(cli, ["--store", store, *args])
        assert (result.exit_code == 0) == ok, result.output
        return result

    modelhub("publish", str(examples["image_classifier"]), "--name", "ic")
    samples = tmp_path / "calibration.npz"
    samples.write_bytes(npz(image=images(8)))
    out = modelhub("convert", "ic", "--to", "tflite", "--quantize", "int8",
                   "--samples", str(samples)).output.splitlines()
    assert out[0].startswith("ic/1 tflite-int8: ") and "x the SavedModel" in out[0]
    assert out[1].startswith("parity on 8 samples from calibration.npz: max abs error")
    assert "top-1 agreement" in out[1]
    record = json.loads(modelhub("convert", "ic/1", "--to", "tflite", "--quantize", "none",
                                 "--json").output)
    assert record["metadata"]["samples"] == "generated"

    shown = modelhub("show", "ic").output
    assert "artifact tflite-int8: " in shown and "(int8, max rel error" in shown
    assert "artifact tflite-none: " in shown
    assert set(json.loads(modelhub("show", "ic", "--json").output)["artifacts"]) == {
        "tflite-int8", "tflite-none"}

    dest = tmp_path / "ic.tflite"
    assert modelhub("pull", "ic", "--format", "tflite", "--quantize", "none",
                    "-o", str(dest)).output.strip() == str(dest)
    assert hashlib.sha256(dest.read_bytes()).hexdigest() == record["sha256"]
    assert "already exists" in modelhub("pull", "ic", "--format", "tflite", "--quantize", "none",
                                        "-o", str(dest), ok=False).output
    missing = modelhub("pull", "ic", "--format", "tflite", "--quantize", "float16", ok=False)
    assert missing.output == ("Error: ic/1 has no artifact 'tflite-float16' (it has: tflite-int8, "
                              "tflite-none); make it with `modelhub convert ic/1 --to tflite "
                              "--quantize float16`\n")
    again = modelhub("convert", "ic", "--to", "tflite", "--quantize", "none", ok=False)
    assert again.output.startswith("Error: ic/1 already has an artifact 'tflite-none'")
    bad = modelhub("convert", "ic", "--to", "tflite", "--samples", str(tmp_path / "nope.npz"),
                   ok=False)
    assert bad.output.count("\n") == 1 and "does not exist" in bad.output


def test_pulling_tflite_without_a_mode_takes_the_one_there_is(examples, tmp_path):
    store = str(tmp_path / "store")
    runner = CliRunner()

    def modelhub(*args: str):
        result = runner.invoke(cli, ["--store", store, *args])
        assert result.exit_code == 0, result.output
        return result

    modelhub("publish", str(examples["half_plus_two"]), "--name", "hpt")
    modelhub("convert", "hpt", "--to", "tflite", "--quantize", "float16")
    dest = tmp_path / "hpt.tflite"
    pulled = modelhub("pull", "hpt", "--format", "tflite", "-o", str(dest))
    assert "pulling the float16 conversion (the only conversion" in pulled.output
    assert dest.stat().st_size > 0
    modelhub("convert", "hpt", "--to", "tflite", "--quantize", "none")
    second = modelhub("pull", "hpt", "--format", "tflite", "-o", str(tmp_path / "again.tflite"))
    assert "pulling the float16 conversion (of float16, none" in second.output


def test_the_real_command_prints_one_line_when_an_op_is_missing(shared, tmp_path):
    result = run_cli("--store", shared.store.uri, "convert", "determinant", "--to", "tflite")
    assert result.returncode == 1
    # The converter's pages of diagnostics stay out of the user's terminal.
    assert result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith("Error: determinant/1 (signature serving_default) uses ops "
                                    "TFLite has no builtin kernels for: MatrixDeterminant; pass "
                                    "--allow-select-tf-ops")


# --- through a hub: HTTP API, SDK, CLI ----------------------------------------------------------


def auth(server, scope: str) -> dict:
    return {"Authorization": f"Bearer {server.tokens[scope]}"}


def test_the_hub_converts_lists_and_serves_artifacts(hub_server, examples, unique_name,
                                                      tmp_path):
    client = HubClient(hub_server.url, hub_server.tokens["write"], cache=tmp_path / "cache")
    client.publish(examples["half_plus_two"], unique_name, aliases=["prod"])
    record = client.convert(f"{unique_name}@prod", quantize="dynamic")
    assert record["metadata"]["parity"]["run"] and record["path"] == "model.tflite"
    assert client.artifacts(unique_name, 1) == {"tflite-dynamic": record}
    with pytest.raises(ArtifactExists):
        client.convert(f"{unique_name}/1", quantize="dynamic")

    base = f"{hub_server.url}/api/v1/models/{unique_name}/versions/1"
    manifest = requests.get(base).json()
    assert manifest["artifacts"]["tflite-dynamic"]["sha256"] == record["sha256"]
    download = requests.get(f"{base}/artifacts/tflite-dynamic")
    assert download.status_code == 200
    assert download.headers["ETag"] == f'"{record["sha256"]}"'
    assert hashlib.sha256(download.content).hexdigest() == record["sha256"]
    assert int(download.headers["Content-Length"]) == record["size"]
    assert f'filename="{unique_name}-1-tflite-dynamic.tflite"' in download.headers["Content-Disposition"]
    assert "immutable" in download.headers["Cache-Control"]
    part = requests.get(f"{base}/artifacts/tflite-dynamic", headers={"Range": "bytes=4-11"})
    assert part.status_code == 206 and part.content == download.content[4:12]
    assert requests.get(f"{base}/artifacts/tflite-dynamic",
                        headers={"If-None-Match": download.headers["ETag"]}).status_code == 304
    np.testing.assert_allclose(run_tflite(download.content, x=np.array([4.0], np.float32))["y"],
                               [4.0], rtol=1e-2)

    # SDK: into the cache (verified), then to a path; a cached artifact needs no request.
    dest = tmp_path / "hpt.tflite"
    assert client.pull_artifact(f"{unique_name}@prod", "tflite-dynamic", dest) == record
    assert dest.read_bytes() == download.content
    cached_record, cached_file = client.fetch_artifact(f"{unique_name}/1", "tflite-dynamic")
    assert cached_file.read_bytes() == download.content and cached_file.name == "model.tflite"
    offline = HubClient(hub_server.url, cache=client.cache, offline=True)
    assert offline.fetch_artifact(f"{unique_name}/1", "tflite-dynamic") == (cached_record, cached_file)
    assert offline.fetch_artifact(unique_name, "tflite-dynamic")[0] == record
    with pytest.raises(NotCached):
        offline.fetch_artifact(f"{unique_name}/1", "tflite-int8")


def test_the_hub_takes_samples_in_the_body_and_refuses_bad_requests(hub_server, examples,
                                                                     unique_name, tmp_path):
    client = HubClient(hub_server.url, hub_server.tokens["write"], cache=tmp_path / "cache")
    client.publish(examples["half_plus_two"], unique_name)
    samples = tmp_path / "x.npz"
    samples.write_bytes(npz(x=np.linspace(0, 4, 20, dtype=np.float32)))
    record = client.convert(unique_name, quantize="int8", samples=samples)
    assert (record["metadata"]["samples"], record["metadata"]["sample_count"]) == ("file", 20)

    url = f"{hub_server.url}/api/v1/models/{unique_name}/versions/1/artifacts"
    for body, status, code in [
        ({"quantize": "int4"}, 400, "invalid_argument"),
        ({"quantize": "none", "colour": "blue"}, 400, "invalid_argument"),
        ({"quantize": "none", "samples": "not base64!"}, 400, "invalid_argument"),
        ({"quantize": "none", "samples": base64.b64encode(b"not an npz").decode()}, 400,
         "invalid_argument"),
        ({"quantize": "none", "signature": "nope"}, 400, "invalid_argument"),
        ({"quantize": "none", "thresholds": {"max_rel_error": -1}}, 400, "invalid_argument"),
        ({"quantize": "none", "thresholds": {"max_abs_error": 0, "max_rel_error": 0}}, 201, None),
        ({"quantize": "float16", "signature": "classify_x_to_y"}, 422, "unsupported_ops"),
    ]:
        response = requests.post(url, json=body, headers=auth(hub_server, "write"))
        assert response.status_code == status, (body, response.text)
        if code:
            assert response.json()["error"]["code"] == code
    created = requests.post(url, json={"quantize": "float16"}, headers=auth(hub_server, "write"))
    assert created.status_code == 201
    assert created.json()["artifact"] == "tflite-float16"
    assert created.headers["Location"].endswith("/versions/1/artifacts/tflite-float16")
    with pytest.raises(Forbidden):
        HubClient(hub_server.url, hub_server.tokens["read"], cache=tmp_path / "c").convert(
            unique_name, quantize="none")
    assert requests.get(f"{url}/tflite-int4").json()["error"]["code"] == "artifact_not_found"
    assert requests.post(f"{hub_server.url}/api/v1/models/never-published/versions/1/artifacts",
                         json={}, headers=auth(hub_server, "write")).status_code == 404
    listed = requests.get(url).json()
    assert sorted(listed["artifacts"]) == ["tflite-float16", "tflite-int8", "tflite-none"]


def test_the_cli_converts_and_pulls_tflite_through_a_hub(hub_server, examples, unique_name,
                                                         tmp_path):
    HubClient(hub_server.url, hub_server.tokens["write"], cache=tmp_path / "c").publish(
        examples["image_classifier"], unique_name)
    env = {"MODELHUB_URL": hub_server.url, "MODELHUB_TOKEN": hub_server.tokens["write"],
           "MODELHUB_CACHE": str(tmp_path / "cache"), "MODELHUB_STORE": "/nonexistent"}
    converted = run_cli("convert", unique_name, "--to", "tflite", "--quantize", "float16", env=env)
    assert converted.returncode == 0, converted.stderr
    assert converted.stdout.startswith(f"{unique_name}/1 tflite-float16: ")
    dest = tmp_path / "model.tflite"
    pulled = run_cli("pull", unique_name, "--format", "tflite", "--quantize", "float16",
                     "-o", str(dest), env=env)
    assert pulled.returncode == 0, pulled.stderr
    assert pulled.stdout == f"{dest}\n"
    outputs = run_tflite(dest.read_bytes(), image=images(1))["output_0"]
    assert outputs.shape == (1, 10)
    shown = run_cli("show", unique_name, env=env)
    assert "artifact tflite-float16" in shown.stdout
