"""The load generators' summaries, as hey 0.1.4 and wrk 4.1 print them, parse to the numbers
the benchmarks report."""
from __future__ import annotations

import pytest

from tests.support.loadgen import parse_h2load, parse_hey, parse_wrk

HEY = """
Summary:
  Total:\t10.0031 secs
  Slowest:\t0.0406 secs
  Fastest:\t0.0006 secs
  Average:\t0.0118 secs
  Requests/sec:\t2706.5422

Latency distribution:
  10% in 0.0082 secs
  50% in 0.0113 secs
  99% in 0.0250 secs
  0% in 0.0000 secs

Status code distribution:
  [200]\t27000 responses
  [503]\t70 responses

Error distribution:
  [3]\tPost "http://127.0.0.1:1/v1/models/dense:predict": context deadline exceeded
"""
WRK = """
Running 10s test @ http://127.0.0.1:1/v1/models/dense:predict
  1 threads and 32 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency    12.47ms    2.06ms 119.17ms   85.96%
    Req/Sec     2.56k   210.70     3.41k    90.00%
  Latency Distribution
     50%  850.00us
     75%    3.28ms
     90%    4.99ms
     99%    1.08s
  25600 requests in 10.01s, 4.65MB read
  Socket errors: connect 0, read 2, write 0, timeout 1
  Non-2xx or 3xx responses: 100
Requests/sec:   2557.44
"""


@pytest.mark.parametrize("parse,text,expected", [
    (parse_hey, HEY, {"seconds": 10.0031, "p50_ms": 11.3, "p99_ms": 25.0, "mean_ms": 11.8,
                      "status_codes": {200: 27000, 503: 70}, "transport_errors": 3}),
    (parse_wrk, WRK, {"seconds": 10.01, "p50_ms": 0.85, "p99_ms": 1080.0, "mean_ms": 12.47,
                      "status_codes": {200: 25500, "non-2xx": 100}, "transport_errors": 3}),
])
def test_summaries_parse_to_the_reported_numbers(parse, text, expected):
    got = parse(text)
    for key, value in expected.items():
        assert got[key] == (pytest.approx(value) if isinstance(value, float) else value), key


def test_a_summary_without_answers_has_no_latency():
    failed = parse_hey(HEY.split("Latency distribution")[0].replace("0.0118", "NaN"))
    assert failed["mean_ms"] is None and failed["p50_ms"] is None


def test_other_text_is_refused():
    with pytest.raises(ValueError):
        parse_wrk("connection refused")


H2LOAD = """
starting benchmark...
finished in 10.00s, 3860.20 req/s, 515.64KB/s
requests: 38602 total, 38602 started, 38602 done, 38600 succeeded, 2 failed, 1 errored, 0 timeout
status codes: 38600 2xx, 0 3xx, 0 4xx, 2 5xx
"""


def test_h2load_reads_its_summary_and_its_per_request_log(tmp_path):
    log = tmp_path / "h2load.log"
    log.write_text("".join(f"{1700000000000000 + i}\t200\t{1000 + 10 * i}\n"
                           for i in range(100)) + "1700000000000100\t503\t5\n")
    result = parse_h2load(H2LOAD, log)
    assert result["seconds"] == 10.0
    assert result["status_codes"] == {200: 38600, "failed": 2}
    assert result["transport_errors"] == 1
    assert result["p50_ms"] == 1.5 and result["p99_ms"] == 1.99
    assert abs(result["mean_ms"] - 1.495) < 1e-9
