"""The wire-format reader agrees with TensorFlow's own protobuf parser."""
from __future__ import annotations

import pytest

from hub.savedmodel.signatures import DTYPES, parse_saved_model, read_saved_model_info
from schemas.errors import InvalidModel


def tensorflow_view(path) -> tuple[dict, str]:
    from tensorflow.core.protobuf import saved_model_pb2
    import tensorflow as tf

    message = saved_model_pb2.SavedModel()
    message.ParseFromString((path / "saved_model.pb").read_bytes())
    graph = next(g for g in message.meta_graphs if "serve" in g.meta_info_def.tags)
    signatures = {}
    for name, sig in graph.signature_def.items():
        def specs(infos):
            return {key: {
                "name": info.name,
                "dtype": tf.dtypes.as_dtype(info.dtype).name if info.dtype else "invalid",
                "shape": None if info.tensor_shape.unknown_rank
                else [d.size for d in info.tensor_shape.dim],
            } for key, info in infos.items()}
        signatures[name] = {"method_name": sig.method_name, "inputs": specs(sig.inputs),
                            "outputs": specs(sig.outputs)}
    return signatures, graph.meta_info_def.tensorflow_version


@pytest.mark.parametrize("example", ["half_plus_two", "image_classifier", "multi_io"])
def test_signatures_match_tensorflow(examples, example):
    info = read_saved_model_info(examples[example])
    signatures, version = tensorflow_view(examples[example])
    assert info.signatures == signatures
    assert info.tensorflow_version == version
    assert "serve" in info.tags


def test_dtype_names_match_tensorflow():
    import tensorflow as tf

    for number, name in DTYPES.items():
        assert tf.dtypes.as_dtype(number).name == name


@pytest.mark.parametrize("data", [b"\x12\xff\xff\xff\x0f", b"\x0b", b"\x12\x05abc"])
def test_malformed_protobufs_are_invalid_models(data):
    with pytest.raises(InvalidModel):
        parse_saved_model(data)


def test_a_saved_model_without_meta_graphs_is_invalid():
    with pytest.raises(InvalidModel, match="no meta graph"):
        parse_saved_model(b"\x08\x01")
