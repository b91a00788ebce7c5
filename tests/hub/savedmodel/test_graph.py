"""The graph reader sees what TensorFlow's own protobuf parser sees in saved_model.pb."""
from __future__ import annotations

import pytest

from hub.savedmodel.graph import read_meta_graphs


def tensorflow_view(path) -> list:
    from tensorflow.core.protobuf import saved_model_pb2

    proto = saved_model_pb2.SavedModel()
    proto.ParseFromString((path / "saved_model.pb").read_bytes())
    return list(proto.meta_graphs)


@pytest.mark.parametrize("name", ["half_plus_two", "image_classifier", "multi_io"])
def test_nodes_functions_saver_and_signatures_match_tensorflows_parser(examples, name):
    ours = read_meta_graphs((examples[name] / "saved_model.pb").read_bytes())
    theirs = tensorflow_view(examples[name])
    assert len(ours) == len(theirs)
    for mine, real in zip(ours, theirs):
        assert mine.tags == list(real.meta_info_def.tags)
        assert {n.name: (n.op, list(n.input)) for n in real.graph_def.node} == {
            n.name: (n.op, n.inputs) for n in mine.nodes.values()}
        assert set(mine.functions) == {f.signature.name for f in real.graph_def.library.function}
        for function in real.graph_def.library.function:
            parsed = mine.functions[function.signature.name]
            assert parsed.args == [a.name for a in function.signature.input_arg]
            assert parsed.ret == dict(function.ret)
            assert {n.name: n.op for n in function.node_def} == {
                n.name: n.op for n in parsed.nodes.values()}
        assert mine.saver.filename_tensor == real.saver_def.filename_tensor_name
        assert mine.saver.restore_op == real.saver_def.restore_op_name
        assert set(mine.signatures) == set(real.signature_def)
        bound = {k: list(v.bound_inputs)
                 for k, v in real.object_graph_def.concrete_functions.items()}
        assert mine.objects.bound_inputs == bound
        assert len(mine.objects.kinds) == len(real.object_graph_def.nodes)


def test_function_references_in_attributes_are_found(examples):
    (graph,) = read_meta_graphs((examples["half_plus_two"] / "saved_model.pb").read_bytes())
    called = {f for node in graph.nodes.values() for attr in node.attrs.values()
              for f in attr.functions}
    assert called and called <= set(graph.functions)
