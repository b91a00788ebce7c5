"""The container image and the Kubernetes deployment (`Dockerfile`, `k8s/`).

Every kustomization under k8s/ is rendered with `kubectl kustomize` (or `kustomize build`) and
every object is validated against the OpenAPI schemas of a pinned Kubernetes version. Then the
manifests are checked against the app itself: probes hit endpoints it serves for the role the
container runs, Services select pods and reach ports those pods open, the containers run
`modelhub serve` with the right role and device, names that objects refer to exist. Finally the
image's entrypoint, read from the Dockerfile, is run here (there is no container engine) and
must answer /readyz, as must the exact command lines of the hub and serving containers.

Without kubectl the rendering tests skip (developer machines); `.ci/run` installs kubectl and
sets CI_REQUIRE_KUBECTL=1, which turns that skip into a failure.
"""
from __future__ import annotations

import functools
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.support.apps import app_settings
from tests.support.processes import REPO, free_port, modelhub_command, stop_process, wait_for_http

# Objects are validated against this Kubernetes version's OpenAPI schemas (kubernetes-validate
# bundles them). It is the oldest version the manifests promise to work on.
KUBERNETES_VERSION = "1.30"

K8S = REPO / "k8s"
DOCKERFILE = REPO / "Dockerfile"
SECRET_TEMPLATE = K8S / "base" / "s3-secret.template.yaml"
KUSTOMIZATIONS = ["base", "overlays/dev", "overlays/gpu", "overlays/tpu"]
# The Secret with the S3 credentials: made by hand from the template, except in the dev overlay.
EXTERNAL_SECRET = "modelhub-s3"
# What the serving container runs on (and the image variant it needs) in each kustomization.
SERVING_DEVICE = {"base": "cpu", "overlays/dev": "cpu", "overlays/gpu": "gpu", "overlays/tpu": "tpu"}
WORKLOAD_KINDS = ("Deployment", "StatefulSet", "DaemonSet", "Job")


# --- rendering -----------------------------------------------------------------------------------

def _kustomize_command() -> list[str] | None:
    if shutil.which("kubectl"):
        return [shutil.which("kubectl"), "kustomize"]
    if shutil.which("kustomize"):
        return [shutil.which("kustomize"), "build"]
    return None


@functools.cache
def _render(kustomization: str) -> tuple[dict, ...]:
    command = _kustomize_command()
    done = subprocess.run([*command, str(K8S / kustomization)], check=False, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, f"rendering k8s/{kustomization} failed:\n{done.stderr}"
    return tuple(doc for doc in yaml.safe_load_all(done.stdout) if doc)


@pytest.fixture(scope="module")
def kustomize_available() -> None:
    if _kustomize_command() is None:
        reason = ("kubectl (or kustomize) is not installed, so k8s/ cannot be rendered; "
                  "install kubectl to run these tests (.ci/run does)")
        if os.environ.get("CI_REQUIRE_KUBECTL"):
            pytest.fail(reason)
        pytest.skip(reason)


@pytest.fixture(params=KUSTOMIZATIONS)
def rendered(request, kustomize_available) -> tuple[str, tuple[dict, ...]]:
    return request.param, _render(request.param)


def objects(docs, kind: str) -> list[dict]:
    return [d for d in docs if d["kind"] == kind]


def named(docs, kind: str, name: str) -> dict:
    found = [d for d in objects(docs, kind) if d["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind} {name}, found {len(found)}"
    return found[0]


def pod_spec(workload: dict) -> dict:
    return workload["spec"]["template"]["spec"]


def workloads(docs) -> list[dict]:
    return [d for d in docs if d["kind"] in WORKLOAD_KINDS]


def is_modelhub_image(image: str) -> bool:
    repository = image.rsplit("@", 1)[0]
    last = repository.rsplit("/", 1)[-1]
    return last.split(":", 1)[0] == "modelhub"


def modelhub_containers(docs) -> list[tuple[dict, dict]]:
    """(workload, container) for every container that runs the modelhub image."""
    return [(w, c) for w in workloads(docs) for c in pod_spec(w)["containers"]
            if is_modelhub_image(c["image"])]


# --- the image: Dockerfile ---------------------------------------------------------------------

def dockerfile_instructions(path: Path = DOCKERFILE) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order, continuation lines joined, comments dropped."""
    instructions, pending = [], ""
    for line in path.read_text().splitlines():
        stripped = line.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if pending and stripped.startswith("#"):
            continue  # a comment inside a continued instruction
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        full = (pending + stripped).strip()
        pending = ""
        keyword, _, rest = full.partition(" ")
        instructions.append((keyword.upper(), rest.strip()))
    return instructions


def final_stage() -> list[tuple[str, str]]:
    instructions = dockerfile_instructions()
    last_from = max(i for i, (keyword, _) in enumerate(instructions) if keyword == "FROM")
    return instructions[last_from:]


def exec_form(keyword: str) -> list[str]:
    """ENTRYPOINT or CMD of the final stage, which must be in exec (JSON) form so that the
    server is PID 1 and gets SIGTERM itself."""
    values = [rest for k, rest in final_stage() if k == keyword]
    assert values, f"the final stage of the Dockerfile has no {keyword}"
    value = json.loads(values[-1])
    assert isinstance(value, list) and all(isinstance(v, str) for v in value), \
        f"{keyword} must be in exec form (a JSON list of strings)"
    return value


def image_command(container: dict | None = None) -> list[str]:
    """What a container of the image runs: Kubernetes' `command` replaces ENTRYPOINT, `args`
    replace CMD."""
    container = container or {}
    return [*(container.get("command") or exec_form("ENTRYPOINT")),
            *(container.get("args") or exec_form("CMD"))]


def serve_options(argv: list[str]) -> dict:
    """The settings `modelhub serve` runs with from argv, parsed by the real command line
    (unknown options fail here), defaults included (the environment left out)."""
    import dataclasses

    from modelhub.cli import serve
    from schemas.settings import load_settings

    assert argv[0] == "modelhub", f"the container runs {argv[0]!r}, not modelhub"
    assert "serve" in argv, f"the container does not run `modelhub serve`: {argv}"
    at = argv.index("serve")
    assert all(a.startswith("--") for a in argv[1:at:2]), f"unexpected arguments before serve: {argv}"
    context = serve.make_context("serve", list(argv[at + 1:]))
    given = {k: v for k, v in context.params.items() if v is not None and k != "all_models"}
    return dataclasses.asdict(load_settings(given, environ={}))


def with_option(argv: list[str], option: str, value: str) -> list[str]:
    """argv with `option`'s value replaced (or the option added)."""
    argv = list(argv)
    for i, arg in enumerate(argv):
        if arg == option:
            argv[i + 1] = value
            return argv
        if arg.startswith(option + "="):
            argv[i] = f"{option}={value}"
            return argv
    return [*argv, option, value]


def test_dockerfile_builds_a_slim_non_root_image():
    instructions = dockerfile_instructions()
    stages = [rest for keyword, rest in instructions if keyword == "FROM"]
    assert len(stages) >= 2, "the Dockerfile must be multi-stage (builder + runtime)"
    assert all("python:" in s and "-slim" in s for s in stages), stages
    final = final_stage()
    users = [rest for keyword, rest in final if keyword == "USER"]
    assert users, "the runtime stage must switch to a non-root USER"
    uid = users[-1].split(":")[0]
    assert uid.isdigit() and int(uid) != 0, \
        f"USER must be a numeric non-root uid (runAsNonRoot can only check numbers): {users[-1]}"
    exposed = " ".join(rest for keyword, rest in final if keyword == "EXPOSE").split()
    assert {"8080", "8500"} <= set(exposed), "the image exposes REST (8080) and gRPC (8500)"
    assert any(k == "COPY" and "--from=builder" in rest for k, rest in final), \
        "the runtime stage must copy the virtual environment from the builder"
    # The default install serves on a CPU; a build argument selects the GPU (CUDA) variant.
    assert "ARG VARIANT=cpu" in {f"{k} {rest}" for k, rest in instructions}
    text = DOCKERFILE.read_text()
    assert "cpu) pip install . ;;" in text and 'gpu) pip install ".[gpu]" ;;' in text
    pyproject = (REPO / "pyproject.toml").read_text()
    dependencies = re.search(r"^dependencies = \[(.*?)^\]", pyproject, re.DOTALL | re.MULTILINE)
    assert re.search(r'^\s*"tensorflow>=', dependencies.group(1), re.MULTILINE)
    extras = re.search(r"\[project\.optional-dependencies\](.*?)\n\[", pyproject, re.DOTALL).group(1)
    assert re.search(r"^gpu = .*tensorflow\[and-cuda\]", extras, re.MULTILINE)
    # The entrypoint is `modelhub serve`, listening on every interface of the container.
    argv = image_command()
    options = serve_options(argv)
    assert argv[:2] == ["modelhub", "serve"]
    assert options["host"] == "0.0.0.0" and options["port"] == 8080


def test_dockerignore_keeps_the_build_context_to_the_package():
    lines = [line.strip() for line in (REPO / ".dockerignore").read_text().splitlines()
             if line.strip() and not line.startswith("#")]
    assert lines[0] == "*", ".dockerignore should exclude everything, then allow what is needed"
    allowed = {line[1:].rstrip("/") for line in lines if line.startswith("!")}
    copied = set()
    for keyword, rest in dockerfile_instructions():
        if keyword == "COPY" and "--from=" not in rest:
            copied.update(shlex.split(rest)[:-1])
    assert copied <= allowed, f"the Dockerfile copies what .dockerignore leaves out: {copied - allowed}"
    assert not allowed & {".venv", ".git", "tests", "demo-store", "k8s"}


def known_settings() -> set[str]:
    """Every MODELHUB_* variable the code reads: the app's settings and the command line's."""
    from schemas.settings import SettingsSchema, env_name

    names = {env_name(setting) for setting in SettingsSchema._declared_fields}
    for package in ("modelhub", "hub", "serving", "storage", "schemas"):
        for source in (REPO / package).rglob("*.py"):
            names.update(re.findall(r"MODELHUB_[A-Z][A-Z_]*[A-Z]", source.read_text()))
    return names


def test_image_settings_are_ones_the_app_reads():
    env = " ".join(rest for keyword, rest in final_stage() if keyword == "ENV")
    names = set(re.findall(r"\b(MODELHUB_[A-Z_]+)=", env))
    assert {"MODELHUB_SERVING_CACHE", "MODELHUB_STORE"} <= names
    assert names <= known_settings(), f"unknown settings in the Dockerfile: {names - known_settings()}"


# --- running the entrypoint here ---------------------------------------------------------------

def local_argv(argv: list[str], port: int) -> list[str]:
    """The image's command as this machine runs it: the venv's modelhub, loopback only."""
    argv = with_option(with_option(argv, "--port", str(port)), "--host", "127.0.0.1")
    installed = Path(sys.executable).parent / "modelhub"
    program = [str(installed)] if installed.exists() else modelhub_command()
    return [*program, *argv[1:]]


def answers_readyz(argv: list[str], tmp_path: Path) -> None:
    port = free_port()
    env = {**os.environ,
           "MODELHUB_STORE": str(tmp_path / "store"),
           "MODELHUB_SERVING_CACHE": str(tmp_path / "serving-cache"),
           "MODELHUB_CACHE": str(tmp_path / "cache")}
    log = tmp_path / "server.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(local_argv(argv, port), stdout=out, stderr=subprocess.STDOUT,
                                   env=env, cwd=tmp_path)
    try:
        try:
            wait_for_http(f"http://127.0.0.1:{port}/readyz", process, timeout=60)
        except (RuntimeError, TimeoutError) as e:
            raise AssertionError(f"{e}\n{log.read_text(errors='replace')}") from None
        import requests

        assert requests.get(f"http://127.0.0.1:{port}/healthz", timeout=5).status_code == 200
    finally:
        stop_process(process)


def test_image_entrypoint_starts_and_answers_readyz(tmp_path):
    """ENTRYPOINT + CMD exactly as `docker run IMAGE` runs them (role all, local store)."""
    answers_readyz(image_command(), tmp_path)


@pytest.mark.parametrize("deployment", ["modelhub-hub", "modelhub-serving"])
def test_deployed_command_starts_and_answers_readyz(deployment, kustomize_available, tmp_path):
    """The image's entrypoint plus the container's args, as Kubernetes runs them (base)."""
    container = pod_spec(named(_render("base"), "Deployment", deployment))["containers"][0]
    answers_readyz(image_command(container), tmp_path)


# --- the rendered manifests ----------------------------------------------------------------------

def test_every_object_validates_against_the_kubernetes_schemas(rendered):
    import kubernetes_validate

    name, docs = rendered
    assert docs, f"k8s/{name} renders nothing"
    for doc in docs:
        where = f"k8s/{name}: {doc['kind']} {doc['metadata'].get('name')}"
        try:
            kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as e:
            path = ".".join(str(p) for p in e.path)
            pytest.fail(f"{where} is not valid Kubernetes {KUBERNETES_VERSION}: {path}: {e.message}")
        except kubernetes_validate.SchemaNotFoundError as e:
            pytest.fail(f"{where}: {e.message}")


def test_secret_template_is_valid_and_holds_no_secret(kustomize_available):
    import kubernetes_validate

    secret = yaml.safe_load(SECRET_TEMPLATE.read_text())
    kubernetes_validate.validate(secret, KUBERNETES_VERSION, strict=True)
    assert secret["kind"] == "Secret" and secret["metadata"]["name"] == EXTERNAL_SECRET
    assert set(secret["stringData"]) == {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
                                         "MODELHUB_TOKEN_SECRET"}
    assert set(secret["stringData"].values()) == {"REPLACE_ME"}
    # the template is not part of the kustomization: applying it must never reset real keys
    for name in ("base", "overlays/gpu", "overlays/tpu"):
        assert not objects(_render(name), "Secret"), f"k8s/{name} must not carry a Secret"


def http_app(role: str, root: Path):
    from modelhub.app import create_app

    return create_app(app_settings(str(root / "store"), role=role, poll_seconds=0,
                                   serving_cache=str(root / "cache")))


@pytest.fixture(scope="module")
def app_for(tmp_path_factory):
    """The real Flask app for a role (built once per role), as the container's gunicorn runs it."""
    apps = {}

    def get(role: str):
        if role not in apps:
            apps[role] = http_app(role, tmp_path_factory.mktemp(f"app-{role}"))
            manager = apps[role].extensions.get("modelhub.manager")
            if manager is not None:
                assert manager.wait_synced(30)
        return apps[role]

    yield get
    for app in apps.values():
        manager = app.extensions.get("modelhub.manager")
        if manager is not None:
            manager.stop()


def container_port(container: dict, port) -> int:
    """A probe's or Service's port (a name or a number) as one of the container's ports."""
    ports = container.get("ports", [])
    if isinstance(port, str) and not port.isdigit():
        matches = [p["containerPort"] for p in ports if p.get("name") == port]
        assert matches, f"container {container['name']} has no port named {port!r}"
        return matches[0]
    number = int(port)
    assert number in {p["containerPort"] for p in ports}, \
        f"container {container['name']} does not open port {number}"
    return number


def probes(container: dict) -> dict[str, dict]:
    return {kind: container[kind] for kind in ("startupProbe", "livenessProbe", "readinessProbe")
            if kind in container}


def test_probes_hit_endpoints_the_app_serves(rendered, app_for):
    _, docs = rendered
    checked = set()
    for workload, container in modelhub_containers(docs):
        options = serve_options(image_command(container))
        app = app_for(options["role"])
        found = probes(container)
        assert {"livenessProbe", "readinessProbe"} <= set(found), \
            f"{workload['metadata']['name']} needs liveness and readiness probes"
        assert found["livenessProbe"]["httpGet"]["path"] == "/healthz"
        assert found["readinessProbe"]["httpGet"]["path"] == "/readyz"
        for kind, probe in found.items():
            if "grpc" in probe:  # gRPC's health service, on the port `serve` gives gRPC
                assert options["role"] in ("serving", "all"), f"{kind}: no gRPC with this role"
                assert container_port(container, probe["grpc"]["port"]) == options["grpc_port"]
                checked.add((options["role"], "grpc.health.v1"))
        paths = {probe["httpGet"]["path"]: probe["httpGet"]["port"] for probe in found.values()
                 if "httpGet" in probe}
        annotations = workload["spec"]["template"]["metadata"].get("annotations", {})
        if "prometheus.io/path" in annotations:
            paths[annotations["prometheus.io/path"]] = annotations["prometheus.io/port"]
        for path, port in paths.items():
            # the app listens where the probe knocks
            assert container_port(container, port) == options["port"], \
                f"{workload['metadata']['name']}: {path} on port {port}, app on {options['port']}"
            adapter = app.url_map.bind("localhost")
            adapter.match(path, method="GET")  # raises NotFound if the role does not serve it
            status = app.test_client().get(path).status_code
            assert status in (200, 503), f"GET {path} with role {options['role']}: {status}"
            checked.add((options["role"], path))
    assert checked >= {("hub", "/healthz"), ("hub", "/readyz"), ("serving", "/healthz"),
                       ("serving", "/readyz"), ("serving", "/monitoring/prometheus/metrics")}, checked


def test_services_select_pods_and_reach_their_ports(rendered):
    name, docs = rendered
    services = objects(docs, "Service")
    assert {"modelhub-hub", "modelhub-serving"} <= {s["metadata"]["name"] for s in services}
    for service in services:
        selector = service["spec"]["selector"]
        selected = [w for w in workloads(docs)
                    if selector.items() <= w["spec"]["template"]["metadata"]["labels"].items()]
        assert len(selected) == 1, \
            f"k8s/{name}: Service {service['metadata']['name']} selects {len(selected)} workloads"
        containers = pod_spec(selected[0])["containers"]
        for port in service["spec"]["ports"]:
            target = port.get("targetPort", port["port"])
            opened = []
            for container in containers:
                try:
                    opened.append(container_port(container, target))
                except AssertionError:
                    pass
            assert opened, (f"k8s/{name}: Service {service['metadata']['name']} targets port "
                            f"{target!r}, which no container of {selected[0]['metadata']['name']} opens")
    # the app in each modelhub container listens on the port it declares
    for workload, container in modelhub_containers(docs):
        options = serve_options(image_command(container))
        assert options["host"] == "0.0.0.0", "in a container the server must listen on every interface"
        assert container_port(container, "http") == options["port"]


def test_workload_selectors_match_their_pods(rendered):
    _, docs = rendered
    for workload in workloads(docs):
        if workload["kind"] == "Job":
            continue
        labels = workload["spec"]["template"]["metadata"]["labels"]
        assert workload["spec"]["selector"]["matchLabels"].items() <= labels.items()
    for pdb in objects(docs, "PodDisruptionBudget"):
        selector = pdb["spec"]["selector"]["matchLabels"]
        assert any(selector.items() <= w["spec"]["template"]["metadata"]["labels"].items()
                   for w in workloads(docs)), f"PDB {pdb['metadata']['name']} selects no pods"
    for hpa in objects(docs, "HorizontalPodAutoscaler"):
        target = hpa["spec"]["scaleTargetRef"]
        deployment = named(docs, target["kind"], target["name"])
        assert "replicas" not in deployment["spec"], "the HPA owns the replicas of its target"
        assert 1 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]
        for container in pod_spec(deployment)["containers"]:
            assert "cpu" in container["resources"]["requests"], "CPU utilisation needs CPU requests"


def test_hub_and_serving_run_modelhub_serve_with_their_roles(rendered):
    name, docs = rendered
    roles = {}
    for workload, container in modelhub_containers(docs):
        argv = image_command(container)
        assert argv[:2] == ["modelhub", "serve"], argv
        options = serve_options(argv)
        roles[workload["metadata"]["name"]] = options["role"]
        from serving.devices import check_device

        check_device(options["device"])
        # the image variant is the tag's suffix: 0.1.0 (CPU), 0.1.0-gpu, 0.1.0-tpu
        tag = container["image"].rsplit(":", 1)[-1]
        variant = tag.rsplit("-", 1)[1] if "-" in tag else "cpu"
        if options["role"] == "serving":
            assert options["device"] == SERVING_DEVICE[name]
            assert variant == SERVING_DEVICE[name], f"{name}: serving runs {container['image']}"
        else:
            assert variant == "cpu", f"{name}: the hub runs the CPU image, not {container['image']}"
    assert roles == {"modelhub-hub": "hub", "modelhub-serving": "serving"}, roles
    for kind in ("Deployment", "HorizontalPodAutoscaler", "PodDisruptionBudget"):
        assert "modelhub-serving" in {d["metadata"]["name"] for d in objects(docs, kind)}
    assert "modelhub-hub" in {d["metadata"]["name"] for d in objects(docs, "PodDisruptionBudget")}


def test_termination_grace_period_covers_graceful_shutdown(rendered):
    _, docs = rendered
    for workload, container in modelhub_containers(docs):
        options = serve_options(image_command(container))
        pre_stop = container.get("lifecycle", {}).get("preStop", {}).get("exec", {}).get("command", [])
        sleep = int(pre_stop[1]) if pre_stop[:1] == ["sleep"] else 0
        grace = pod_spec(workload)["terminationGracePeriodSeconds"]
        needed = sleep + options["graceful_timeout"]
        assert needed <= grace <= needed + 10, (
            f"{workload['metadata']['name']}: terminationGracePeriodSeconds {grace} should match "
            f"preStop {sleep}s + --graceful-timeout {options['graceful_timeout']}s")


def test_pods_are_locked_down_and_bounded(rendered):
    name, docs = rendered
    for workload, container in modelhub_containers(docs):
        spec = pod_spec(workload)
        where = f"k8s/{name}: {workload['metadata']['name']}"
        assert spec["securityContext"]["runAsNonRoot"] is True, where
        # the image's USER, so files the image gives that user stay writable
        image_user = [rest for keyword, rest in final_stage() if keyword == "USER"][-1]
        assert str(spec["securityContext"]["runAsUser"]) == image_user.split(":")[0], where
        assert spec["serviceAccountName"] == "modelhub", where
        # Kubernetes' service links would put MODELHUB_*_SERVICE_HOST etc. into the app's settings
        assert spec["enableServiceLinks"] is False, where
        assert container["securityContext"]["allowPrivilegeEscalation"] is False, where
        resources = container["resources"]
        assert {"cpu", "memory"} <= set(resources["requests"]) and {"cpu", "memory"} <= set(resources["limits"]), where
        # the caches must be writable: they are on volumes, the root file system is read-only
        mounts = {m["mountPath"] for m in container["volumeMounts"]}
        env = {e["name"]: e.get("value") for e in container.get("env", [])}
        for setting in ("MODELHUB_SERVING_CACHE", "MODELHUB_CACHE"):
            assert any(env[setting].startswith(m + "/") for m in mounts), f"{where}: {setting}"
        assert "/tmp" in mounts, where


def test_references_resolve_and_settings_are_known(rendered):
    name, docs = rendered
    present = {(d["kind"], d["metadata"]["name"]) for d in docs}
    template = yaml.safe_load(SECRET_TEMPLATE.read_text())
    namespaces = {d["metadata"].get("namespace") for d in docs if d["kind"] != "Namespace"}
    assert namespaces == {"modelhub"} and ("Namespace", "modelhub") in present

    def secret_exists(secret: str, key: str | None = None) -> None:
        if ("Secret", secret) in present:
            data = {**named(docs, "Secret", secret).get("data", {}),
                    **named(docs, "Secret", secret).get("stringData", {})}
        else:
            assert secret == EXTERNAL_SECRET and name != "overlays/dev", \
                f"k8s/{name} refers to a Secret {secret} that is neither rendered nor documented"
            data = template["stringData"]
        assert key is None or key in data, f"k8s/{name}: Secret {secret} has no key {key}"

    for workload in workloads(docs):
        spec = pod_spec(workload)
        if "serviceAccountName" in spec:
            assert ("ServiceAccount", spec["serviceAccountName"]) in present
        for container in spec["containers"]:
            for source in container.get("envFrom", []):
                if "configMapRef" in source:
                    assert ("ConfigMap", source["configMapRef"]["name"]) in present, source
                if "secretRef" in source:
                    secret_exists(source["secretRef"]["name"])
            for variable in container.get("env", []):
                ref = variable.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    secret_exists(ref["name"], ref["key"])
    known = known_settings()
    for config in objects(docs, "ConfigMap"):
        unknown = {k for k in config["data"] if k.startswith("MODELHUB_")} - known
        assert not unknown, f"k8s/{name}: settings the app does not read: {unknown}"
        store = config["data"]["MODELHUB_STORE"]
        assert store.startswith("s3://"), "on Kubernetes the store is S3"
    for _, container in modelhub_containers(docs):
        unknown = {e["name"] for e in container.get("env", []) if e["name"].startswith("MODELHUB_")} - known
        assert not unknown, f"k8s/{name}: settings the app does not read: {unknown}"


def test_dev_overlay_runs_minio_and_points_the_apps_at_it(kustomize_available):
    docs = _render("overlays/dev")
    minio = named(docs, "StatefulSet", "modelhub-minio")
    claims = minio["spec"]["volumeClaimTemplates"]
    assert claims and claims[0]["spec"]["resources"]["requests"]["storage"]
    mounted = {m["name"] for c in pod_spec(minio)["containers"] for m in c.get("volumeMounts", [])}
    assert claims[0]["metadata"]["name"] in mounted
    service = named(docs, "Service", minio["spec"]["serviceName"])
    s3_port = next(p["port"] for p in service["spec"]["ports"] if p["name"] == "s3")
    config = objects(docs, "ConfigMap")[0]["data"]
    assert config["AWS_ENDPOINT_URL_S3"] == f"http://{service['metadata']['name']}:{s3_port}"
    bucket = config["MODELHUB_STORE"].removeprefix("s3://").split("/")[0]
    job = named(docs, "Job", "modelhub-create-bucket")
    env = {e["name"]: e.get("value") for e in pod_spec(job)["containers"][0]["env"]}
    assert env["BUCKET"] == bucket and env["AWS_ENDPOINT_URL_S3"] == config["AWS_ENDPOINT_URL_S3"]
    assert "mc mb --ignore-existing" in " ".join(pod_spec(job)["containers"][0]["command"])
    assert ("Secret", EXTERNAL_SECRET) in {(d["kind"], d["metadata"]["name"]) for d in docs}


def serving_pod(name: str) -> tuple[dict, dict]:
    deployment = named(_render(name), "Deployment", "modelhub-serving")
    return pod_spec(deployment), pod_spec(deployment)["containers"][0]


def test_gpu_overlay_schedules_serving_on_nvidia_gpus(kustomize_available):
    spec, container = serving_pod("overlays/gpu")
    assert int(container["resources"]["limits"]["nvidia.com/gpu"]) >= 1
    assert any(t["key"] == "nvidia.com/gpu" for t in spec["tolerations"])
    assert spec["nodeSelector"]
    assert serve_options(image_command(container))["device"] == "gpu"
    hub = pod_spec(named(_render("overlays/gpu"), "Deployment", "modelhub-hub"))
    assert "nvidia.com/gpu" not in hub["containers"][0]["resources"].get("limits", {})


def test_tpu_overlay_schedules_serving_on_gke_tpus(kustomize_available):
    spec, container = serving_pod("overlays/tpu")
    resources = container["resources"]
    assert int(resources["limits"]["google.com/tpu"]) == int(resources["requests"]["google.com/tpu"]) >= 1
    assert {"cloud.google.com/gke-tpu-accelerator", "cloud.google.com/gke-tpu-topology"} <= set(spec["nodeSelector"])
    assert any(t["key"] == "google.com/tpu" for t in spec["tolerations"])
    assert serve_options(image_command(container))["device"] == "tpu"
