"""The servers of the serving benchmark, besides modelhub itself: readiness checks, and the
peers (MLServer, BentoML, MLflow), each installed into an environment of its own (kept between
runs), with what they serve."""
from __future__ import annotations

import json
import shlex
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import requests

from tests.support.processes import REPO

BENCH_DIR = Path(__file__).resolve().parent.parent


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


# --- peers, each in an environment of its own ------------------------------------------------

def tensorflow_version() -> str:
    from importlib.metadata import version

    return version("tensorflow")


@dataclass(frozen=True)
class PeerEnvironment:
    """A peer server's virtual environment (benchmarks/.NAME-venv), made once and reused while
    its requirements stay the same. Each gets the TensorFlow version modelhub runs."""

    name: str
    requirements: tuple[str, ...]

    @property
    def path(self) -> Path:
        return BENCH_DIR / f".{self.name}-venv"

    @property
    def bin_dir(self) -> Path:
        return self.path / "bin"

    def ensure(self, install: bool) -> tuple[Path | None, str]:
        """(its bin folder, or None; what happened)."""
        wanted = " ".join([*self.requirements, f"tensorflow=={tensorflow_version()}"])
        stamp = self.path / ".installed"
        if stamp.is_file() and stamp.read_text().strip() == wanted:
            return self.bin_dir, f"reused {self.path}"
        if not install:
            return None, f"not installed in {self.path}; --quick does not install it"
        print(f"installing {self.name} into {self.path} (once; a few minutes) ...", flush=True)
        shutil.rmtree(self.path, ignore_errors=True)
        python = str(self.bin_dir / "python")
        steps = [[sys.executable, "-m", "venv", str(self.path)],
                 [python, "-m", "pip", "install", "--quiet", "--upgrade", "pip"],
                 [python, "-m", "pip", "install", "--quiet", *wanted.split()]]
        for step in steps:
            done = subprocess.run(step, capture_output=True, text=True, check=False)
            if done.returncode != 0:
                shutil.rmtree(self.path, ignore_errors=True)
                reason = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
                return None, (f"{self.name} could not be installed ({shlex.join(step[:4])} ...: "
                              f"{reason[0]})")
        (self.path / ".gitignore").write_text("*\n")  # never committed, wherever it is
        stamp.write_text(wanted + "\n")
        return self.bin_dir, f"installed into {self.path}"


MLFLOW_ENV = PeerEnvironment("mlflow", ("mlflow>=3,<4",))
# MLServer 1.7 needs uvloop below 0.22 (its event loop policy), and protobuf 6 (its protos).
MLSERVER_ENV = PeerEnvironment("mlserver", ("mlserver==1.7.*", "uvloop<0.22"))
BENTOML_ENV = PeerEnvironment("bentoml", ("bentoml==1.4.*",))


def mlflow_model(bin_dir: Path, models_dir: Path, workdir: Path, model: str) -> Path:
    """The Keras model saved as an MLflow model (once; kept in the workdir)."""
    out = workdir / "mlflow-models" / model
    source = models_dir / model / "model.keras"
    stamp = out / ".source-mtime"
    if stamp.is_file() and stamp.read_text() == str(source.stat().st_mtime_ns):
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    done = subprocess.run([str(bin_dir / "python"), str(BENCH_DIR / "peers" / "mlflow_model.py"),
                           str(source), str(out)], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"saving {model} as an MLflow model failed:\n{done.stderr[-3000:]}")
    stamp.write_text(str(source.stat().st_mtime_ns))
    return out


def mlserver_repository(workdir: Path, models_dir: Path, models: list[str], metas: dict,
                        batching: bool) -> Path:
    """An MLServer model repository: each model served by peers/mlserver_runtime.py from the
    same SavedModel, with adaptive batching (max 32 rows, waiting at most 1 ms) or without."""
    root = workdir / ("mlserver-batching" if batching else "mlserver-plain")
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    shutil.copy(BENCH_DIR / "peers" / "mlserver_runtime.py", root / "mlserver_runtime.py")
    for model in models:
        folder = root / model
        folder.mkdir()
        settings = {"name": model, "implementation": "mlserver_runtime.SavedModelRuntime",
                    "parameters": {"uri": str(models_dir / model / "saved_model"),
                                   "extra": {"output": metas[model]["output"]["name"]}}}
        if batching:
            settings.update(max_batch_size=32, max_batch_time=0.001)
        (folder / "model-settings.json").write_text(json.dumps(settings, indent=2))
    return root
