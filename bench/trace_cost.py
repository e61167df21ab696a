"""What the evaluation trace ("why", issue 16) costs the check path.

    BENCH_DATABASE_URL=postgres://postgres@127.0.0.1:5432/warden_trace_bench \\
        .venv/bin/python bench/trace_cost.py [--blocks 16] [--block 300] [--micro-only]

1. In isolation: µs per ``decision_trace`` beside µs per ``evaluate`` for the calls of
   bench/policy_bench.py (an agent with 100 rules of every kind), and the size of each trace
   as JSON (what the audit row stores).
2. The whole check path in one process, as bench/check_inprocess.py (the WSGI application
   called directly, PostgreSQL, the check_load agent and body): blocks of ``--block`` checks
   alternate between the trace on and off (off: ``agents.checks.decision_trace`` replaced by a
   stub that records nothing), so a busy shared machine's drift falls on both alike. Reports
   the median and the minimum CPU per check over the blocks of each, their differences, and
   the median difference of adjacent on/off blocks. As under gunicorn (gunicorn.conf.py),
   what the process holds after warming up is frozen out of the cyclic GC (``--no-freeze``
   to skip: the full collections that then rescan the whole process make every allocation
   dearer, the trace's included).
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import sys
import time
import timeit
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from policy_bench import CALLS, build_rules  # noqa: E402

from agents.policy import compile_policy  # noqa: E402
from agents.policy_trace import decision_trace  # noqa: E402


def micro(number: int = 20000, repeat: int = 7) -> None:
    policy = compile_policy(build_rules())
    print("µs per call (median of 7 repeats x 20000), trace JSON size:")
    print(f"  {'call':<28} {'evaluate':>9} {'trace':>9} {'bytes':>6}")
    for label, (call, totals) in CALLS.items():
        decision = policy.evaluate(call, totals)
        evaluate = timeit.Timer(lambda c=call, t=totals: policy.evaluate(c, t))
        trace = timeit.Timer(lambda c=call, t=totals, d=decision: decision_trace(policy, c, t, d))
        e = statistics.median(evaluate.repeat(repeat=repeat, number=number)) / number * 1e6
        t = statistics.median(trace.repeat(repeat=repeat, number=number)) / number * 1e6
        size = len(json.dumps(decision_trace(policy, call, totals, decision)))
        print(f"  {label:<28} {e:9.2f} {t:9.2f} {size:6d}")


def whole_path(blocks: int, block: int, *, freeze: bool) -> None:
    from check_inprocess import run
    from check_load import seeded_in_process

    key = seeded_in_process()
    from django.core.wsgi import get_wsgi_application

    from agents import checks

    application = get_wsgi_application()
    real = checks.decision_trace

    def stub(*args: object, **kwargs: object) -> None:
        return None

    inside: list[int] = []
    traces: list[Any] = []

    def timed(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter_ns()
        trace = real(*args, **kwargs)
        inside.append(time.perf_counter_ns() - started)
        if not traces:
            traces.append(trace)
        return trace

    run(application, "POST", "/api/v1/check", key, 300, "http")  # warm caches, connections
    if freeze:  # as gunicorn.conf.py's when_ready: full collections skip what was imported
        gc.collect()
        gc.freeze()
    results: dict[str, list[float]] = {"on": [], "off": []}
    for index in range(blocks * 2):
        mode = ("on", "off")[index % 2] if (index // 2) % 2 == 0 else ("off", "on")[index % 2]
        checks.decision_trace = timed if mode == "on" else stub  # type: ignore[assignment]
        results[mode].append(run(application, "POST", "/api/v1/check", key, block, "http"))
    checks.decision_trace = real
    print(f"check path, CPU per check over {blocks} blocks of {block} checks each:")
    for mode, values in results.items():
        micros = [v * 1e6 for v in values]
        print(
            f"  trace {mode:<3} median {statistics.median(micros):7.1f} µs, "
            f"min {min(micros):7.1f} µs"
        )
    # Adjacent blocks form a pair (one on, one off): the median of the pairs' differences
    # cancels the drift of a shared machine better than the difference of the medians.
    pairs = [(on - off) * 1e6 for on, off in zip(results["on"], results["off"], strict=True)]
    print(f"  paired difference: median {statistics.median(pairs):+.1f} µs per check")
    on_med = statistics.median(results["on"])
    off_med = statistics.median(results["off"])
    on_min, off_min = min(results["on"]), min(results["off"])
    print(
        f"  difference: median {(on_med - off_med) * 1e6:+.1f} µs "
        f"({(on_med / off_med - 1) * 100:+.1f} %), min {(on_min - off_min) * 1e6:+.1f} µs "
        f"({(on_min / off_min - 1) * 100:+.1f} %)"
    )
    # The trace's own cost, measured where it runs (caches as cold as a check leaves them),
    # and what it adds to writing the row's JSON: robust where the A/B above is not.
    with_trace = {"trace": traces[0]}
    without = {"trace": None}
    number = 20000
    encode = [
        min(timeit.repeat(lambda d=data: json.dumps(d), number=number, repeat=5)) / number
        for data in (with_trace, without)
    ]
    print(
        f"  inside the check: decision_trace median {statistics.median(inside) / 1000:.1f} µs "
        f"({len(inside)} calls); its JSON in the row +{(encode[0] - encode[1]) * 1e6:.1f} µs "
        f"({len(json.dumps(traces[0]))} bytes)"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--blocks", type=int, default=16, help="blocks per mode")
    parser.add_argument("--block", type=int, default=300, help="checks per block")
    parser.add_argument("--micro-only", action="store_true")
    parser.add_argument(
        "--no-freeze", action="store_true", help="skip gc.freeze() (gunicorn.conf.py does it)"
    )
    args = parser.parse_args()
    started = time.monotonic()
    micro()
    if not args.micro_only:
        whole_path(args.blocks, args.block, freeze=not args.no_freeze)
    print(f"({time.monotonic() - started:.0f} s)")


if __name__ == "__main__":
    main()
