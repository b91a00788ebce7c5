"""The hub's commands: publish, pull, ls, show, alias, rm, gc, export, convert, scan, and (from
`cli_access`) token, namespace and audit.

The `modelhub` command (`modelhub/cli.py`) mounts them under its root group, whose context
object is the `Settings`. Every user error exits non-zero with one line on stderr, never a
traceback. Progress bars appear on a terminal only (and never with --quiet), so scripts get
clean output.
"""
from __future__ import annotations

import contextlib
import json
import os
import sys
from datetime import timedelta
from pathlib import Path

import click

from schemas.api import QUANTIZE_MODES
from schemas.errors import ArtifactNotFound, InvalidArgument, ModelhubError
from schemas.manifest import dump_manifest

from . import cli_access as access_commands
from .cli_common import Duration, _registry, audited
from .refs import parse_reference



@contextlib.contextmanager
def _progress(ctx: click.Context, total: int, desc: str):
    """A byte progress bar on a terminal; a no-op callback otherwise."""
    from tqdm import tqdm

    quiet = ctx.find_root().obj.quiet or not sys.stderr.isatty()
    with tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=desc,
              disable=quiet, leave=False) as bar:
        yield bar.update


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"


def _folder_size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def _parse_tags(tags: tuple[str, ...]) -> dict[str, str]:
    parsed = {}
    for tag in tags:
        key, sep, value = tag.partition("=")
        if not sep or not key:
            raise InvalidArgument(f"invalid tag {tag!r}: use KEY=VALUE")
        parsed[key] = value
    return parsed


@click.command()
@click.argument("path", type=click.Path(exists=True, path_type=Path))
@click.option("--name", required=True, help="Model name.")
@click.option("--description", default="", help="One-line description.")
@click.option("--tag", "tags", multiple=True, metavar="K=V", help="A tag (repeatable).")
@click.option("--alias", "aliases", multiple=True, help="Point this alias at the new version (repeatable).")
@click.option("--license", "license_", default=None, help="License identifier, e.g. Apache-2.0.")
@click.option("--card", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Model card (Markdown file).")
@click.option("--allow-ops", default=None, metavar="OP,...",
              help="Publish although the safety scan refuses these ops (admin only: an admin "
                   "token through a hub; the allowance is recorded with who gave it).")
@click.pass_context
def publish(ctx, path: Path, name: str, description: str, tags, aliases, license_, card,
            allow_ops: str | None) -> None:
    """Publish a SavedModel folder (or a .tar.gz of one) as the next version of NAME.

    Its graph is scanned first: one that could read or write files, reach the network or run
    at load time is refused, and nothing is stored."""
    registry = _registry(ctx)
    model_card = card.read_text(encoding="utf-8") if card else None
    options = {}
    if allow_ops:
        ops = tuple(op.strip() for op in allow_ops.split(",") if op.strip())
        options = ({"allow_ops": ops} if hasattr(registry, "create_token")  # a hub decides
                   else {"allow": _store_allowance(ctx, registry, ops)})
    with audited(ctx, "publish", name) as note, \
            _progress(ctx, _folder_size(path), f"publishing {name}") as advance:
        if allow_ops:
            note.detail = f"safety override: allows {allow_ops}"
        manifest = registry.publish(path, name, description=description, tags=_parse_tags(tags),
                                    license=license_, model_card=model_card, aliases=aliases,
                                    on_progress=advance, **options)
        note.version = manifest["version"]
    click.echo(f"{manifest['name']}/{manifest['version']}")
    allowance = (manifest.get("safety") or {}).get("allowance")
    if allowance:
        click.echo(f"warning: published with ops the safety scan refuses, allowed by "
                   f"{allowance['by']}: {', '.join(allowance['ops'])}", err=True)


def _store_allowance(ctx, registry, ops: tuple[str, ...]):
    """Whoever can write the store directly decides for it: the allowance names them by their
    login and host, and is signed with the store's secret."""
    import getpass
    import socket

    from .auth import load_secret, sign_allowance
    from .registry.publishing import AllowOps

    secret = load_secret(registry.store, ctx.find_root().obj)
    by = f"{getpass.getuser()}@{socket.gethostname()} (direct store access)"
    return AllowOps(ops, by, lambda record: sign_allowance(secret, record))


@click.command()
@click.argument("ref")
@click.option("-o", "--output", type=click.Path(path_type=Path),
              help="Destination folder (or file with --format tar or tflite; '-' for stdout with "
                   "tar). Default: ./NAME-VERSION[.tar.gz | -tflite-QUANTIZE.tflite].")
@click.option("--format", "fmt", type=click.Choice(["saved_model", "tar", "tflite"]),
              default="saved_model", show_default=True,
              help="tflite: the version's TFLite artifact (made by `modelhub convert`).")
@click.option("--quantize", type=click.Choice(QUANTIZE_MODES), default=None,
              help="With --format tflite: which conversion [default: the only one there is, "
                   "else dynamic, float16, int8, none, in that order].")
@click.option("--signature", default=None,
              help="With --format tflite: the converted signature [default: serving_default].")
@click.pass_context
def pull(ctx, ref: str, output: Path | None, fmt: str, quantize: str | None,
         signature: str | None) -> None:
    """Download REF (name, name/N or name@alias), verifying every byte."""
    registry = _registry(ctx)
    manifest = registry.get(ref)
    label = f"{manifest['name']}/{manifest['version']}"
    default = Path(f"{manifest['name'].replace('/', '-')}-{manifest['version']}")
    if fmt == "tflite":
        from .conversion import artifact_name

        if quantize is None:
            quantize = _pick_conversion(registry, manifest, signature)
        artifact = artifact_name(quantize, signature)
        dest = output or default.with_name(f"{default.name}-{artifact}.tflite")
        if str(dest) == "-" or dest.exists():
            raise InvalidArgument(f"destination {dest} already exists" if str(dest) != "-" else
                                  "--format tflite writes a file: give its path with -o")
        try:
            record = registry.artifact(manifest["name"], manifest["version"], artifact)
        except ArtifactNotFound as e:
            hint = f" --signature {signature}" if signature else ""
            raise ArtifactNotFound(f"{e}; make it with `modelhub convert {label} --to tflite "
                                   f"--quantize {quantize}{hint}`") from None
        with _progress(ctx, record["size"], f"pulling {label} {artifact}") as advance:
            registry.pull_artifact(label, artifact, dest, on_progress=advance)
        click.echo(str(dest))
        return
    if fmt == "saved_model":
        dest = output or default
        with _progress(ctx, manifest["total_size"], f"pulling {label}") as advance:
            registry.pull(label, dest, on_progress=advance)
        click.echo(str(dest))
        return
    _, chunks = registry.archive(label)
    if str(output) == "-":
        for chunk in chunks:
            sys.stdout.buffer.write(chunk)
        sys.stdout.buffer.flush()
        return
    dest = output or default.with_name(default.name + ".tar.gz")
    from .registry.files import staged_file

    # Written beside the destination; it appears only once every file has been verified.
    with staged_file(dest, exclusive=True) as partial, open(partial, "wb") as out:
        for chunk in chunks:
            out.write(chunk)
    click.echo(str(dest))


@click.command(name="ls")
@click.argument("query", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def list_models(ctx, query: str | None, as_json: bool) -> None:
    """List models, optionally only those matching QUERY (name, description, tags)."""
    models = _registry(ctx).list_models(query)
    if as_json:
        for m in models:
            m["updated"] = m["updated"].isoformat()
        click.echo(json.dumps(models, indent=2))
        return
    if not models:
        click.echo("no models" + (f" match {query!r}" if query else ""), err=True)
        return
    rows = [("NAME", "LATEST", "VERSIONS", "ALIASES", "SAFETY", "DESCRIPTION")] + [
        (m["name"], str(m["latest"]), str(len(m["versions"])), ",".join(m["aliases"]) or "-",
         m.get("safety", "unscanned"), m["description"][:60]) for m in models]
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    for r in rows:
        click.echo("  ".join(cell.ljust(w) for cell, w in zip(r, widths)) + "  " + r[5])


#: Which TFLite conversion a pull takes when --quantize is not given and there are several.
PREFERRED_MODES = ("dynamic", "float16", "int8", "none")


def _pick_conversion(registry, manifest: dict, signature: str | None) -> str:
    """The quantization mode to pull: the version's only conversion of the signature, or the
    most likely wanted of several; said on stderr either way."""
    from .conversion import artifact_name

    made = [mode for mode in PREFERRED_MODES
            if artifact_name(mode, signature) in registry.artifacts(manifest["name"],
                                                                    manifest["version"])]
    if not made:
        return "dynamic"  # the usual error follows, with its hint
    why = "the only conversion" if len(made) == 1 else f"of {', '.join(made)}"
    click.echo(f"pulling the {made[0]} conversion ({why}; choose with --quantize)", err=True)
    return made[0]


def _describe_spec(spec: dict) -> str:
    shape = "?" if spec["shape"] is None else "[" + ", ".join(
        "None" if d < 0 else str(d) for d in spec["shape"]) + "]"
    return f"{spec['dtype']}{shape}"


@click.command()
@click.argument("ref")
@click.option("--json", "as_json", is_flag=True, help="Print the manifest as JSON.")
@click.pass_context
def show(ctx, ref: str, as_json: bool) -> None:
    """Show a version's manifest: files, signatures, metadata."""
    registry = _registry(ctx)
    manifest = registry.get(ref)
    name, version = manifest["name"], manifest["version"]
    # Asked afresh: artifacts are added after publishing, and a hub client caches manifests.
    artifacts = registry.artifacts(name, version)
    if as_json:
        click.echo(json.dumps({**dump_manifest(manifest), "artifacts": artifacts}, indent=2,
                              sort_keys=True))
        return
    aliases = sorted(a for a, v in registry.aliases(name).items() if v == version)
    click.echo(f"{name}/{version}" + (f"  (aliases: {', '.join(aliases)})" if aliases else ""))
    click.echo(f"  created:     {manifest['created'].isoformat()}")
    click.echo(f"  size:        {_size(manifest['total_size'])} in {len(manifest['files'])} files")
    click.echo(f"  tensorflow:  {manifest['tensorflow_version'] or 'unknown'}")
    click.echo(f"  safety:      {_describe_safety(registry.safety(manifest))}")
    if manifest["description"]:
        click.echo(f"  description: {manifest['description']}")
    if manifest["license"]:
        click.echo(f"  license:     {manifest['license']}")
    for key, value in sorted(manifest["tags"].items()):
        click.echo(f"  tag:         {key}={value}")
    for sig_name, sig in sorted(manifest["signatures"].items()):
        if sig_name.startswith("__"):
            continue  # TensorFlow's internal init op, not callable
        click.echo(f"  signature {sig_name}:")
        for key, spec in sorted(sig["inputs"].items()):
            click.echo(f"    in  {key}: {_describe_spec(spec)}")
        for key, spec in sorted(sig["outputs"].items()):
            click.echo(f"    out {key}: {_describe_spec(spec)}")
    for art_name, art in sorted(artifacts.items()):
        click.echo(f"  artifact {art_name}: {_size(art['size'])}{_describe_artifact(art)}")


def _describe_safety(record: dict | None) -> str:
    from .registry.safety import safety_state

    state = safety_state(record)
    if state == "unscanned":
        return "not scanned (published before the scan; run `modelhub scan`)"
    if state == "safe":
        return f"safe ({record['op_types']} op types, all on the allowlist)"
    refused = sorted({f["op"] for f in record["findings"]})
    if state == "allowed":
        allowance = record["allowance"]
        return f"allowed by {allowance['by']} at {allowance['at']}: {', '.join(refused)}"
    return f"UNSAFE: {', '.join(refused)} (serving refuses it)"


def _describe_artifact(record: dict) -> str:
    meta = record["metadata"]
    if record["kind"] != "tflite" or "parity" not in meta:
        return ""
    parity = meta["parity"]
    if not parity.get("run"):
        checked = "parity not checked"
    else:
        checked = f"max rel error {parity['max_rel_error']:.3g}"
        if parity.get("top1_agreement") is not None:
            checked += f", top-1 agreement {parity['top1_agreement']:.0%}"
    return f"  ({meta.get('quantize')}, {checked}, {meta.get('samples')} samples)"


@click.group()
def alias() -> None:
    """Move and remove aliases (name@alias; TF Serving version labels)."""


@alias.command(name="set")
@click.argument("ref")
@click.argument("alias_name", metavar="ALIAS")
@click.pass_context
def alias_set(ctx, ref: str, alias_name: str) -> None:
    """Point ALIAS of REF's model at REF's version."""
    registry = _registry(ctx)
    name, version = registry.resolve(ref)
    with audited(ctx, "alias set", name, version) as note:
        note.detail = f"alias {alias_name}"
        registry.set_alias(name, alias_name, version)
    click.echo(f"{name}@{alias_name} -> {name}/{version}")


@alias.command(name="rm")
@click.argument("name")
@click.argument("alias_name", metavar="ALIAS")
@click.pass_context
def alias_rm(ctx, name: str, alias_name: str) -> None:
    """Remove ALIAS from model NAME."""
    with audited(ctx, "alias remove", name) as note:
        note.detail = f"alias {alias_name}"
        _registry(ctx).remove_alias(name, alias_name)
    click.echo(f"removed {name}@{alias_name}")


@click.command()
@click.argument("ref")
@click.pass_context
def rm(ctx, ref: str) -> None:
    """Delete version REF (name/N). Its number is never reused; `gc` frees its files."""
    parsed = parse_reference(ref)
    if parsed.version is None:
        raise InvalidArgument(f"rm needs an explicit version, e.g. {parsed.name}/3")
    with audited(ctx, "delete", parsed.name, parsed.version):
        _registry(ctx).delete_version(parsed.name, parsed.version)
    click.echo(f"deleted {parsed}")


@click.command()
@click.option("--grace", type=Duration(), default="24h", show_default=True,
              help="Keep unreferenced files younger than this (0s, 30m, 24h); must exceed the "
                   "longest publish that may be in flight.")
@click.pass_context
def gc(ctx, grace: timedelta) -> None:
    """Remove stored files that no version references any more."""
    report = _registry(ctx).gc(grace)
    click.echo(f"removed {report['removed_blobs']} blobs ({_size(report['freed_bytes'])}) and "
               f"{report['removed_incomplete']} incomplete uploads")


@click.command()
@click.argument("ref")
@click.option("--layout", type=click.Choice(["tf-serving"]), required=True,
              help="tf-serving: DIR/NAME/VERSION/saved_model.pb, a TF Serving model base path.")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.pass_context
def export(ctx, ref: str, layout: str, directory: Path) -> None:
    """Write REF into DIRECTORY in another server's layout."""
    registry = _registry(ctx)
    manifest = registry.get(ref)
    name, version = manifest["name"], manifest["version"]
    dest = directory / name / str(version)
    with _progress(ctx, manifest["total_size"], f"exporting {name}/{version}") as advance:
        registry.pull(f"{name}/{version}", dest, on_progress=advance)
    click.echo(str(dest))


@contextlib.contextmanager
def _native_output_captured():
    """TensorFlow's converter writes pages of diagnostics straight to file descriptors 1 and 2,
    past Python; a command's error must stay one line. What was captured is shown only if
    something unexpected (not one of our errors) fails."""
    import tempfile

    sys.stdout.flush()
    sys.stderr.flush()
    saved = {fd: os.dup(fd) for fd in (1, 2)}
    with tempfile.TemporaryFile() as capture:
        for fd in saved:
            os.dup2(capture.fileno(), fd)
        unexpected = False
        try:
            yield
        except ModelhubError:
            raise
        except BaseException:
            unexpected = True
            raise
        finally:
            for fd, copy in saved.items():
                os.dup2(copy, fd)
                os.close(copy)
            if unexpected:
                capture.seek(0)
                sys.stderr.write(capture.read().decode(errors="replace"))


@click.command()
@click.argument("ref")
@click.option("--to", "target", type=click.Choice(["tflite"]), required=True,
              help="The format to convert to.")
@click.option("--quantize", type=click.Choice(QUANTIZE_MODES), default="dynamic", show_default=True,
              help="none: float32; dynamic: int8 weights; float16: float16 weights; int8: full "
                   "integer, calibrated on the samples (inputs and outputs stay float32).")
@click.option("--samples", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help=".npz with one array per input of the signature, first axis = samples; used "
                   "to calibrate int8 and to check parity [default: generated at random].")
@click.option("--signature", default=None, help="Signature to convert [default: serving_default].")
@click.option("--allow-select-tf-ops", is_flag=True,
              help="Keep ops TFLite has no kernels for as TensorFlow ops. They need the Flex "
                   "delegate wherever the model runs, which LiteRT's Python package lacks, so "
                   "parity is then recorded as not checked.")
@click.option("--max-abs-error", type=float, default=None,
              help="Parity limit: largest |tflite - savedmodel| [default: not checked].")
@click.option("--max-rel-error", type=float, default=None,
              help="Parity limit: largest error over the output's largest magnitude "
                   "[default: by --quantize; the record shows the limits used].")
@click.option("--min-top1-agreement", type=float, default=None,
              help="Parity limit for classifier outputs: share of rows whose arg-max agrees "
                   "[default: by --quantize].")
@click.option("--json", "as_json", is_flag=True, help="Print the new artifact's record as JSON.")
@click.pass_context
def convert(ctx, ref: str, target: str, quantize: str, samples: Path | None,
            signature: str | None, allow_select_tf_ops: bool, max_abs_error: float | None,
            max_rel_error: float | None, min_top1_agreement: float | None,
            as_json: bool) -> None:
    """Convert REF to TFLite, check it against the SavedModel, and store it as an artifact of
    REF (create-only). Through a hub (--hub), the hub converts."""
    from .conversion import artifact_name

    registry = _registry(ctx)
    name, version = registry.resolve(ref)
    label = f"{name}/{version}"
    options = {"quantize": quantize, "samples": samples, "signature": signature,
               "allow_select_tf_ops": allow_select_tf_ops,
               "thresholds": {"max_abs_error": max_abs_error, "max_rel_error": max_rel_error,
                              "min_top1_agreement": min_top1_agreement}}
    if hasattr(registry, "convert"):  # a hub client: the hub does the work
        record = registry.convert(label, **options)
    else:
        from .conversion import convert as convert_version

        with audited(ctx, "convert", name, version) as note, _native_output_captured():
            note.detail = f"to tflite, quantize {quantize}"
            record = convert_version(registry, label, **options)
    if as_json:
        click.echo(json.dumps(record, indent=2, sort_keys=True))
        return
    meta, parity = record["metadata"], record["metadata"]["parity"]
    click.echo(f"{label} {artifact_name(quantize, signature)}: {_size(record['size'])}, "
               f"{meta['size_ratio']:.2f} x the SavedModel ({_size(meta['saved_model_size'])})")
    source = f"samples from {samples.name}" if meta["samples"] == "file" else "generated samples"
    if parity.get("run"):
        line = (f"parity on {parity['samples']} {source}: max abs error "
                f"{parity['max_abs_error']:.3g}, max rel error {parity['max_rel_error']:.3g}")
        if parity.get("top1_agreement") is not None:
            line += f", top-1 agreement {parity['top1_agreement']:.1%}"
        click.echo(line)
    else:
        click.echo(f"warning: parity not checked: {parity['reason']}", err=True)
    if meta["select_tf_ops"]:
        click.echo(f"warning: uses select TF ops ({', '.join(meta['select_tf_ops'])}): runs only "
                   "where the Flex delegate is linked", err=True)
    if quantize == "int8" and meta["samples"] == "generated":
        click.echo("note: int8 was calibrated on random generated samples, not real inputs; "
                   "pass --samples for ranges that match your data", err=True)


@click.command()
@click.argument("ref", required=False)
@click.option("--all", "all_versions", is_flag=True, help="Every version of every model.")
@click.option("--json", "as_json", is_flag=True, help="Print the verdicts as JSON.")
@click.pass_context
def scan(ctx, ref: str | None, all_versions: bool, as_json: bool) -> None:
    """Scan the graph of REF (or of every version, --all) for ops that could reach outside the
    model, and record the verdict of versions published before the scan existed (create-only).
    Exits with 1 if any version is unsafe."""
    if bool(ref) == all_versions:
        raise InvalidArgument("give a REF, or --all")
    registry = _registry(ctx)
    if all_versions:
        refs = [f"{name}/{v}" for name in registry.model_names() for v in registry.versions(name)]
    else:
        refs = [ref]
    results, unsafe = [], False
    for each in refs:
        parsed = parse_reference(each)
        with audited(ctx, "scan", parsed.name, parsed.version):
            verdict = registry.scan(each)
        unsafe |= not verdict["safe"] and not verdict.get("allowance")
        results.append(verdict)
        if not as_json:
            where = f"{verdict['name']}/{verdict['version']}"
            click.echo(f"{where}: {_describe_safety(verdict)}"
                       + (" (recorded)" if verdict.get("recorded") else ""))
    if as_json:
        click.echo(json.dumps(results, indent=2, sort_keys=True))
    if unsafe:
        ctx.exit(1)


#: The commands this package adds to `modelhub`.
COMMANDS = (publish, pull, list_models, show, alias, rm, gc, export, convert, scan,
            *access_commands.COMMANDS)
