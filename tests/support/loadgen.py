"""Load generators: the commands that run wrk, hey (HTTP/1.1) and h2load (gRPC over HTTP/2)
against one request, and their summaries parsed into one shape: seconds, p50/p99/mean latency
(ms), status counts, transport errors."""
from __future__ import annotations

import functools
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

#: Per request; a slow peer with a large body at high concurrency is that slow.
TIMEOUT_S = 120


@dataclass
class Request:
    """One kind of request: where it goes and the file holding its body."""

    path: str
    body: Path
    content_type: str
    headers: dict[str, str] = field(default_factory=dict)
    method: str = "POST"


def hey_command(url: str, req: Request, concurrency: int, seconds: float) -> list[str]:
    command = ["hey", "-z", f"{seconds:g}s", "-c", str(concurrency), "-t", str(TIMEOUT_S),
               "-m", req.method, "-T", req.content_type, "-D", str(req.body)]
    for key, value in req.headers.items():
        command += ["-H", f"{key}: {value}"]
    return command + [url]


def wrk_command(url: str, req: Request, concurrency: int, seconds: float) -> list[str]:
    """wrk with one thread (plenty at these rates) and a script that sends the body file."""
    script = req.body.with_suffix(req.body.suffix + ".lua")
    lines = [f'wrk.method = "{req.method}"', f'wrk.headers["Content-Type"] = "{req.content_type}"']
    lines += [f'wrk.headers["{k}"] = "{v}"' for k, v in req.headers.items()]
    lines.append(f'local f = io.open("{req.body}", "rb"); wrk.body = f:read("*a"); f:close()')
    script.write_text("\n".join(lines) + "\n")
    return ["wrk", "-t", "1", "-c", str(concurrency), "-d", f"{max(1, round(seconds))}s",
            "--timeout", f"{TIMEOUT_S}s", "--latency", "-s", str(script), url]


def parse_hey(text: str) -> dict:
    """hey's summary."""
    total = re.search(r"Total:\s+([\d.]+) secs", text)
    if not total:
        raise ValueError(f"not a hey summary:\n{text[-2000:]}")
    percentiles = {int(p): float(s) * 1000
                   for p, s in re.findall(r"^\s+(\d+)%+ in ([\d.]+) secs", text, re.M)}
    statuses = {int(code): int(n) for code, n in re.findall(r"\[(\d+)\]\s+(\d+) responses", text)}
    transport = 0
    if "Error distribution:" in text:
        for line in text.split("Error distribution:", 1)[1].splitlines():
            match = re.match(r"\s+\[(\d+)\]\s", line)
            if match:
                transport += int(match.group(1))
    average = re.search(r"Average:\s+([\d.]+) secs", text)
    return {"seconds": float(total.group(1)), "p50_ms": percentiles.get(50),
            "p99_ms": percentiles.get(99),
            "mean_ms": float(average.group(1)) * 1000 if average else None,
            "status_codes": statuses, "transport_errors": transport}


def _ms(value: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", value).groups()
    return float(number) * {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 6e4}[unit]


def parse_wrk(text: str) -> dict:
    """wrk --latency's summary."""
    match = re.search(r"(\d+) requests in ([\d.]+)(\w+),", text)
    if not match:
        raise ValueError(f"not a wrk summary:\n{text[-2000:]}")
    count = int(match.group(1))
    seconds = _ms(match.group(2) + match.group(3)) / 1000
    percentiles = {int(p): _ms(v) for p, v in re.findall(r"^\s+(\d+)%\s+([\d.]+\w+)", text, re.M)}
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    bad = int(bad.group(1)) if bad else 0
    sockets = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)",
                        text)
    transport = sum(map(int, sockets.groups())) if sockets else 0
    average = re.search(r"^\s+Latency\s+([\d.]+\w+)", text, re.M)
    return {"seconds": seconds, "p50_ms": percentiles.get(50), "p99_ms": percentiles.get(99),
            "mean_ms": _ms(average.group(1)) if average else None,
            "status_codes": {200: count - bad, **({"non-2xx": bad} if bad else {})},
            "transport_errors": transport}


def h2load_command(url: str, req: Request, concurrency: int, seconds: float) -> list[str]:
    """h2load for a gRPC call: `concurrency` HTTP/2 connections with one stream each, the body
    file a length-prefixed message. Per-request times go to a log file next to the body (h2load
    itself prints no percentiles), which parse_h2load reads."""
    log = h2load_log(req)
    log.unlink(missing_ok=True)
    command = ["h2load", "-c", str(concurrency), "-m", "1", "-D", f"{max(1, round(seconds))}",
               "-d", str(req.body), "--log-file", str(log), "-H", f"content-type: {req.content_type}",
               "-H", "te: trailers"]
    for key, value in req.headers.items():
        command += ["-H", f"{key}: {value}"]
    return command + [url]


def h2load_log(req: Request) -> Path:
    return req.body.with_suffix(".h2load.log")


def parse_h2load(text: str, log: Path | None = None) -> dict:
    """h2load's summary, and its per-request log for the percentiles. h2load sees HTTP statuses
    only (a gRPC error is a 200 with a grpc-status trailer): answers are checked apart."""
    finished = re.search(r"finished in ([\d.]+)(\w+),", text)
    done = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, "
                     r"(\d+) failed, (\d+) errored, (\d+) timeout", text)
    if not finished or not done:
        raise ValueError(f"not an h2load summary:\n{text[-2000:]}")
    seconds = _ms(finished.group(1) + finished.group(2)) / 1000
    succeeded, failed, errored, timeout = (int(done.group(i)) for i in (4, 5, 6, 7))
    times = []
    if log is not None and log.exists():
        for line in open(log):
            fields = line.split()
            if len(fields) >= 3 and fields[1] == "200":
                times.append(int(fields[2]) / 1000)
    times.sort()

    def percentile(p: float) -> float | None:
        return times[min(len(times) - 1, int(p / 100 * len(times)))] if times else None

    return {"seconds": seconds, "p50_ms": percentile(50), "p99_ms": percentile(99),
            "mean_ms": sum(times) / len(times) if times else None,
            "status_codes": {200: succeeded, **({"failed": failed} if failed else {})},
            "transport_errors": errored + timeout}


COMMANDS = {"wrk": (wrk_command, parse_wrk), "hey": (hey_command, parse_hey),
            "h2load": (h2load_command, parse_h2load)}


def load_command(generator: str, url: str, req: Request, concurrency: int,
                 seconds: float) -> tuple[list[str], Callable[[str], dict]]:
    """The command that puts this load on `url`, and what reads its output."""
    command, parse = COMMANDS[generator]
    if generator == "h2load":
        return command(url, req, concurrency, seconds), functools.partial(parse, log=h2load_log(req))
    return command(url, req, concurrency, seconds), parse
