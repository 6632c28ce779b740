"""`make bench`: every benchmark of the suite, a table with PASS/FAIL per target, results/latest.json,
results/latest.png and the results section of benchmarks/README.md.

    .venv/bin/python benchmarks/run.py             # the full suite (about 5 minutes on 2 cores)
    .venv/bin/python benchmarks/run.py --quick     # reduced counts, writes results/quick.*, ~1 minute
    .venv/bin/python benchmarks/run.py --only 1,3  # some sections, writes results/partial.*
    .venv/bin/python benchmarks/run.py --profile   # cProfile of the hot paths, nothing written

Exit status 0 when every target passes, 1 when one fails.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import callback_cost
import concurrency
import cookie_size
import memory_use
import overhead
import profile_hot
import report
import throughput
import workers_storm

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"

FULL = {"repeats": 9, "batch_seconds": 0.1, "tp_rounds": 8, "tp_seconds": 4.0, "storm_repeats": 5,
        "big_storm_repeats": 40, "cb_rounds": 7, "cb_per_round": 20, "anonymous": 1_000_000, "signed_in": 100_000,
        "store_sessions": 100_000, "worker_storms": 3}
QUICK = {"repeats": 5, "batch_seconds": 0.04, "tp_rounds": 1, "tp_seconds": 2.0, "storm_repeats": 1,
         "big_storm_repeats": 1, "cb_rounds": 3, "cb_per_round": 10, "anonymous": 50_000, "signed_in": 10_000,
         "store_sessions": 20_000, "worker_storms": 2}


def log(message: str) -> None:
    print(message, flush=True)


def sections(p: dict[str, Any]) -> dict[str, tuple[str, Callable[[], Any]]]:
    def s1() -> Any:
        result = overhead.run(log, repeats=p["repeats"], batch_seconds=p["batch_seconds"])
        return {**result, "repeats": p["repeats"], "batch_seconds": p["batch_seconds"]}

    def s6() -> Any:
        return {"store": memory_use.memory_store(log, sessions=p["store_sessions"]),
                "requests": memory_use.requests(log, anonymous=p["anonymous"], signed_in=p["signed_in"])}

    return {
        "1": ("overhead", s1),
        "2": ("throughput", lambda: throughput.run(log, rounds=p["tp_rounds"], seconds=p["tp_seconds"])),
        "3": ("refresh_storm", lambda: concurrency.refresh_storm(
            log, repeats=p["storm_repeats"], big_repeats=p["big_storm_repeats"])),
        "4": ("cold_start", lambda: concurrency.cold_start(log)),
        "5": ("callback", lambda: callback_cost.run(log, rounds=p["cb_rounds"], per_round=p["cb_per_round"])),
        "6": ("memory", s6),
        "7": ("cookie_size", lambda: cookie_size.run(log)),
        "8": ("workers_storm", lambda: workers_storm.run(log, storms=p["worker_storms"])),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="reduced counts (a smoke run)")
    parser.add_argument("--only", help="comma-separated section numbers (1-8)")
    parser.add_argument("--profile", action="store_true", help="profile the hot paths and exit")
    parser.add_argument("--no-readme", action="store_true", help="leave README.md alone")
    args = parser.parse_args(argv)
    # The middleware logs every rejected cookie or failed refresh; the storms would flood the output.
    logging.getLogger("logto_middleware").setLevel(logging.CRITICAL)
    if args.profile:
        profile_hot.run(log)
        return 0

    params = QUICK if args.quick else FULL
    chosen = sections(params)
    if args.only:
        wanted = {s.strip() for s in args.only.split(",")}
        chosen = {k: v for k, v in chosen.items() if k in wanted}
    started = time.perf_counter()
    results: dict[str, Any] = {"machine": report.machine(), "load_before": report.load_average(),
                               "quick": args.quick, "parameters": params}
    for number, (key, section) in chosen.items():
        t0 = time.perf_counter()
        results[key] = section()
        results.setdefault("section_seconds", {})[key] = round(time.perf_counter() - t0, 1)
        log(f"   section {number} done in {time.perf_counter() - t0:.0f} s")
    results["load_after"] = report.load_average()
    results["wall_seconds"] = time.perf_counter() - started
    results["finished"] = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    found = report.targets(results)
    results["targets"] = [{"section": t.section, "target": t.name, "measured": t.measured, "limit": t.limit,
                           "result": t.verdict} for t in found]

    lines = [*report.header(results), "", *report.figures_table(results), "", *report.targets_table(found), "",
             f"{sum(t.ok for t in found)} of {len(found)} targets pass"]
    print("\n" + "\n".join(lines))
    stem = "quick" if args.quick else ("partial" if args.only else "latest")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{stem}.json").write_text(json.dumps(results, indent=1, default=str) + "\n")
    report.plot(results, RESULTS / f"{stem}.png")
    if stem == "latest" and not args.no_readme:
        report.update_readme(HERE / "README.md", lines)
    log(f"\nwrote {RESULTS / (stem + '.json')} and {RESULTS / (stem + '.png')} in {results['wall_seconds']:.0f} s")
    return 0 if all(t.ok for t in found) else 1


if __name__ == "__main__":
    sys.exit(main())
