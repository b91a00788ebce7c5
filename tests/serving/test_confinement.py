"""Landlock confinement of a worker (`serving.confinement`). Confinement cannot be undone, so
every test that confines does it in a child process (`sys.executable -c`), which loads the module
from its file alone (not through `serving/__init__`, which imports numpy and more) and prints
what it saw as JSON for the assertions here. Those tests are skipped where the kernel has no
Landlock; the tests of an unsupported kernel run everywhere."""
from __future__ import annotations

import errno
import json
import os
import socket
import subprocess
import sys
import textwrap

import pytest

from serving import confinement
from serving.confinement import Confinement, confine, default_paths, landlock_abi
from tests.support.processes import REPO, free_port, stop_process, wait_for_port

ABI = landlock_abi()
needs_landlock = pytest.mark.skipif(ABI == 0, reason="the kernel offers no Landlock")

#: What every child runs first: the module from its file, and a helper that turns an attempt
#: into "ok", "denied" (PermissionError) or the error's name.
PRELUDE = textwrap.dedent(f"""
    import importlib.util, json, os, sys
    spec = importlib.util.spec_from_file_location(
        "confinement", {str(REPO / "serving" / "confinement.py")!r})
    confinement = importlib.util.module_from_spec(spec)
    sys.modules["confinement"] = confinement
    spec.loader.exec_module(confinement)
    results = {{}}

    def attempt(name, action):
        try:
            action()
            results[name] = "ok"
        except PermissionError:
            results[name] = "denied"
        except Exception as e:  # TensorFlow's errors, or anything unexpected
            results[name] = type(e).__name__ + ": " + str(e)[:200]

    def report(c):
        results["confinement"] = {{k: list(v) if isinstance(v, tuple) else v
                                  for k, v in vars(c).items()}}
""")


def run_child(code: str, tmp_path, env: dict | None = None, timeout: float = 180) -> dict:
    """Run PRELUDE + code in a fresh interpreter; the results it printed as its last line."""
    scratch = tmp_path / "child-tmp"
    scratch.mkdir(exist_ok=True)
    child_env = {**os.environ, "TMPDIR": str(scratch), "TF_CPP_MIN_LOG_LEVEL": "3",
                 **(env or {})}
    program = PRELUDE + textwrap.dedent(code) + "\nprint(json.dumps(results))\n"
    done = subprocess.run([sys.executable, "-c", program], cwd=tmp_path, env=child_env,
                          capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"child failed:\n{done.stdout}\n{done.stderr[-4000:]}"
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.fixture
def listeners():
    """Two TCP servers on 127.0.0.1: (the port the child is allowed, the port it is not)."""
    sockets = []
    for _ in range(2):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        s.listen(8)
        sockets.append(s)
    yield tuple(s.getsockname()[1] for s in sockets)
    for s in sockets:
        s.close()


@needs_landlock
def test_files_modules_and_tcp_of_a_confined_process(tmp_path, listeners):
    read_dir, write_dir, other_dir = (tmp_path / name for name in ("a", "b", "c"))
    for folder in (read_dir, write_dir, other_dir):
        folder.mkdir()
    (read_dir / "model.txt").write_text("weights")
    (other_dir / "secret.txt").write_text("secret")
    allowed, refused = listeners

    results = run_child(f"""
        import socket
        results["numpy imported before"] = "numpy" in sys.modules
        ro, rw = confinement.default_paths({str(read_dir)!r}, temp_dir={str(write_dir)!r})
        c = confinement.confine(ro, rw, connect_ports=[{allowed}])
        report(c)

        attempt("read granted", lambda: open({str(read_dir / "model.txt")!r}).read())
        attempt("write read-only", lambda: open({str(read_dir / "new.txt")!r}, "w").close())
        attempt("write granted", lambda: open({str(write_dir / "out.txt")!r}, "w").write("x"))
        attempt("mkdir granted", lambda: os.mkdir({str(write_dir / "sub")!r}))
        attempt("tempfile", lambda: __import__("tempfile").NamedTemporaryFile().close())
        attempt("read /etc/passwd", lambda: open("/etc/passwd").read())
        attempt("read not granted", lambda: open({str(other_dir / "secret.txt")!r}).read())
        attempt("list not granted", lambda: os.listdir({str(other_dir)!r}))
        attempt("read own environ", lambda: open("/proc/self/environ").read())
        attempt("read own stat", lambda: open("/proc/self/stat").read())
        attempt("write /dev/null", lambda: open("/dev/null", "w").write("x"))

        def numpy_works():
            import numpy as np
            assert int(np.arange(10).sum()) == 45
        attempt("import numpy", numpy_works)

        def connect(port):
            with socket.create_connection(("127.0.0.1", port), timeout=10):
                pass
        attempt("connect allowed port", lambda: connect({allowed}))
        attempt("connect other port", lambda: connect({refused}))
    """, tmp_path, env={"TMPDIR": str(write_dir)})

    c = results["confinement"]
    assert c["enforced"] and c["abi"] == ABI and c["reason"] == "", c
    assert str(read_dir) in c["read_only"] and str(write_dir) in c["read_write"]
    assert not results["numpy imported before"]
    assert results["read granted"] == "ok"
    assert results["write read-only"] == "denied"
    assert results["write granted"] == "ok" and (write_dir / "out.txt").read_text() == "x"
    assert results["mkdir granted"] == "ok"
    assert results["tempfile"] == "ok"
    assert results["read /etc/passwd"] == "denied"
    assert results["read not granted"] == "denied"
    assert results["list not granted"] == "denied"
    assert results["read own environ"] == "denied"  # the store's credentials stay out of reach
    assert results["read own stat"] == "ok"
    assert results["write /dev/null"] == "ok"
    assert results["import numpy"] == "ok"  # imports from site-packages still work
    assert results["connect allowed port"] == "ok"
    if ABI >= 4:
        assert c["tcp_restricted"] and c["connect_ports"] == [allowed]
        assert results["connect other port"] == "denied"
    else:  # no network rules before ABI 4
        assert not c["tcp_restricted"] and results["connect other port"] == "ok"
    assert c["scoped"] == (ABI >= 6)


@needs_landlock
def test_tcp_left_alone_when_asked(tmp_path, listeners):
    _, port = listeners
    results = run_child(f"""
        import socket
        ro, rw = confinement.default_paths(os.getcwd() + "/cache")
        c = confinement.confine(ro, rw, restrict_tcp=False)
        report(c)
        attempt("connect",
                lambda: socket.create_connection(("127.0.0.1", {port}), timeout=10).close())
        attempt("read /etc/passwd", lambda: open("/etc/passwd").read())
    """, tmp_path)
    assert results["confinement"]["enforced"] and not results["confinement"]["tcp_restricted"]
    assert results["connect"] == "ok" and results["read /etc/passwd"] == "denied"


@needs_landlock
def test_threads_started_before_confine(tmp_path):
    """Before ABI 8 only the calling thread (and the threads it starts later) is restricted: a
    thread already running stays free, and the result says so. With ABI 8 (TSYNC) it is not."""
    results = run_child("""
        import threading
        go, done = threading.Event(), threading.Event()
        def early():
            go.wait()
            attempt("early thread reads /etc/passwd", lambda: open("/etc/passwd").read())
            done.set()
        threading.Thread(target=early).start()
        ro, rw = confinement.default_paths(os.getcwd() + "/cache")
        report(confinement.confine(ro, rw))
        go.set()
        done.wait()
        later = threading.Thread(target=lambda: attempt(
            "later thread reads /etc/passwd", lambda: open("/etc/passwd").read()))
        later.start()
        later.join()
        attempt("main thread reads /etc/passwd", lambda: open("/etc/passwd").read())
    """, tmp_path)
    c = results["confinement"]
    assert c["enforced"]
    assert results["main thread reads /etc/passwd"] == "denied"
    assert results["later thread reads /etc/passwd"] == "denied"
    if ABI >= 8:
        assert c["all_threads"] and c["unconfined_threads"] == 0
        assert results["early thread reads /etc/passwd"] == "denied"
    else:
        assert not c["all_threads"] and c["unconfined_threads"] >= 1
        assert results["early thread reads /etc/passwd"] == "ok"


@needs_landlock
@pytest.mark.parametrize("order", ["import tensorflow, then confine",
                                   "confine, then import tensorflow"])
def test_tensorflow_computes_but_cannot_read_outside(tmp_path, order):
    """TensorFlow starts its thread pools at its first op, not at import: both orders leave no
    TensorFlow thread outside the confinement, so ReadFile is refused eagerly, inside a
    tf.function (run on the inter-op pool) and in tf.data (its own threads)."""
    tf_first = order.startswith("import")
    results = run_child(f"""
        if {tf_first}:
            import tensorflow as tf
        ro, rw = confinement.default_paths(os.getcwd() + "/cache")
        report(confinement.confine(ro, rw))
        import tensorflow as tf

        def compute():
            assert (tf.constant([1.0]) * 2).numpy().tolist() == [2.0]
        attempt("compute", compute)

        @tf.function
        def total(x):
            return tf.reduce_sum(x * x)
        def graph():
            assert float(total(tf.ones([64, 64]))) == 4096.0
        attempt("tf.function", graph)

        def denied(action):
            def run():
                try:
                    action()
                except (tf.errors.PermissionDeniedError, tf.errors.NotFoundError) as e:
                    raise PermissionError(str(e)) from None
            return run
        attempt("eager ReadFile", denied(lambda: tf.io.read_file("/etc/passwd").numpy()))
        read_in_graph = tf.function(lambda: tf.io.read_file("/etc/passwd"))
        attempt("graph ReadFile", denied(lambda: read_in_graph().numpy()))
        dataset = tf.data.Dataset.from_tensor_slices(["/etc/passwd"] * 4).map(
            tf.io.read_file, num_parallel_calls=4)
        attempt("tf.data ReadFile", denied(lambda: list(dataset)))
    """, tmp_path)
    assert results["confinement"]["enforced"], results["confinement"]
    assert results["compute"] == "ok"
    assert results["tf.function"] == "ok"
    assert results["eager ReadFile"] == "denied"
    assert results["graph ReadFile"] == "denied"
    assert results["tf.data ReadFile"] == "denied"


PROBE_APP = '''
def app(environ, start_response):
    try:
        open("/etc/passwd").read()
        body = b"read"
    except PermissionError:
        body = b"denied"
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [body]
'''


@needs_landlock
def test_a_gunicorn_worker_confined_in_post_fork(tmp_path):
    """As the server is to do it: gunicorn's gthread worker confines itself in `post_fork`, then
    accepts on the socket the master bound and runs the app on request threads it starts after
    the confinement, which therefore cannot read /etc/passwd either."""
    app_dir = tmp_path / "app"
    app_dir.mkdir()
    (app_dir / "probe_app.py").write_text(PROBE_APP)
    config = tmp_path / "gunicorn_conf.py"
    config.write_text(PRELUDE + textwrap.dedent(f"""
        def post_fork(server, worker):
            ro, rw = confinement.default_paths({str(tmp_path / "cache")!r})
            c = confinement.confine(ro, rw)
            server.log.info("confinement enforced=%s unconfined_threads=%s reason=%s",
                            c.enforced, c.unconfined_threads, c.reason)
    """))
    port, log = free_port(), tmp_path / "gunicorn.log"
    with open(log, "w") as out:
        server = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", str(config), "--bind", f"127.0.0.1:{port}",
             "--worker-class", "gthread", "--threads", "4", "--workers", "1",
             "--no-control-socket", "--chdir", str(app_dir), "probe_app:app"],
            cwd=tmp_path, stdout=out, stderr=subprocess.STDOUT,
            env={**os.environ, "TMPDIR": str(tmp_path)})
    try:
        wait_for_port(port, process=server)
        bodies = []
        for _ in range(4):
            with socket.create_connection(("127.0.0.1", port), timeout=30) as conn:
                conn.sendall(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n")
                response = b"".join(iter(lambda: conn.recv(65536), b""))
            bodies.append(response.partition(b"\r\n\r\n")[2])
    finally:
        stop_process(server)
    assert bodies == [b"denied"] * 4, log.read_text()
    assert "confinement enforced=True unconfined_threads=0 reason=" in log.read_text()


def test_wrong_arguments_raise_before_anything_is_restricted(tmp_path):
    results = run_child("""
        attempt("one path, not a list", lambda: confinement.confine("/usr", []))
        attempt("bytes path", lambda: confinement.confine([b"/usr"], []))
        attempt("port out of range", lambda: confinement.confine([], [], connect_ports=[70000]))
        attempt("unknown package",
                lambda: confinement.default_paths("/x", packages=["no_such_pkg_x"]))
        attempt("still free", lambda: open("/etc/passwd").read())
    """, tmp_path)
    assert results["one path, not a list"].startswith("TypeError")
    assert results["bytes path"].startswith("TypeError")
    assert results["port out of range"].startswith("ValueError")
    assert results["unknown package"].startswith("ValueError")
    assert results["still free"] == "ok"


def test_landlock_abi_is_an_int_and_never_raises(monkeypatch):
    assert isinstance(ABI, int) and ABI >= 0

    def broken(*args):
        raise RuntimeError("libc unavailable")
    monkeypatch.setattr(confinement, "_libc", broken)
    assert landlock_abi() == 0


@pytest.mark.skipif(sys.platform != "linux", reason="the probe itself is Linux-only")
@pytest.mark.parametrize("code, reason", [(errno.ENOSYS, "no Landlock"),
                                          (errno.EOPNOTSUPP, "not enabled")])
def test_a_kernel_without_landlock_leaves_the_process_alone(monkeypatch, code, reason):
    """Safe in this process: nothing reaches the kernel once the version probe fails."""
    def syscall(libc, number, *args):
        assert number == confinement._SYS_CREATE_RULESET and args[-1] == 1, "only the probe"
        raise OSError(code, os.strerror(code))
    monkeypatch.setattr(confinement, "_syscall", syscall)
    assert landlock_abi() == 0
    result = confine(["/usr"], ["/tmp"], connect_ports=[443])
    assert result == Confinement(abi=0, enforced=False, read_only=("/usr",),
                                 read_write=("/tmp",), reason=result.reason)
    assert reason in result.reason


def test_an_unknown_machine_is_not_probed(monkeypatch):
    monkeypatch.setattr(confinement.platform, "machine", lambda: "vax")
    assert landlock_abi() == 0
    assert "vax" in confine([], []).reason


def test_default_paths(tmp_path, monkeypatch):
    cache, scratch, metrics = tmp_path / "cache", tmp_path / "scratch", tmp_path / "metrics"
    for folder in (cache, scratch, metrics):
        folder.mkdir()
    read, write = default_paths(cache, extra_write=[metrics, tmp_path / "absent"],
                                temp_dir=scratch)
    assert sorted(write) == sorted([str(scratch), str(metrics), "/dev/null"])
    assert all(os.path.isabs(p) and p != "/" for p in read + write)
    assert all(os.path.exists(p) for p in read + write)
    covered = lambda path: any(path == p or path.startswith(p.rstrip("/") + "/") for p in read)
    assert covered(str(cache))
    assert covered(os.path.realpath(sys.prefix)) and covered(os.path.realpath(sys.base_prefix))
    assert covered(os.path.realpath(confinement.__file__))  # modules already imported
    assert covered(os.path.realpath(json.__file__))  # the standard library
    assert covered(os.path.realpath("/etc/ld.so.cache")) or not os.path.exists("/etc/ld.so.cache")
    assert "/proc/self/stat" in read
    for secret in ("/etc/passwd", "/etc", "/proc/self/environ", "/proc/self/mem", "/proc",
                   os.path.expanduser("~")):
        assert not covered(secret), secret
    # nested paths are folded into the outer one
    assert not any(a != b and a.startswith(b.rstrip("/") + "/") for a in read for b in read)
    resolv = os.path.realpath("/etc/resolv.conf")
    if os.path.exists(resolv):
        assert not covered(resolv)
        assert resolv in default_paths(cache, temp_dir=scratch, network_client=True)[0]
