"""What the benchmark scripts share: the generated model, the timing method, scratch folders and
the table. `benchmarks/publish_pull.py` explains the method (flushing dirty pages and prefaulting
memory before each timed operation); the other scripts time the same way so their numbers agree.

MB means 2**20 bytes throughout, as in `hub.examples.build_large`.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import shlex
import platform
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

MIB = 1024 * 1024
MODEL_NAME = "bench"
MODEL_REF = f"{MODEL_NAME}/1"
DEFAULT_WORKDIR = Path("/tmp/modelhub-bench")
REPO_ROOT = Path(__file__).resolve().parent.parent


# --- the model ------------------------------------------------------------------------------------

def folder_size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def ensure_model(workdir: Path, megabytes: int) -> Path:
    """The generated model in `workdir`, built on first use (in a child process, so TensorFlow
    and its threads never share the process being measured) and renamed into place when done, so
    an interrupted build is never reused."""
    model = workdir / f"model-{megabytes}mb"
    if (model / "saved_model.pb").is_file():
        return model
    partial = workdir / f".{model.name}.partial"
    shutil.rmtree(partial, ignore_errors=True)
    workdir.mkdir(parents=True, exist_ok=True)
    print(f"building a {megabytes} MB SavedModel in {model} (once; takes a while) ...", flush=True)
    build = ("import sys; from hub.examples import build_large; "
             "build_large(sys.argv[1], int(sys.argv[2]))")
    subprocess.run([sys.executable, "-c", build, str(partial), str(megabytes)], check=True)
    partial.rename(model)
    return model


# --- timing ---------------------------------------------------------------------------------------

def copy_tree(source: Path, dest: Path, *, sync: bool = False) -> None:
    subprocess.run(["cp", "-r", str(source), str(dest)], check=True)
    if sync:
        subprocess.run(["sync", "-f", str(dest)], check=True)


def prefault(nbytes: int) -> None:
    """Touch and free `nbytes` of memory (at most half of what is free), so that the host backs
    the guest pages the next operation will get (see benchmarks/publish_pull.py)."""
    free = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    touched = b"\xff" * min(nbytes, free // 2)  # repeating one byte memsets every page
    del touched


def timed(operation: Callable[[], object], *, prefault_bytes: int) -> float:
    """Seconds `operation` takes, started with no dirty pages left by earlier steps."""
    os.sync()
    prefault(prefault_bytes)
    start = time.perf_counter()
    operation()
    return time.perf_counter() - start


@contextlib.contextmanager
def scratch(path: Path) -> Iterator[Path]:
    """A path that does not exist yet, and is removed (with whatever was made there) on exit."""
    shutil.rmtree(path, ignore_errors=True)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


# --- reporting ------------------------------------------------------------------------------------

def render_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Columns padded to their widest cell: the first left-aligned, the others right-aligned,
    with a rule under the header."""
    rows = [tuple(header)] + [tuple(row) for row in rows]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) if i == 0 else cell.rjust(w)
                       for i, (cell, w) in enumerate(zip(row, widths))) for row in rows]
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines)


def environment(workdir: Path) -> dict:
    fs = subprocess.run(["stat", "-f", "-c", "%T", str(workdir)], capture_output=True, text=True,
                        check=False)
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "filesystem": fs.stdout.strip(),
    }


# --- the transfer benchmarks' command line --------------------------------------------------------

def parse_transfer_args(doc: str, argv: list[str] | None, workdir_holds: str) -> argparse.Namespace:
    """The options publish_pull.py and http_pull.py share."""
    parser = argparse.ArgumentParser(description=doc.split("\n", 1)[0])
    parser.add_argument("--size-mb", type=int, default=1024,
                        help="MB of weights in the generated model (default 1024)")
    parser.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR,
                        help=f"where {workdir_holds} (default {DEFAULT_WORKDIR})")
    parser.add_argument("--repeat", type=int, default=3,
                        help="repetitions; best and median are reported (default 3)")
    parser.add_argument("--json", type=Path, metavar="OUT", help="also write the results here")
    parser.add_argument("--no-prefault", action="store_true",
                        help="do not touch memory before each operation (see the docstring)")
    args = parser.parse_args(argv)
    if args.size_mb < 1 or args.repeat < 1:
        parser.error("--size-mb and --repeat must be at least 1")
    args.workdir = args.workdir.absolute()
    return args


def reproduce_command(script: str, args: argparse.Namespace) -> str:
    """The command that runs `script` again with these options."""
    command = [sys.executable, script, "--size-mb", str(args.size_mb),
               "--repeat", str(args.repeat), "--workdir", str(args.workdir)]
    if args.json:
        command += ["--json", str(args.json)]
    if args.no_prefault:
        command.append("--no-prefault")
    return shlex.join(command)
