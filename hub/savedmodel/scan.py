"""The graph safety scan: a SavedModel is a program, and this decides, without TensorFlow and
without running anything, whether it only computes.

What is scanned. Every node of every meta graph's graph, and every function of its library
(reachable or not: TF2's loader calls resource creators and initializers that only the object
graph names), with every function named anywhere (call-by-name nodes, `f`, `then_branch`,
`body`, dataset functions, nested in other functions' attributes). A reference to a function the
library does not have is itself a finding.

How it decides. By an allowlist of op types that only compute (`allowlist.toml`, one reviewed
data file, a reason per group). An op not on it is unsafe, so a TensorFlow release that adds an
op cannot open a hole. A few ops are allowed only with certain attributes (`CONDITIONAL` below:
`PrintV2` to stdout/stderr/log, never `file://`; `CacheDataset` in memory; ...).

The loader's own file I/O. Two kinds of file op are legitimate, and only where the loader
supplies the path:

- Rule A, checkpoints (`RestoreV2`, `SaveV2`, `MergeV2Checkpoints`). Loaders restore variables
  by feeding `<export>/variables/variables` into the tensor `saver_def.filename_tensor_name`
  names, and running `saver_def.restore_op_name`. So such an op is allowed only if its path
  traces back (through the saver's own suffix arithmetic: `StringJoin` with constant suffixes,
  `ShardedFilename` with constant shard counts, `Pack`, `Identity`, and the call into the
  saver's function) to that filename tensor and nothing else, and the op can run only for the
  saver: nothing a signature, an init op or the object graph runs can reach it. A path from a
  signature input, a constant (`/tmp/x`) or anything computed is refused, and so is the saver's
  own save function called from a signature.
- Rule B, vocabulary files (`InitializeTableFromTextFile[V2]`). Loaders feed every asset
  tensor (`asset_file_def`, or the TF1 `saved_model_assets` collection) with
  `<export>/assets/<filename>`, and TF2's loader binds an asset object to a function's captured
  input. So the filename must trace only to asset tensors: through `Identity`, a string variable
  that only asset tensors are assigned to, function arguments at every call site, and the object
  graph's bound inputs (a captured asset). A constant path or a signature input is refused.
  Because loaders simply join the asset's file name onto `assets/`, every asset name must also be
  a plain relative path inside `assets/` (an absolute name or `..` would read any file).

Anything else that opens a path, whatever feeds it, is not on the allowlist.

What this does not cover: memory-safety bugs in kernels reachable with crafted inputs, resource
exhaustion by huge shapes or endless loops, and custom-op libraries (not in the registry, so
refused). Serving confines its workers besides (`serving/confinement.py`).
"""
from __future__ import annotations

import hashlib
import posixpath
import sys
import time
from collections import defaultdict
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path

from .graph import MetaGraph, Node, read_meta_graphs
from .wire import DecodeError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

SCANNER_VERSION = 1
CALL_OPS = {"PartitionedCall", "StatefulPartitionedCall"}
#: Checkpoint ops and the inputs that hold their paths (rule A).
CHECKPOINT_OPS = {"RestoreV2": (0,), "SaveV2": (0,), "MergeV2Checkpoints": (0, 1)}
#: Text-file table initializers and the input that holds the file name (rule B).
TABLE_FILE_OPS = {"InitializeTableFromTextFileV2": 1, "InitializeTableFromTextFile": 1}
PRINT_STREAMS = {b"stdout", b"stderr", b"log(info)", b"log(warning)", b"log(error)"}
SAVER = "SAVER_FILENAME"
GRAPH = None  # the location of top-level nodes (functions are named by their name)


# --- the allowlist ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Allowlist:
    allowed: frozenset[str]
    conditional: frozenset[str]
    loader: frozenset[str]
    #: why a known-dangerous op is refused, for the message
    denied: dict[str, str]
    digest: str

    @classmethod
    def parse(cls, data: bytes) -> "Allowlist":
        table = tomllib.loads(data.decode("utf-8"))
        allowed = {op for group in table["groups"].values() for op in group["ops"]}
        denied = {op: group["reason"] for group in table.get("denied", {}).values()
                  for op in group.get("ops", [])}
        overlap = allowed & set(denied)
        if overlap:
            raise ValueError(f"ops both allowed and denied: {sorted(overlap)}")
        return cls(frozenset(allowed), frozenset(table.get("conditional", {})),
                   frozenset(table["loader"]["ops"]), denied,
                   hashlib.sha256(data).hexdigest()[:16])


@lru_cache(maxsize=1)
def default_allowlist() -> Allowlist:
    return Allowlist.parse(resources.files(__package__).joinpath("allowlist.toml").read_bytes())


# --- findings and the verdict -------------------------------------------------------------------


@dataclass(frozen=True)
class Finding:
    op: str
    node: str
    #: the function it sits in; None for the top-level graph (and for checks of the folder)
    function: str | None
    #: what runs it: "signature NAME", "init op", "saver", "loader (object graph)", or nothing
    reached_from: tuple[str, ...]
    reason: str

    def describe(self) -> str:
        where = f"function {self.function}" if self.function else "the graph"
        reached = ", ".join(self.reached_from) or "nothing (still refused)"
        return f"{self.op} (node {self.node} in {where}, run by {reached}): {self.reason}"

    def to_record(self) -> dict:
        return {"op": self.op, "node": self.node, "function": self.function,
                "reached_from": list(self.reached_from), "reason": self.reason}


@dataclass(frozen=True)
class Verdict:
    findings: tuple[Finding, ...]
    allowlist: str
    op_types: int = 0
    nodes: int = 0
    functions: int = 0
    seconds: float = 0.0

    @property
    def safe(self) -> bool:
        return not self.findings

    @property
    def unsafe_ops(self) -> list[str]:
        return sorted({f.op for f in self.findings})

    def refused_beyond(self, allowed_ops) -> list[Finding]:
        """The findings that `allowed_ops` (an admin's allowance) does not cover."""
        allowed = set(allowed_ops or ())
        return [f for f in self.findings if f.op not in allowed]

    def summary(self, limit: int = 5) -> str:
        """One line naming the offending ops and where they are."""
        if self.safe:
            return "safe"
        shown = "; ".join(f.describe() for f in self.findings[:limit])
        more = len(self.findings) - limit
        return shown + (f"; and {more} more" if more > 0 else "")

    def to_record(self) -> dict:
        return {"safe": self.safe, "scanner": SCANNER_VERSION, "allowlist": self.allowlist,
                "findings": [f.to_record() for f in self.findings],
                "op_types": self.op_types, "nodes": self.nodes, "functions": self.functions}


# --- the scan -----------------------------------------------------------------------------------


SAVED_MODEL_BINARY = "saved_model.pb"
OTHER_FORMATS = ("saved_model.pbtxt", "saved_model.cpb")


def scan_saved_model(folder: str | Path, allowlist: Allowlist | None = None) -> Verdict:
    """Scan the SavedModel in a local `folder`: its `saved_model.pb`, and its asset files (each
    must be a regular file inside `assets/`)."""
    folder = Path(folder)
    others = [name for name in OTHER_FORMATS if (folder / name).exists()]
    try:
        data = (folder / SAVED_MODEL_BINARY).read_bytes()
    except FileNotFoundError:
        data = None
    assets_dir = (folder / "assets").resolve()
    files = {p.relative_to(folder).as_posix() for p in folder.rglob("*")
             if p.is_file() and not p.is_symlink()
             and (not p.is_relative_to(folder / "assets")
                  or p.resolve().is_relative_to(assets_dir))}
    return scan_graph(data, files, others, allowlist)


def scan_graph(data: bytes | None, files: set[str], other_formats: list[str] = (),
               allowlist: Allowlist | None = None) -> Verdict:
    """Scan a `saved_model.pb` (`data`; None when there is none) given the version's file paths
    (relative, `/`-separated: every asset must be one of them)."""
    started = time.perf_counter()
    allowlist = allowlist or default_allowlist()
    findings: list[Finding] = []
    if other_formats:
        findings.append(Finding(other_formats[0], other_formats[0], None, (), (
            "only a binary saved_model.pb can be scanned (a second graph file, or a text or "
            "chunked one, could differ from what is scanned); save the model again in binary "
            "form")))
    graphs = []
    if data is None:
        if not other_formats:
            findings.append(Finding("saved_model.pb", SAVED_MODEL_BINARY, None, (),
                                    "the version holds no saved_model.pb"))
    else:
        try:
            graphs = read_meta_graphs(data)
        except DecodeError as e:
            findings.append(Finding("saved_model.pb", SAVED_MODEL_BINARY, None, (),
                                    f"not a valid SavedModel protobuf: {e}"))
    op_types, nodes, functions = set(), 0, 0
    for graph in graphs:
        scanner = _GraphScan(graph, files, allowlist)
        findings += scanner.run()
        op_types |= scanner.op_types
        nodes += len(graph.nodes) + sum(len(f.nodes) for f in graph.functions.values())
        functions += len(graph.functions)
    return Verdict(tuple(findings), allowlist.digest, len(op_types), nodes, functions,
                   round(time.perf_counter() - started, 4))


def _reference(ref: str, top_level: bool) -> tuple[str, str | None, int]:
    """(node or argument, output name, index) of an input reference. At the top level refs are
    `node:index`; in a function `node:output:index`, and a bare name is an argument."""
    ref = ref.lstrip("^")
    parts = ref.split(":")
    if top_level:
        return parts[0], None, int(parts[1]) if len(parts) > 1 else 0
    if len(parts) == 1:
        return parts[0], None, 0
    return parts[0], parts[1], int(parts[2]) if len(parts) > 2 else 0


@dataclass
class _GraphScan:
    graph: MetaGraph
    #: the version's file paths; an asset must be one of them
    files: set[str]
    allowlist: Allowlist
    findings: list[Finding] = field(default_factory=list)
    op_types: set[str] = field(default_factory=set)

    # --- what runs what -------------------------------------------------------------------------

    def run(self) -> list[Finding]:
        g = self.graph
        self.saver_filename = g.saver.filename_tensor.split(":")[0]
        self.asset_tensors = {tensor.split(":")[0]: i for i, (tensor, _) in enumerate(g.assets)}
        # who references each function, and how: (location, node, attribute or "call")
        self.callers: dict[str, list[tuple[str | None, Node, str]]] = defaultdict(list)
        for location, nodes in self._locations():
            for node in nodes.values():
                if node.op in g.functions:
                    self.callers[node.op].append((location, node, "call"))
                for key, attr in node.attrs.items():
                    for callee in attr.functions:
                        kind = "call" if node.op in CALL_OPS and key == "f" else f"{node.op}.{key}"
                        self.callers[callee].append((location, node, kind))
                        if callee not in g.functions:
                            self._flag(location, node, f"its attribute {key} names a function "
                                       f"({callee}) that the model does not contain")
        self._label_reachability()
        self._check_assets()
        self._check_saver()
        for location, nodes in self._locations():
            for node in nodes.values():
                self._check_node(location, node)
        return self.findings

    def _locations(self):
        yield GRAPH, self.graph.nodes
        for name, function in self.graph.functions.items():
            yield name, function.nodes

    def _label_reachability(self) -> None:
        """Which roots run each top-level node and each function: signatures, init ops, the
        saver, and the object graph's functions (the TF2 loader calls those itself)."""
        g = self.graph
        roots: dict[str, set[str]] = defaultdict(set)
        for name, tensors in g.signatures.items():
            label = "init op" if name == "__saved_model_init_op" else f"signature {name}"
            roots[label] |= {t.split(":")[0].lstrip("^") for t in tensors}
        roots["init op"] |= {n.split(":")[0].lstrip("^") for n in g.init_nodes}
        roots["saver"] |= {t.split(":")[0].lstrip("^")
                           for t in (g.saver.save_tensor, g.saver.restore_op) if t}
        self.node_labels: dict[str, set[str]] = defaultdict(set)
        self.function_labels: dict[str, set[str]] = defaultdict(set)
        for label, names in roots.items():
            for node in self._closure(names):
                self.node_labels[node].add(label)
        pending = [(fn, {"loader (object graph)"}) for fn in g.objects.bound_inputs]
        for name, labels in self.node_labels.items():
            pending += [(fn, labels) for fn in self._called_by(g.nodes[name])]
        while pending:
            fn, labels = pending.pop()
            if fn not in g.functions or labels <= self.function_labels[fn]:
                continue
            self.function_labels[fn] |= labels
            for node in g.functions[fn].nodes.values():
                pending += [(callee, set(self.function_labels[fn]))
                            for callee in self._called_by(node)]

    def _called_by(self, node: Node) -> list[str]:
        found = [node.op] if node.op in self.graph.functions else []
        for attr in node.attrs.values():
            found += attr.functions
        return found

    def _closure(self, names: set[str]) -> set[str]:
        """The top-level nodes these nodes depend on (data and control inputs), themselves
        included."""
        seen, stack = set(), [n for n in names if n in self.graph.nodes]
        while stack:
            name = stack.pop()
            if name in seen:
                continue
            seen.add(name)
            for ref in self.graph.nodes[name].inputs:
                source = _reference(ref, True)[0]
                if source in self.graph.nodes and source not in seen:
                    stack.append(source)
        return seen

    def _labels(self, location: str | None, node: Node) -> tuple[str, ...]:
        labels = self.node_labels.get(node.name, set()) if location is GRAPH \
            else self.function_labels.get(location, set())
        return tuple(sorted(labels))

    def _flag(self, location: str | None, node: Node, reason: str, op: str | None = None) -> None:
        self.findings.append(Finding(op or node.op, node.name, location,
                                     self._labels(location, node), reason))

    # --- the folder and the saver ---------------------------------------------------------------

    def _check_assets(self) -> None:
        for tensor, filename in self.graph.assets:
            plain = (filename and not filename.startswith(("/", "\\")) and "\\" not in filename
                     and "://" not in filename and ".." not in filename.split("/")
                     and posixpath.normpath(filename) == filename)
            if not plain or f"assets/{filename}" not in self.files:
                self.findings.append(Finding("asset", tensor, None, ("loader",), (
                    f"asset file name {filename!r} is not a plain file inside assets/: loaders "
                    "join it onto assets/, so it could name any file")))

    def _check_saver(self) -> None:
        name = self.saver_filename
        if not name:
            return
        node = self.graph.nodes.get(name)
        if node is None or node.op not in ("Placeholder", "PlaceholderWithDefault", "Const"):
            self.findings.append(Finding("saver", name, None, ("loader",), (
                "saver_def names a filename tensor that is not a placeholder the loader feeds")))
        elif any(label != "saver" for label in self.node_labels.get(name, ())):
            self.findings.append(Finding("saver", name, None, self._labels(GRAPH, node), (
                "the saver's filename tensor is used by a signature or an init op, so a "
                "request or the model could choose where checkpoints are read or written")))

    # --- one node -------------------------------------------------------------------------------

    def _check_node(self, location: str | None, node: Node) -> None:
        op = node.op
        if op in self.graph.functions:
            return  # a call by name: the callee is scanned on its own
        self.op_types.add(op)
        if node.device and "/job:" in node.device and "/job:localhost" not in node.device:
            self._flag(location, node, f"it is placed on another machine ({node.device})")
        if op in self.allowlist.allowed:
            return
        if op in self.allowlist.conditional:
            problem = self._conditional_problem(location, node)
            if problem:
                self._flag(location, node, problem)
            return
        if op in self.allowlist.loader and op in CHECKPOINT_OPS:
            self._check_checkpoint_op(location, node)
            return
        if op in self.allowlist.loader and op in TABLE_FILE_OPS:
            self._check_table_file_op(location, node)
            return
        reason = self.allowlist.denied.get(op)
        self._flag(location, node, f"not on the allowlist ({reason})" if reason else
                   "not on the allowlist of ops that only compute")

    def _conditional_problem(self, location: str | None, node: Node) -> str | None:
        attrs = node.attrs
        if node.op == "PrintV2":
            stream = attrs["output_stream"].s if "output_stream" in attrs else b"stderr"
            if stream not in PRINT_STREAMS:
                return f"it prints to {stream.decode(errors='replace')!r}, not to stdout/stderr/log"
            return None
        if node.op in ("CacheDataset", "CacheDatasetV2"):
            if self._constant_strings(location, node.data_inputs[1]) != [b""]:
                return "it caches the dataset in a file"
            return None
        if node.op == "FixedUnigramCandidateSampler":
            if "vocab_file" in attrs and attrs["vocab_file"].s:
                return "it reads a vocabulary file named by its vocab_file attribute"
            return None
        if node.op in ("DecodeProtoV2", "EncodeProto"):
            source = attrs["descriptor_source"].s if "descriptor_source" in attrs else b"local://"
            if source != b"local://" and not source.startswith(b"bytes://"):
                return "its descriptor_source names a file"
            return None
        return "it needs a review before it can be allowed"

    # --- rule A: checkpoints --------------------------------------------------------------------

    def _check_checkpoint_op(self, location: str | None, node: Node) -> None:
        sources = set()
        for index in CHECKPOINT_OPS[node.op]:
            sources |= self._trace(location, node.data_inputs[index], "checkpoint", frozenset())
        if sources != {SAVER}:
            self._flag(location, node, "its path does not come only from the loader's "
                       f"checkpoint prefix (it comes from: {', '.join(sorted(sources))})")
            return
        labels = set(self._labels(location, node))
        if labels != {"saver"}:
            self._flag(location, node, "it is a checkpoint op that something other than the "
                       "loader's saver can run")

    # --- rule B: vocabulary files ---------------------------------------------------------------

    def _check_table_file_op(self, location: str | None, node: Node) -> None:
        sources = self._trace(location, node.data_inputs[TABLE_FILE_OPS[node.op]], "asset",
                              frozenset())
        if not sources or any(not s.startswith("ASSET:") for s in sources):
            self._flag(location, node, "it reads a file that is not one of the model's assets "
                       f"(its file name comes from: {', '.join(sorted(sources))})")

    # --- tracing a path back to where it comes from ---------------------------------------------

    def _nodes(self, location: str | None) -> dict[str, Node]:
        return self.graph.nodes if location is GRAPH else self.graph.functions[location].nodes

    def _constant_strings(self, location: str | None, ref: str) -> list[bytes] | None:
        name = _reference(ref, location is GRAPH)[0]
        node = self._nodes(location).get(name)
        if node is None or node.op != "Const" or "value" not in node.attrs:
            return None
        return node.attrs["value"].tensor_strings

    def _trace(self, location: str | None, ref: str, mode: str, seen: frozenset) -> set[str]:
        """The sources of the string tensor `ref` in `location`: SAVER (the saver's filename
        tensor), ASSET:i, or a description of anything else (which fails either rule)."""
        key = (location, ref.lstrip("^"))
        if key in seen:
            return set()
        seen = seen | {key}
        name, output, index = _reference(ref, location is GRAPH)
        if location is not GRAPH and output is None:
            return self._trace_argument(location, name, mode, seen)
        node = self._nodes(location).get(name)
        if node is None:
            return {f"a missing node {name}"}
        if location is GRAPH:
            if name == self.saver_filename:
                return {SAVER}
            if name in self.asset_tensors:
                return {f"ASSET:{self.asset_tensors[name]}"}
        op = node.op
        if op == "Const":
            values = node.attrs["value"].tensor_strings if "value" in node.attrs else None
            return {"the constant " + ",".join(v.decode(errors="replace") for v in values or [])}
        if op.startswith("Placeholder"):
            return {f"the input {node.name}"}
        if op in ("Identity", "Snapshot"):
            return self._trace(location, node.data_inputs[0], mode, seen)
        if mode == "checkpoint":
            traced = self._trace_checkpoint_path(location, node, seen)
            if traced is not None:
                return traced
        if mode == "asset" and op == "ReadVariableOp":
            return self._trace_variable(location, node.data_inputs[0], seen)
        if op in CALL_OPS or op in self.graph.functions:
            callee = op if op in self.graph.functions else (node.attrs["f"].functions or [""])[0]
            function = self.graph.functions.get(callee)
            if function is None or index >= len(function.outputs):
                return {f"an unknown function {callee}"}
            return self._trace(callee, function.ret.get(function.outputs[index], ""), mode, seen)
        return {f"a {op} op"}

    def _trace_checkpoint_path(self, location, node: Node, seen) -> set[str] | None:
        """The saver's own arithmetic on the prefix: `prefix + ".part"` (or `"_temp/part"`),
        then `ShardedFilename(that, shard, count)`, then `Pack` of the shards."""
        if node.op == "StringJoin":
            separator = node.attrs["separator"].s if "separator" in node.attrs else b""
            inputs = node.data_inputs
            if separator or not inputs:
                return {"a StringJoin with a separator"}
            if not all(self._is_constant_suffix(location, ref) for ref in inputs[1:]):
                return {"a StringJoin with a computed part"}
            return self._trace(location, inputs[0], "checkpoint", seen)
        if node.op == "ShardedFilename":
            inputs = node.data_inputs
            if not all(self._constant_node(location, ref) for ref in inputs[1:3]):
                return {"a ShardedFilename with computed shards"}
            return self._trace(location, inputs[0], "checkpoint", seen)
        if node.op == "Pack":
            sources = set()
            for ref in node.data_inputs:
                sources |= self._trace(location, ref, "checkpoint", seen)
            return sources
        return None

    def _constant_node(self, location, ref: str) -> bool:
        node = self._nodes(location).get(_reference(ref, location is GRAPH)[0])
        return node is not None and node.op == "Const"

    def _is_constant_suffix(self, location, ref: str) -> bool:
        """A constant string that cannot climb out of the prefix's folder (".part",
        "_temp/part"), or a Select between two such constants."""
        node = self._nodes(location).get(_reference(ref, location is GRAPH)[0])
        if node is None:
            return False
        if node.op == "Const":
            values = node.attrs["value"].tensor_strings if "value" in node.attrs else None
            return values is not None and all(b".." not in v and not v.startswith(b"/")
                                              for v in values)
        if node.op in ("Select", "SelectV2"):
            return all(self._is_constant_suffix(location, r) for r in node.data_inputs[1:3])
        if node.op == "Identity":
            return self._is_constant_suffix(location, node.data_inputs[0])
        return False

    def _trace_variable(self, location, handle: str, seen) -> set[str]:
        """A file name read from a string variable (TF2's way of holding an asset path): the
        variable must be a top-level VarHandleOp that is only read, and only assigned asset
        tensors."""
        if location is not GRAPH:
            return {"a variable created inside a function"}
        variable = self.graph.nodes.get(_reference(handle, True)[0])
        if variable is None or variable.op != "VarHandleOp":
            return {"a variable that is not a VarHandleOp"}
        sources = set()
        for node in self.graph.nodes.values():
            uses = [i for i, ref in enumerate(node.data_inputs)
                    if _reference(ref, True)[0] == variable.name]
            if not uses:
                continue
            if node.op in ("ReadVariableOp", "VarIsInitializedOp"):
                continue
            if node.op == "AssignVariableOp" and uses == [0]:
                sources |= self._trace(GRAPH, node.data_inputs[1], "asset", seen)
            else:
                return {f"a variable also used by {node.op}"}
        return sources or {"a variable nothing assigns"}

    def _trace_argument(self, function: str, argument: str, mode: str, seen) -> set[str]:
        """An argument of a function: what every call site passes, and for functions the TF2
        loader calls itself, what the object graph binds to it."""
        args = self.graph.functions[function].args
        if argument not in args:
            return {f"an unknown argument {argument}"}
        index = args.index(argument)
        sources = set()
        for caller, node, kind in self.callers.get(function, []):
            if kind != "call":
                sources.add(f"an argument given by {kind}")
                continue
            inputs = node.data_inputs
            if index >= len(inputs):
                sources.add("an argument no call gives")
                continue
            sources |= self._trace(caller, inputs[index], mode, seen)
        bound = self.graph.objects.bound_inputs.get(function)
        if bound is not None:
            regular = len(args) - len(bound)
            if index < regular:
                sources.add("an argument a Python caller gives")
            else:
                kinds = self.graph.objects.kinds
                position = bound[index - regular]
                kind, asset = kinds[position] if position < len(kinds) else ("missing", 0)
                sources.add(f"ASSET:{asset}" if kind == "asset" else f"a captured {kind}")
        return sources or {"an argument nothing gives"}
