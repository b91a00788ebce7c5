"""The executable parts of a SavedModel, read from `saved_model.pb` without TensorFlow: every
meta graph's nodes, its function library, the saver, the signatures, the assets, the init ops
and the object graph's concrete functions. This is what the safety scan (`scan`) reads.

Field numbers come from tensorflow/core/protobuf/{saved_model,meta_graph,saver,
saved_object_graph}.proto and framework/{graph,node_def,function,op_def,attr_value,tensor}.proto;
`tests/hub/savedmodel/test_graph.py` checks the result against TensorFlow's own parser.

Attributes are kept as raw bytes and decoded only when a rule asks for one (`Attr`), so a graph
with large constants is read without decoding them.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

from .wire import LEN, VARINT, fields, map_entry, text, varint


@dataclass
class Attr:
    """An AttrValue, decoded on demand: its string, its function references, its tensor."""

    raw: memoryview

    @cached_property
    def s(self) -> bytes | None:
        for number, wire, value in fields(self.raw):
            if number == 2 and wire == LEN:
                return bytes(value)
        return None

    @cached_property
    def strings(self) -> list[bytes]:
        """`list(s)` values."""
        found = []
        for number, wire, value in fields(self.raw):
            if number == 1 and wire == LEN:
                found += [bytes(v) for n, w, v in fields(value) if n == 2 and w == LEN]
        return found

    @cached_property
    def functions(self) -> list[str]:
        """Every function this attribute names: `func`, `list(func)`, and those named in their
        own attributes, at any depth."""
        found = []
        for number, wire, value in fields(self.raw):
            if number == 10 and wire == LEN:  # func: NameAttrList
                found += _name_attr_list_functions(value)
            elif number == 1 and wire == LEN:  # list: ListValue, its func = 9
                for n, w, v in fields(value):
                    if n == 9 and w == LEN:
                        found += _name_attr_list_functions(v)
        return found

    @cached_property
    def tensor_strings(self) -> list[bytes] | None:
        """The string values of a `tensor` attribute (a Const's value); None if it has none."""
        for number, wire, value in fields(self.raw):
            if number == 8 and wire == LEN:
                return [bytes(v) for n, w, v in fields(value) if n == 8 and w == LEN]
        return None


def _name_attr_list_functions(buf: memoryview) -> list[str]:
    name, nested = "", []
    for number, wire, value in fields(buf):
        if number == 1 and wire == LEN:
            name = text(value)
        elif number == 2 and wire == LEN:
            _, attr = map_entry(value)
            nested += Attr(attr).functions
    return [name, *nested] if name else nested


@dataclass
class Node:
    name: str
    op: str
    inputs: list[str]
    device: str
    attrs: dict[str, Attr]

    @property
    def data_inputs(self) -> list[str]:
        return [i for i in self.inputs if not i.startswith("^")]


def _node(buf: memoryview) -> Node:
    name = op = device = ""
    inputs, attrs = [], {}
    for number, wire, value in fields(buf):
        if number == 1:
            name = text(value)
        elif number == 2:
            op = text(value)
        elif number == 3:
            inputs.append(text(value))
        elif number == 4:
            device = text(value)
        elif number == 5:
            key, attr = map_entry(value)
            attrs[key] = Attr(attr)
    return Node(name, op, inputs, device, attrs)


@dataclass
class Function:
    """A FunctionDef: its signature's argument and output names, its nodes, what it returns."""

    name: str
    args: list[str]
    outputs: list[str]
    nodes: dict[str, Node]
    ret: dict[str, str]


def _arg_names(buf: memoryview) -> str:
    return next((text(v) for n, _, v in fields(buf) if n == 1), "")


def _function(buf: memoryview) -> Function:
    name, args, outputs, nodes, ret = "", [], [], {}, {}
    for number, wire, value in fields(buf):
        if number == 1 and wire == LEN:  # signature: OpDef
            for n, w, v in fields(value):
                if n == 1:
                    name = text(v)
                elif n == 2:
                    args.append(_arg_names(v))
                elif n == 3:
                    outputs.append(_arg_names(v))
        elif number == 3 and wire == LEN:
            node = _node(value)
            nodes[node.name] = node
        elif number == 4 and wire == LEN:
            key, target = map_entry(value)
            ret[key] = text(target)
    return Function(name, args, outputs, nodes, ret)


@dataclass
class Saver:
    filename_tensor: str = ""
    save_tensor: str = ""
    restore_op: str = ""
    version: int = 0  # 0 LEGACY, 1 V1, 2 V2


@dataclass
class ObjectGraph:
    """What the TF2 loader calls itself: each object's kind (and an asset's index), and each
    concrete function's captured inputs (`bound_inputs`: indexes of objects)."""

    kinds: list[tuple[str, int]] = field(default_factory=list)
    bound_inputs: dict[str, list[int]] = field(default_factory=dict)


#: SavedObject's `kind` oneof (saved_object_graph.proto).
_OBJECT_KINDS = {4: "user_object", 5: "asset", 6: "function", 7: "variable",
                 8: "bare_concrete_function", 9: "constant", 10: "resource",
                 12: "captured_tensor"}


def _object_graph(buf: memoryview) -> ObjectGraph:
    graph = ObjectGraph()
    for number, wire, value in fields(buf):
        if number == 1 and wire == LEN:
            kind, index = "", 0
            for n, w, v in fields(value):
                if n in _OBJECT_KINDS and w == LEN:
                    kind = _OBJECT_KINDS[n]
                    if n == 5:
                        index = next((i for f, ww, i in fields(v) if f == 1 and ww == VARINT), 0)
            graph.kinds.append((kind, index))
        elif number == 2 and wire == LEN:
            key, concrete = map_entry(value)
            bound = []
            for n, w, v in fields(concrete):
                if n == 2 and w == VARINT:
                    bound.append(v)
                elif n == 2 and w == LEN:  # packed
                    pos = 0
                    while pos < len(v):
                        item, pos = varint(v, pos)
                        bound.append(item)
            graph.bound_inputs[key] = bound
    return graph


def _tensor_name(buf: memoryview) -> str:
    """TensorInfo.name."""
    return next((text(v) for n, w, v in fields(buf) if n == 1 and w == LEN), "")


def _asset_file_def(buf: memoryview) -> tuple[str, str]:
    tensor, filename = "", ""
    for number, wire, value in fields(buf):
        if number == 1 and wire == LEN:
            tensor = _tensor_name(value)
        elif number == 2 and wire == LEN:
            filename = text(value)
    return tensor, filename


@dataclass
class MetaGraph:
    tags: list[str] = field(default_factory=list)
    nodes: dict[str, Node] = field(default_factory=dict)
    functions: dict[str, Function] = field(default_factory=dict)
    saver: Saver = field(default_factory=Saver)
    #: signature name -> the tensor names of its inputs and outputs
    signatures: dict[str, list[str]] = field(default_factory=dict)
    #: (tensor name, file name under assets/) per asset, in asset_file_def order
    assets: list[tuple[str, str]] = field(default_factory=list)
    #: node names of the TF1 init collections (saved_model_main_op, legacy_init_op)
    init_nodes: list[str] = field(default_factory=list)
    objects: ObjectGraph = field(default_factory=ObjectGraph)


INIT_COLLECTIONS = ("saved_model_main_op", "legacy_init_op")


def _collection(meta: MetaGraph, key: str, buf: memoryview, legacy_assets: list) -> None:
    for number, wire, value in fields(buf):
        if number == 1 and wire == LEN and key in INIT_COLLECTIONS:  # node_list
            meta.init_nodes += [text(v) for n, w, v in fields(value) if n == 1]
        elif number == 5 and wire == LEN and key == "saved_model_assets":  # any_list of Any
            for n, w, any_value in fields(value):
                if n == 1 and w == LEN:
                    packed = next((v for f, ww, v in fields(any_value) if f == 2), None)
                    if packed is not None:
                        legacy_assets.append(_asset_file_def(packed))


def _meta_graph(buf: memoryview) -> MetaGraph:
    meta, legacy_assets = MetaGraph(), []
    for number, wire, value in fields(buf):
        if number == 1 and wire == LEN:  # MetaInfoDef
            meta.tags += [text(v) for n, w, v in fields(value) if n == 4]
        elif number == 2 and wire == LEN:  # GraphDef
            for n, w, v in fields(value):
                if n == 1 and w == LEN:
                    node = _node(v)
                    meta.nodes[node.name] = node
                elif n == 2 and w == LEN:  # FunctionDefLibrary
                    for fn, fw, fv in fields(v):
                        if fn == 1 and fw == LEN:
                            function = _function(fv)
                            meta.functions[function.name] = function
        elif number == 3 and wire == LEN:
            for n, w, v in fields(value):
                if n == 1:
                    meta.saver.filename_tensor = text(v)
                elif n == 2:
                    meta.saver.save_tensor = text(v)
                elif n == 3:
                    meta.saver.restore_op = text(v)
                elif n == 7 and w == VARINT:
                    meta.saver.version = v
        elif number == 4 and wire == LEN:
            key, collection = map_entry(value)
            _collection(meta, key, collection, legacy_assets)
        elif number == 5 and wire == LEN:
            key, signature = map_entry(value)
            tensors = []
            for n, w, v in fields(signature):
                if n in (1, 2) and w == LEN:
                    _, info = map_entry(v)
                    tensors.append(_tensor_name(info))
            meta.signatures[key] = tensors
        elif number == 6 and wire == LEN:
            meta.assets.append(_asset_file_def(value))
        elif number == 7 and wire == LEN:
            meta.objects = _object_graph(value)
    # TF1's SavedModelBuilder lists assets in a collection; loaders use it when asset_file_def
    # is empty.
    if not meta.assets:
        meta.assets = legacy_assets
    return meta


def read_meta_graphs(data: bytes) -> list[MetaGraph]:
    """Every meta graph of a binary `saved_model.pb`. Raises wire.DecodeError."""
    return [_meta_graph(value) for number, wire, value in fields(memoryview(data))
            if number == 2 and wire == LEN]
