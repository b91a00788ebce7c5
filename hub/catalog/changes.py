"""What changed between two versions of a model: signatures added, removed or changed (and
whether a change breaks callers written against the older version), files added, removed or
changed, and the size."""
from __future__ import annotations


def _rank(spec: dict) -> int | None:
    return None if spec.get("shape") is None else len(spec["shape"])


def _tensors(old: dict, new: dict, side: str) -> tuple[list[str], list[str]]:
    """(what changed, what of it breaks callers) for one side (inputs/outputs) of a
    signature."""
    notes, breaking = [], []
    for name in sorted(set(old) | set(new)):
        if name not in new:
            notes.append(f"{side[:-1]} {name} removed")
            breaking.append(notes[-1])
        elif name not in old:
            notes.append(f"{side[:-1]} {name} added")
            if side == "inputs":  # callers do not send it
                breaking.append(notes[-1])
        else:
            before, after = old[name], new[name]
            if before["dtype"] != after["dtype"]:
                notes.append(f"{side[:-1]} {name}: dtype {before['dtype']} -> {after['dtype']}")
                breaking.append(notes[-1])
            if _rank(before) != _rank(after):
                notes.append(f"{side[:-1]} {name}: rank {_rank(before)} -> {_rank(after)}")
                breaking.append(notes[-1])
            elif before.get("shape") != after.get("shape"):
                notes.append(f"{side[:-1]} {name}: shape {before.get('shape')} -> "
                             f"{after.get('shape')}")
    return notes, breaking


def compare(old: dict | None, new: dict) -> dict:
    """The changes from manifest `old` (None: the first version) to manifest `new`."""
    if old is None:
        return {"first": True}
    signatures = {"added": [], "removed": [], "changed": []}
    old_sigs, new_sigs = old.get("signatures", {}), new.get("signatures", {})
    for name in sorted(set(old_sigs) | set(new_sigs)):
        if name not in new_sigs:
            signatures["removed"].append(name)
        elif name not in old_sigs:
            signatures["added"].append(name)
        else:
            notes, breaking = [], []
            for side in ("inputs", "outputs"):
                n, b = _tensors(old_sigs[name][side], new_sigs[name][side], side)
                notes += n
                breaking += b
            if old_sigs[name].get("method_name") != new_sigs[name].get("method_name"):
                notes.append(f"method {old_sigs[name].get('method_name')} -> "
                             f"{new_sigs[name].get('method_name')}")
                breaking.append(notes[-1])
            if notes:
                signatures["changed"].append({"name": name, "notes": notes,
                                              "breaking": bool(breaking)})
    old_files = {f["path"]: f for f in old["files"]}
    new_files = {f["path"]: f for f in new["files"]}
    files = {
        "added": sorted(set(new_files) - set(old_files)),
        "removed": sorted(set(old_files) - set(new_files)),
        "changed": sorted(p for p in set(old_files) & set(new_files)
                          if old_files[p]["sha256"] != new_files[p]["sha256"]),
    }
    breaking = bool(signatures["removed"]) or any(c["breaking"] for c in signatures["changed"])
    return {"first": False, "from": old["version"], "signatures": signatures, "files": files,
            "size_delta": new["total_size"] - old["total_size"], "breaking": breaking}
