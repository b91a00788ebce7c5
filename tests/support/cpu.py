"""Where the CPU went: a process tree's CPU seconds from /proc, the whole machine's busy
seconds, and waiting for a quiet machine before something is timed."""
from __future__ import annotations

import os
import resource
import time


def tree_cpu_seconds(root: int) -> float:
    """User + system CPU seconds of `root` and every process below it, from /proc."""
    tick = os.sysconf("SC_CLK_TCK")
    parents, times = {}, {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()
        except OSError:
            continue
        pid = int(entry.name)
        parents[pid] = int(fields[1])
        times[pid] = (int(fields[11]) + int(fields[12])) / tick
    total, stack = 0.0, [root]
    while stack:
        pid = stack.pop()
        total += times.get(pid, 0.0)
        stack.extend(child for child, parent in parents.items() if parent == pid)
    return total


def machine_busy_seconds() -> float:
    """CPU seconds the whole machine spent busy (user, nice, system, irq, softirq) since boot."""
    with open("/proc/stat") as f:
        ticks = [int(n) for n in f.readline().split()[1:]]
    return sum(ticks[i] for i in (0, 1, 2, 5, 6)) / os.sysconf("SC_CLK_TCK")


def own_cpu_seconds() -> float:
    me = resource.getrusage(resource.RUSAGE_SELF)
    return me.ru_utime + me.ru_stime


def children_cpu_seconds() -> float:
    """CPU seconds of this process's children that have ended and been waited for."""
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return kids.ru_utime + kids.ru_stime


def cpu_use_now(server_pid: int | None, seconds: float = 0.5) -> tuple[float, float]:
    """Cores used over `seconds` by processes other than this one and the server's tree, and by
    the server's tree."""
    def server_cpu():
        return 0.0 if server_pid is None else tree_cpu_seconds(server_pid)

    busy, own, srv = machine_busy_seconds(), own_cpu_seconds(), server_cpu()
    time.sleep(seconds)
    srv = server_cpu() - srv
    other = (machine_busy_seconds() - busy) - srv - (own_cpu_seconds() - own)
    return max(0.0, other) / seconds, srv / seconds


def wait_for_quiet(server_pid: int | None, limit: float, quiet_cpus: float = 0.1) -> float:
    """Wait (at most `limit` seconds) until the rest of the machine, and the server, use less
    than `quiet_cpus` cores; return the seconds waited."""
    started = time.monotonic()
    while time.monotonic() - started < limit:
        other, srv = cpu_use_now(server_pid)
        if other <= quiet_cpus and srv <= quiet_cpus:
            break
    return time.monotonic() - started
