"""Confining a serving worker with Linux Landlock: the worker keeps the files and ports it needs,
and a model it runs (a TensorFlow graph can read and write files, and some ops reach the network)
gets nothing else.

Landlock is a Linux security module (5.13+) that lets an unprivileged process take rights away
from itself, for good: once `landlock_restrict_self` has run, the process can open only what the
ruleset grants (file hierarchies, each with a set of rights), bind and connect TCP only on the
ports it grants (ABI 4+), and, with scoping (ABI 6+), neither reach abstract UNIX sockets nor send
signals outside its own Landlock domain. What was already open stays usable: the listening
socket, stdout/stderr and any other descriptor opened before confinement. The restriction is
inherited by every thread and process the confined thread creates later, and it cannot be lifted.

Landlock versions its features as an ABI number (`landlock_abi()`); the ruleset is built from what
the running kernel offers, so one call works from ABI 1 (5.13) to ABI 8 (TSYNC, Linux 7.0):

=====  =======================================================================================
ABI 1  file rights: execute, read/write files, read directories, make/remove entries
ABI 2  REFER: moving or linking a file between directories (always refused under ABI 1)
ABI 3  TRUNCATE
ABI 4  TCP: bind and connect, by port
ABI 5  IOCTL_DEV: ioctl on device files
ABI 6  scoping: abstract UNIX sockets and signals stay inside the domain
ABI 7  audit-logging flags (not used here: the kernel's defaults are kept)
ABI 8  TSYNC: one call restricts every thread of the process, not only the calling one
=====  =======================================================================================

Threads (the one thing to get right when integrating): before ABI 8, `landlock_restrict_self`
restricts only the calling thread and the threads it creates afterwards. Threads that already
run when `confine()` is called (TensorFlow's thread pools, OpenBLAS's, a gthread worker's request
threads, or any thread they start later) stay unrestricted, and anything running on them (a
TensorFlow op scheduled on a pool thread, say) escapes the sandbox. With ABI 8, `confine()` passes
LANDLOCK_RESTRICT_SELF_TSYNC and the kernel restricts every thread of the process at once. Without
it, `confine()` must run while the process has a single thread: in gunicorn's `post_fork` hook,
which runs in the new worker (fork leaves only the forking thread) before the worker starts its
threads and before the app imports TensorFlow. `Confinement.unconfined_threads` says how many
threads were left out, so the caller can refuse to serve when it is not 0.

Measured on Linux 6.18 (ABI 7) with TensorFlow 2.21: TensorFlow starts its thread pools at its
first op, not at import. With one op run before `confine()`, an eager `tf.io.read_file` of
/etc/passwd was refused (eager ops run on the calling thread) but the same read inside a
`tf.function` succeeded: it ran on an inter-op pool thread started before the confinement. With
`confine()` before the first op, eager, `tf.function` and `tf.data` reads were all refused.
Importing this module imports the `serving` package, hence numpy, whose OpenBLAS starts a thread
per CPU at import: import it in the master, before the fork (a forked child has no thread but the
forking one, and OpenBLAS restarts its pool lazily, after the confinement).

What Landlock (up to ABI 8) does not restrict, so the confinement does not either: stat, access,
readlink, chdir and path walks (a confined process still sees which files exist and their
metadata), chmod/chown/utime, already-open descriptors, UDP, UNIX sockets bound to a path (only
TCP bind and connect are handled), and what the process already holds in memory (credentials
read before confinement included). It is one layer: the container's own limits (user, read-only
root file system, seccomp, network policy) still apply on top.

The module logs nothing: `confine()` returns what it did (or why it did nothing) and the caller
logs it. It never raises for what the kernel lacks or refuses; only for wrong arguments.
"""
from __future__ import annotations

import ctypes
import errno
import glob
import importlib.util
import os
import platform
import stat
import sys
import sysconfig
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

# --- the kernel interface (include/uapi/linux/landlock.h) ------------------------------------

#: The Landlock system calls came after Linux unified syscall numbers: the same on every
#: architecture below (alpha and mips number them with an offset; they are not supported here).
_SYS_CREATE_RULESET, _SYS_ADD_RULE, _SYS_RESTRICT_SELF = 444, 445, 446
_MACHINES = {"x86_64", "amd64", "i386", "i686", "aarch64", "arm64", "armv7l", "armv8l",
             "riscv64", "ppc64le", "ppc64", "s390x", "loongarch64"}
_PR_SET_NO_NEW_PRIVS = 38
_CREATE_RULESET_VERSION = 1 << 0  # flag of landlock_create_ruleset: return the ABI version
_RULE_PATH_BENEATH, _RULE_NET_PORT = 1, 2
_RESTRICT_SELF_TSYNC = 1 << 3     # ABI 8: restrict every thread of the process

# File-system rights (landlock_ruleset_attr.handled_access_fs), with the ABI that added each.
FS_EXECUTE = 1 << 0
FS_WRITE_FILE = 1 << 1
FS_READ_FILE = 1 << 2
FS_READ_DIR = 1 << 3
FS_REMOVE_DIR = 1 << 4
FS_REMOVE_FILE = 1 << 5
FS_MAKE_CHAR = 1 << 6
FS_MAKE_DIR = 1 << 7
FS_MAKE_REG = 1 << 8
FS_MAKE_SOCK = 1 << 9
FS_MAKE_FIFO = 1 << 10
FS_MAKE_BLOCK = 1 << 11
FS_MAKE_SYM = 1 << 12
FS_REFER = 1 << 13       # ABI 2
FS_TRUNCATE = 1 << 14    # ABI 3
FS_IOCTL_DEV = 1 << 15   # ABI 5
# Network rights (handled_access_net, ABI 4) and scopes (scoped, ABI 6).
NET_BIND_TCP = 1 << 0
NET_CONNECT_TCP = 1 << 1
SCOPE_ABSTRACT_UNIX_SOCKET = 1 << 0
SCOPE_SIGNAL = 1 << 1

#: Every file-system right each ABI handles: handled_access_fs must not name one the running
#: kernel does not know (EINVAL), so it is masked to the ABI.
_FS_BY_ABI = {1: (1 << 13) - 1, 2: (1 << 14) - 1, 3: (1 << 15) - 1, 4: (1 << 15) - 1,
              5: (1 << 16) - 1}
#: The rights that apply to a file itself; a rule on a non-directory may grant only these
#: (anything else is EINVAL: making or removing entries, reading a directory, REFER).
_FS_FILE_RIGHTS = FS_EXECUTE | FS_WRITE_FILE | FS_READ_FILE | FS_TRUNCATE | FS_IOCTL_DEV
#: What a read-only path grants: reading files and listing directories, and executing (shared
#: libraries are mapped, not executed, but a library directory may hold helper programs).
_READ_ONLY = FS_EXECUTE | FS_READ_FILE | FS_READ_DIR
#: What a read-write path grants: everything but executing, so a file the worker (or a model)
#: writes can never be run from there.
_READ_WRITE = ~FS_EXECUTE & ((1 << 16) - 1)


class _RulesetAttr(ctypes.Structure):
    _fields_ = [("handled_access_fs", ctypes.c_uint64),
                ("handled_access_net", ctypes.c_uint64),  # ABI 4
                ("scoped", ctypes.c_uint64)]              # ABI 6


class _PathBeneathAttr(ctypes.Structure):
    _pack_ = 1  # __attribute__((packed)): 12 bytes
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


class _NetPortAttr(ctypes.Structure):
    _fields_ = [("allowed_access", ctypes.c_uint64), ("port", ctypes.c_uint64)]


#: The O_PATH descriptors the rules were made from, kept open for the life of the process. A rule
#: belongs to an inode; procfs builds a new inode for /proc/<pid>/... whenever the dentry has been
#: reclaimed, which silently drops the grant (seen: after `echo 2 > /proc/sys/vm/drop_caches`, a
#: confined process could no longer read its granted /proc/self/stat once these were closed). An
#: open descriptor keeps the dentry, hence the inode. (A few dozen descriptors, close-on-exec.)
_kept_open: list[int] = []


class _Failed(Exception):
    """A kernel call failed: the confinement is not enforced, for this reason."""


def _libc():
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    libc.prctl.restype = ctypes.c_int
    return libc


def _syscall(libc, number: int, *args) -> int:
    """syscall(2): integers passed as full machine words (the call is variadic), structures by
    reference."""
    ctypes.set_errno(0)
    words = [ctypes.byref(a) if isinstance(a, ctypes.Structure)
             else a if isinstance(a, ctypes.c_void_p) else ctypes.c_long(a) for a in args]
    result = libc.syscall(ctypes.c_long(number), *words)
    if result < 0:
        raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()))
    return result


def _probe() -> tuple[int, str]:
    """(ABI version, why 0 when it is 0)."""
    if sys.platform != "linux":
        return 0, f"not Linux ({sys.platform})"
    machine = platform.machine().lower()
    if machine not in _MACHINES:
        return 0, f"Landlock syscall numbers unknown for {machine}"
    try:
        abi = _syscall(_libc(), _SYS_CREATE_RULESET, ctypes.c_void_p(None), 0,
                       _CREATE_RULESET_VERSION)
    except OSError as e:
        if e.errno == errno.ENOSYS:
            return 0, "kernel has no Landlock (ENOSYS)"
        if e.errno == errno.EOPNOTSUPP:
            return 0, "Landlock is built in but not enabled at boot (EOPNOTSUPP)"
        return 0, f"Landlock unavailable: {e.strerror} ({errno.errorcode.get(e.errno, e.errno)})"
    return abi, ""


def landlock_abi() -> int:
    """The Landlock ABI version the kernel offers (1, 2, ...), or 0 without Landlock. Never
    raises."""
    try:
        return _probe()[0]
    except Exception:  # e.g. ctypes unable to load libc: no Landlock for us either way
        return 0


# --- confining the process -------------------------------------------------------------------

@dataclass(frozen=True)
class Confinement:
    """What `confine()` did, for the caller to log.

    `read_only`/`read_write` are the paths the rules name (existing ones, deduplicated, in the
    order given; `skipped` lists the given paths that did not exist). When `enforced` is False
    nothing is restricted and `reason` says why.
    """
    abi: int                    #: the kernel's Landlock ABI; 0 when Landlock is unavailable
    enforced: bool
    read_only: tuple[str, ...]  #: granted read (and execute)
    read_write: tuple[str, ...]  #: granted read and write (no execute)
    reason: str                 #: why it is not enforced ("" when it is)
    skipped: tuple[str, ...] = ()        #: given paths that do not exist or are out of reach
    tcp_restricted: bool = False         #: TCP bind/connect limited to the ports below (ABI 4+)
    connect_ports: tuple[int, ...] = ()  #: TCP ports the worker may connect to
    bind_ports: tuple[int, ...] = ()     #: TCP ports the worker may bind
    scoped: bool = False                 #: abstract UNIX sockets and signals scoped (ABI 6+)
    all_threads: bool = False            #: every thread restricted at once (TSYNC, ABI 8+)
    #: threads already running at confinement that stay unrestricted (no TSYNC): 0 is the goal
    unconfined_threads: int = 0


def _paths(paths: Iterable[str | os.PathLike], what: str) -> list[str]:
    if isinstance(paths, (str, bytes, os.PathLike)):
        raise TypeError(f"{what} must be an iterable of paths, not one path: {paths!r}")
    out = []
    for path in paths:
        if not isinstance(path, (str, os.PathLike)):
            raise TypeError(f"{what}: {path!r} is not a path")
        path = os.fspath(path)
        if not isinstance(path, str) or not path:
            raise TypeError(f"{what}: {path!r} is not a non-empty str path")
        out.append(os.path.abspath(path))
    return list(dict.fromkeys(out))


def _ports(ports: Iterable[int], what: str) -> tuple[int, ...]:
    out = []
    for port in ports:
        if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
            raise ValueError(f"{what}: {port!r} is not a TCP port (0-65535)")
        out.append(port)
    return tuple(sorted(set(out)))


def _thread_count() -> int:
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        return 1  # unknown; procfs not mounted


def confine(read_only: Iterable[str | os.PathLike], read_write: Iterable[str | os.PathLike], *,
            connect_ports: Iterable[int] = (), bind_ports: Iterable[int] = (),
            restrict_tcp: bool = True, scope: bool = True) -> Confinement:
    """Restrict this process, irreversibly, to `read_only` (read and execute) and `read_write`
    (read and write, no execute) paths, and (ABI 4+) TCP to `connect_ports`/`bind_ports`.

    Call it in the worker process, before the worker starts threads and before TensorFlow is
    imported (gunicorn's `post_fork`): before ABI 8 Landlock restricts only the calling thread
    and the threads it creates afterwards, so threads already running stay unrestricted
    (reported in `unconfined_threads`). With ABI 8 the kernel restricts every thread (TSYNC).

    Paths: a directory grants its whole hierarchy; a file grants that file only (and only the
    rights that apply to a file); a path that does not exist is skipped; symlinks are followed
    (the rule is on the target). A path in both lists gets both sets of rights.

    Network (ABI 4+, when `restrict_tcp`): TCP `bind` and `connect` are refused except to the
    given ports (port 0 in `bind_ports` allows binding an ephemeral port). Accepting on a socket
    bound before confinement (gunicorn's listener) is not affected, nor are UDP (DNS) and UNIX
    sockets bound to a path. A worker that reads an S3 store must be given the store's port
    (443, or the port of AWS_ENDPOINT_URL_S3); nothing else needs outbound TCP, so a model's ops
    (a gRPC debug callback, a remote file system) cannot reach out. One side effect: urllib3
    (under boto3 and requests) probes IPv6 at import by binding [::1]:0; refused, it resolves
    IPv4 only. An IPv6-only endpoint needs `bind_ports=[0]` (binding ephemeral ports allowed).

    Scoping (ABI 6+, when `scope`): the worker cannot connect to abstract UNIX sockets of
    processes outside its domain, nor send them signals. Signals sent to the worker (gunicorn's
    master stopping or reloading it) are unaffected: scoping limits what the confined process
    sends, and a gunicorn worker signals only itself.

    Calling it again adds a layer (at most 16): a later call can only take more rights away.

    Before restricting, no_new_privs is set (required by Landlock for an unprivileged process):
    a program the worker would exec can no longer gain privileges (setuid bits are ignored). It
    stays set even when the restriction itself then fails.

    Returns what was done; never raises for what the kernel lacks or refuses (then `enforced` is
    False and `reason` says why). Raises TypeError/ValueError for wrong arguments only.
    """
    read_only, read_write = _paths(read_only, "read_only"), _paths(read_write, "read_write")
    connect, bind = _ports(connect_ports, "connect_ports"), _ports(bind_ports, "bind_ports")
    try:
        abi, reason = _probe()
        libc = _libc() if abi else None
    except Exception as e:  # e.g. ctypes unable to load libc
        abi, reason = 0, f"Landlock unavailable: {e}"
    if abi == 0:
        return Confinement(0, False, tuple(read_only), tuple(read_write), reason)
    fs_rights = _FS_BY_ABI.get(abi, _FS_BY_ABI[5])  # ABI 5+ adds no file-system right
    tcp = restrict_tcp and abi >= 4
    scoped = scope and abi >= 6
    tsync = abi >= 8

    opened: list[int] = []
    granted: dict[str, list[str]] = {"ro": [], "rw": []}
    skipped: list[str] = []
    try:
        attr = _RulesetAttr(handled_access_fs=fs_rights,
                            handled_access_net=(NET_BIND_TCP | NET_CONNECT_TCP) if tcp else 0,
                            scoped=(SCOPE_ABSTRACT_UNIX_SOCKET | SCOPE_SIGNAL) if scoped else 0)
        # An older kernel rejects a bigger struct whose extra fields are not zero (E2BIG), so
        # pass only the fields this ABI knows.
        size = 8 if abi < 4 else 16 if abi < 6 else ctypes.sizeof(attr)
        try:
            ruleset = _syscall(libc, _SYS_CREATE_RULESET, attr, size, 0)
        except OSError as e:
            raise _Failed(f"landlock_create_ruleset: {e.strerror}") from None
        opened.append(ruleset)

        for kind, paths, rights in (("ro", read_only, _READ_ONLY), ("rw", read_write, _READ_WRITE)):
            for path in paths:
                try:
                    fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
                except (FileNotFoundError, NotADirectoryError, PermissionError):
                    skipped.append(path)  # absent, or out of this process's reach anyway
                    continue
                except OSError as e:
                    raise _Failed(f"cannot open {path}: {e.strerror}") from None
                opened.append(fd)
                allowed = rights & fs_rights
                if not stat.S_ISDIR(os.fstat(fd).st_mode):
                    allowed &= _FS_FILE_RIGHTS
                rule = _PathBeneathAttr(allowed_access=allowed, parent_fd=fd)
                try:
                    _syscall(libc, _SYS_ADD_RULE, ruleset, _RULE_PATH_BENEATH, rule, 0)
                except OSError as e:
                    raise _Failed(f"landlock_add_rule({path}): {e.strerror}") from None
                granted[kind].append(path)

        if tcp:
            for port in sorted(set(connect) | set(bind)):
                allowed = (NET_CONNECT_TCP if port in connect else 0) | \
                          (NET_BIND_TCP if port in bind else 0)
                rule = _NetPortAttr(allowed_access=allowed, port=port)
                try:
                    _syscall(libc, _SYS_ADD_RULE, ruleset, _RULE_NET_PORT, rule, 0)
                except OSError as e:
                    raise _Failed(f"landlock_add_rule(port {port}): {e.strerror}") from None

        ctypes.set_errno(0)
        if libc.prctl(_PR_SET_NO_NEW_PRIVS, ctypes.c_ulong(1), ctypes.c_ulong(0),
                      ctypes.c_ulong(0), ctypes.c_ulong(0)) != 0:
            raise _Failed(f"prctl(PR_SET_NO_NEW_PRIVS): {os.strerror(ctypes.get_errno())}")
        # Counted before restricting: afterwards /proc/self/task may be out of reach. A thread
        # started by another thread in between is missed; the count is a best effort.
        others = 0 if tsync else _thread_count() - 1
        try:
            _syscall(libc, _SYS_RESTRICT_SELF, ruleset, _RESTRICT_SELF_TSYNC if tsync else 0)
        except OSError as e:
            raise _Failed(f"landlock_restrict_self: {e.strerror}") from None
    except _Failed as e:
        for fd in opened:
            os.close(fd)
        return Confinement(abi, False, tuple(read_only), tuple(read_write), str(e),
                           skipped=tuple(skipped))
    os.close(opened.pop(0))  # the ruleset; the path descriptors stay open (see _kept_open)
    _kept_open.extend(opened)
    return Confinement(abi, True, tuple(granted["ro"]), tuple(granted["rw"]), "",
                       skipped=tuple(skipped), tcp_restricted=tcp,
                       connect_ports=connect if tcp else (), bind_ports=bind if tcp else (),
                       scoped=scoped, all_threads=tsync or others == 0,
                       unconfined_threads=others)


# --- what a serving worker needs -------------------------------------------------------------

#: Where the dynamic loader finds shared libraries TensorFlow and the wheels' extensions load
#: (libstdc++, libgcc_s, libm, glibc's NSS modules...), besides those the wheels bundle.
_LIBRARY_DIRS = ("/lib", "/lib64", "/usr/lib", "/usr/lib64", "/usr/local/lib", "/usr/local/lib64")

#: Read-only system files, each for a reason:
_SYSTEM_READ = (
    "/etc/ld.so.cache",            # the dynamic loader's index: every dlopen by name reads it
    "/etc/localtime",              # local time zone (log timestamps); usually a symlink into:
    "/usr/share/zoneinfo",         # time-zone data (time.localtime, zoneinfo)
    "/proc/cpuinfo",               # TensorFlow reads the CPU's frequency and features at start
    "/proc/stat",                  # boot time, for prometheus_client's process collector
    "/sys/devices/system/cpu",     # CPU count and caches: glibc's sysconf, OpenBLAS, TensorFlow
    "/dev/urandom",                # randomness for libraries that open it instead of getrandom()
)
#: The worker's own /proc entries, one by one rather than /proc/self as a whole, which would
#: expose /proc/self/environ (the store's credentials, to a model that reads files) and
#: /proc/self/mem. Resolved when the rules are made, so confine in the process itself.
_PROC_SELF_READ = (
    # prometheus_client's process collector (the process_* metrics of its default registry):
    "/proc/self/stat",             # CPU time, memory, start time
    "/proc/self/limits",           # max open files
    "/proc/self/fd",               # open file descriptors (listing only)
    "/proc/self/cmdline",          # the program name, read by native code TensorFlow loads
)
#: Outbound clients (boto3 to an S3 store): name resolution and TLS trust.
_NETWORK_CLIENT_READ = (
    "/etc/resolv.conf", "/etc/hosts", "/etc/nsswitch.conf", "/etc/host.conf", "/etc/gai.conf",
    "/etc/ssl", "/etc/pki", "/etc/ca-certificates", "/usr/share/ca-certificates",
)


def _loaded_library_dirs() -> set[str]:
    """The folders of the shared objects mapped into this process now."""
    found = set()
    try:
        with open("/proc/self/maps") as maps:
            for line in maps:  # address perms offset dev inode [path]
                fields = line.split(maxsplit=5)
                path = fields[5].strip() if len(fields) == 6 else ""
                if path.startswith("/") and ".so" in os.path.basename(path):
                    found.add(os.path.dirname(path))
    except OSError:
        pass
    return found


def _ld_so_conf_dirs() -> set[str]:
    """The folders /etc/ld.so.conf (and what it includes) adds to the loader's search."""
    found, seen, todo = set(), set(), ["/etc/ld.so.conf"]
    while todo:
        conf = todo.pop()
        if conf in seen:
            continue
        seen.add(conf)
        try:
            lines = Path(conf).read_text().splitlines()
        except (OSError, UnicodeDecodeError):
            continue
        for line in lines:
            line = line.split("#", 1)[0].strip()
            if line.startswith("include "):
                pattern = line.split(None, 1)[1]
                if not pattern.startswith("/"):
                    pattern = os.path.join(os.path.dirname(conf), pattern)
                todo.extend(sorted(glob.glob(pattern)))
            elif line.startswith("/"):
                found.add(line)
    return found


def _module_dirs(packages: Iterable[str]) -> set[str]:
    """The folders of the top-level modules already imported and of `packages` (found, not
    imported): where an editable install keeps code outside sys.path."""
    found = set()
    for name, module in list(sys.modules.items()):
        if "." in name or name == "__main__" or module is None:
            continue
        locations = list(getattr(module, "__path__", None) or [])
        if not locations and isinstance(getattr(module, "__file__", None), str):
            locations = [os.path.dirname(module.__file__)]
        found.update(p for p in locations if isinstance(p, str) and os.path.isabs(p))
    for name in packages:
        spec = importlib.util.find_spec(name)
        if spec is None:
            raise ValueError(f"no package {name!r} to grant")
        if spec.submodule_search_locations:
            found.update(spec.submodule_search_locations)
        elif spec.origin and os.path.isabs(spec.origin):
            found.add(os.path.dirname(spec.origin))
    return found


def _python_dirs() -> set[str]:
    """The interpreter's prefixes, its standard library and site-packages, and every absolute
    sys.path entry: whatever the worker imports after confinement must still be readable."""
    found = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix,
             os.path.dirname(os.path.realpath(sys.executable))}
    for key in ("stdlib", "platstdlib", "purelib", "platlib"):
        found.add(sysconfig.get_paths().get(key, ""))
    found.update(p for p in sys.path if isinstance(p, str) and os.path.isabs(p))
    return found


def _normalize(paths: Iterable[str]) -> list[str]:
    """Existing paths, symlinks resolved (but /proc/self kept: it must resolve in the confining
    process), without any path that is inside another one of the list, and never "/"."""
    out = set()
    for path in paths:
        if not path:
            continue
        path = os.path.abspath(path)
        if not path.startswith("/proc/self"):
            path = os.path.realpath(path)
        if path != "/" and os.path.exists(path):
            out.add(path)
    ordered = sorted(out)
    kept: list[str] = []
    for path in ordered:
        if not any(path.startswith(parent.rstrip("/") + "/") for parent in kept):
            kept.append(path)
    return kept


def default_paths(model_cache: str | os.PathLike, extra_read: Iterable[str | os.PathLike] = (),
                  extra_write: Iterable[str | os.PathLike] = (), *,
                  temp_dir: str | os.PathLike | None = None, packages: Iterable[str] = (),
                  network_client: bool = False) -> tuple[list[str], list[str]]:
    """(read_only, read_write) for `confine()`: what a serving worker needs, and nothing else.

    Read-only:
      - Python: sys.prefix and sys.base_prefix (the venv and the interpreter it was made from),
        the standard library and site-packages (sysconfig), every absolute sys.path entry, and
        the folders of the top-level modules already imported and of `packages` (names of
        top-level packages the worker imports later, for an editable install whose code is
        not in site-packages): imports keep working after confinement.
      - shared libraries: the folders of every shared object mapped now (/proc/self/maps), the
        standard library folders (/lib, /lib64, /usr/lib, /usr/lib64, /usr/local/lib...), those
        of /etc/ld.so.conf and LD_LIBRARY_PATH, and /etc/ld.so.cache: TensorFlow's .so files
        and what they load, even when TensorFlow is imported after confinement.
      - /etc/localtime and /usr/share/zoneinfo (time zone), /proc/cpuinfo and
        /sys/devices/system/cpu (CPU count, features and caches, read by TensorFlow, glibc and
        OpenBLAS), /proc/stat and a few files of the worker's own /proc/self (stat, limits, fd
        for process metrics, cmdline; not environ nor mem), /dev/urandom.
      - the Keras folder (KERAS_HOME or ~/.keras): Keras reads its keras.json at import and
        fails if it exists but cannot be read.
      - `model_cache`: the worker loads models from it. When the worker itself pulls models
        into the cache, pass the cache in `extra_write` too. Create it beforehand: a folder
        that does not exist at confinement gets no rule and cannot be made later.
      - with `network_client` (the store is S3): resolv.conf, hosts, nsswitch.conf, gai.conf and
        the TLS trust stores (/etc/ssl...), for boto3 to resolve and verify the endpoint.
        Credentials files (AWS_SHARED_CREDENTIALS_FILE, AWS_WEB_IDENTITY_TOKEN_FILE) are not
        added: pass them in `extra_read` if the deployment uses them.
      - `extra_read`.
    Read-write:
      - `temp_dir` (default tempfile.gettempdir()): scratch files. A dedicated folder is better
        than a shared /tmp; then point TMPDIR at it too, so tempfile and TensorFlow use it.
      - /dev/null.
      - `extra_write` (the prometheus multiprocess folder, a writable cache...).
    Not granted, on purpose: the rest of /etc (passwd, the store's configuration), the home
    folder, other processes' /proc entries, /dev/shm (neither TensorFlow on CPU nor the worker
    uses it; add it to `extra_write` if something does), and everything else.

    Call it in the process that will confine (it reads that process's loaded modules and
    libraries, and /proc/self must resolve there). Paths that do not exist are left out; a path
    inside another one of the same list is left out (the outer one covers it); "/" is never
    returned.
    """
    library_dirs = set(_LIBRARY_DIRS) | _loaded_library_dirs() | _ld_so_conf_dirs()
    library_dirs.update(p for p in os.environ.get("LD_LIBRARY_PATH", "").split(":")
                        if os.path.isabs(p))
    # Keras (which TensorFlow imports when it loads some SavedModels) reads keras.json from
    # its folder at import and fails outright when that read is refused.
    keras_home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    read = (_python_dirs() | _module_dirs(packages) | library_dirs | set(_SYSTEM_READ)
            | set(_PROC_SELF_READ) | {keras_home, os.fspath(model_cache)}
            | (set(_NETWORK_CLIENT_READ) if network_client else set())
            | {os.fspath(p) for p in extra_read})
    write = ({os.fspath(temp_dir) if temp_dir is not None else tempfile.gettempdir(), "/dev/null"}
             | {os.fspath(p) for p in extra_write})
    return _normalize(read), _normalize(write)


#: This process's confinement, once its server has applied one (None: none was tried).
CURRENT: Confinement | None = None
