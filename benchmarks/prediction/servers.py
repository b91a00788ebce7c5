"""The servers of the serving benchmark, besides modelhub itself: readiness checks, and MLflow
installed into its own environment (kept between runs)."""
from __future__ import annotations

import contextlib
import shlex
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import requests

from tests.support.processes import REPO

BENCH_DIR = Path(__file__).resolve().parent.parent
MLFLOW_VENV = BENCH_DIR / ".mlflow-venv"
MLFLOW_REQUIREMENT = "mlflow>=3,<4"


def source_version() -> dict:
    """The commit of this checkout and the files changed since (what the numbers belong to)."""
    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True,
                              check=False)
        return done.stdout if done.returncode == 0 else ""

    return {"commit": git("rev-parse", "HEAD").strip() or None,
            "changed": [line[3:] for line in git("status", "--porcelain").splitlines()]}


def modelhub_ready(models: list[str]) -> Callable[[str], bool]:
    def ready(url: str) -> bool:
        if requests.get(f"{url}/readyz", timeout=5).status_code != 200:
            return False
        for model in models:
            response = requests.get(f"{url}/v1/models/{model}", timeout=5)
            if response.status_code != 200 or not any(
                    s["state"] == "AVAILABLE" for s in response.json()["model_version_status"]):
                return False
        return True
    return ready


def status_ok(path: str) -> Callable[[str], bool]:
    return lambda url: requests.get(url + path, timeout=5).status_code == 200


# --- MLflow ---------------------------------------------------------------------------------------

def tensorflow_version() -> str:
    from importlib.metadata import version

    for dist in ("tensorflow-cpu", "tensorflow"):
        with contextlib.suppress(Exception):
            return version(dist)
    raise RuntimeError("TensorFlow is not installed in this environment")


def ensure_mlflow(install: bool) -> tuple[Path | None, str]:
    """MLflow's environment (created once, then reused): (its bin folder or None, what happened)."""
    tf_dist = _tf_dist_name()
    wanted = f"{MLFLOW_REQUIREMENT} {tf_dist}=={tensorflow_version()}"
    stamp = MLFLOW_VENV / ".installed"
    bin_dir = MLFLOW_VENV / "bin"
    if stamp.is_file() and stamp.read_text().strip() == wanted and (bin_dir / "mlflow").exists():
        return bin_dir, f"reused {MLFLOW_VENV}"
    if (bin_dir / "mlflow").exists() and not stamp.exists():
        # made by hand with the same packages: check what it holds and adopt it
        probe = subprocess.run([str(bin_dir / "python"), "-c",
                                "from importlib.metadata import version as v; "
                                f"print(v('mlflow'), v('{tf_dist}'))"],
                               capture_output=True, text=True, check=False)
        if probe.returncode == 0 and probe.stdout.split()[1:] == [tensorflow_version()] \
                and probe.stdout.split()[0].startswith("3."):
            stamp.write_text(wanted + "\n")
            return bin_dir, f"reused {MLFLOW_VENV}"
    if not install:
        return None, f"MLflow is not installed in {MLFLOW_VENV}; --quick does not install it"
    print(f"installing MLflow into {MLFLOW_VENV} (once; a few minutes) ...", flush=True)
    shutil.rmtree(MLFLOW_VENV, ignore_errors=True)
    steps = [[sys.executable, "-m", "venv", str(MLFLOW_VENV)],
             [str(bin_dir / "python"), "-m", "pip", "install", "--quiet", "--upgrade", "pip"],
             [str(bin_dir / "python"), "-m", "pip", "install", "--quiet", MLFLOW_REQUIREMENT,
              f"{tf_dist}=={tensorflow_version()}"]]
    for step in steps:
        done = subprocess.run(step, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            shutil.rmtree(MLFLOW_VENV, ignore_errors=True)
            reason = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
            return None, f"MLflow could not be installed ({shlex.join(step[:4])} ...: {reason[0]})"
    (MLFLOW_VENV / ".gitignore").write_text("*\n")  # never committed, wherever it is
    stamp.write_text(wanted + "\n")
    return bin_dir, f"installed into {MLFLOW_VENV}"


def _tf_dist_name() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        version("tensorflow-cpu")
        return "tensorflow-cpu"
    except PackageNotFoundError:
        return "tensorflow"


def mlflow_model(bin_dir: Path, models_dir: Path, workdir: Path, model: str) -> Path:
    """The Keras model saved as an MLflow model (once; kept in the workdir)."""
    out = workdir / "mlflow-models" / model
    source = models_dir / model / "model.keras"
    stamp = out / ".source-mtime"
    if stamp.is_file() and stamp.read_text() == str(source.stat().st_mtime_ns):
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    done = subprocess.run([str(bin_dir / "python"), str(BENCH_DIR / "mlflow_model.py"),
                           str(source), str(out)], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"saving {model} as an MLflow model failed:\n{done.stderr[-3000:]}")
    stamp.write_text(str(source.stat().st_mtime_ns))
    return out
