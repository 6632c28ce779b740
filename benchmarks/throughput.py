"""Section 2: requests per second under uvicorn (one worker), driven by wrk.

Both servers (the bare app and the same app behind the middleware) share CPU 0, and two wrk
processes (one thread each, one per server) share CPU 1, with taskset: the load generator never
competes with the servers. Every round loads the two servers *at the same time*, so both meet
the same machine: run one after the other, even 2-second runs a second apart differed by up to
25% here (this VM's speed moves within seconds), which no ratio of two such runs survives. Both
get the same request, signed-in Cookie header included (the bare app ignores it).

Two ratios per round, median over the rounds: requests per CPU-second of each server process
(its CPU time from /proc over the requests its wrk completed), the figure the target judges, and
requests completed (the wall ratio; the kernel shares CPU 0 evenly between two busy processes,
and the per-server CPU shares are reported to show it). A server sharing a core also shares its
caches, so its CPU time per request is higher than alone; the ratio is what compares.
"""

from __future__ import annotations

import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import fixtures as fx
import httpx
import timing
from fixtures import Log

HERE = Path(__file__).resolve().parent
_RPS = re.compile(r"Requests/sec:\s*([\d.]+)")
_REQUESTS = re.compile(r"(\d+) requests in")
_NON_2XX = re.compile(r"Non-2xx or 3xx responses:\s*(\d+)")
_SOCKET_ERRORS = re.compile(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)")
_LATENCY = re.compile(r"Latency\s+([\d.]+)(us|ms|s)")


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _pin(cpu: int) -> list[str]:
    taskset = shutil.which("taskset")
    return [taskset, "-c", str(cpu)] if taskset and (os.cpu_count() or 1) >= 2 else []


def _start(mode: str) -> tuple[subprocess.Popen[bytes], int]:
    port = fx.free_port()
    process = subprocess.Popen([*_pin(0), sys.executable, str(HERE / "serve.py"), mode, str(port)],
                               cwd=HERE.parent, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        fx.wait_for_port(port)
    except RuntimeError:
        process.kill()
        raise RuntimeError(f"uvicorn ({mode}) did not start: {process.communicate()[1].decode()[-2000:]}") from None
    return process, port


def _wrk_command(port: int, cookie: str, seconds: float, connections: int) -> list[str]:
    wrk = shutil.which("wrk")
    if wrk is None:
        raise RuntimeError("wrk is not installed: run scripts/install-system-deps.sh")
    return [*_pin(1), wrk, "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", "-H", f"Cookie: {cookie}",
            f"http://127.0.0.1:{port}/"]


def _wrk_figures(out: str) -> dict[str, Any]:
    rps = _RPS.search(out)
    if rps is None:
        raise RuntimeError(f"could not read wrk's output:\n{out}")
    non_2xx = _NON_2XX.search(out)
    socket_errors = _SOCKET_ERRORS.search(out)
    latency = _LATENCY.search(out)
    latency_ms = None
    if latency is not None:
        latency_ms = float(latency.group(1)) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[latency.group(2)]
    requests = _REQUESTS.search(out)
    return {"rps": float(rps.group(1)), "requests": int(requests.group(1)) if requests else 0,
            "non_2xx": int(non_2xx.group(1)) if non_2xx else 0,
            "socket_errors": sum(map(int, socket_errors.groups())) if socket_errors else 0,
            "mean_latency_ms": latency_ms}


def _load_together(servers: dict[str, tuple[subprocess.Popen[bytes], int]], cookie: str, seconds: float,
                   connections: int) -> dict[str, dict[str, Any]]:
    """One wrk per server, started together; each server's figures and CPU time over the run."""
    cpu_before = {mode: _cpu_seconds(process.pid) for mode, (process, _) in servers.items()}
    children_before, start = os.times(), time.perf_counter()
    loads = {mode: subprocess.Popen(_wrk_command(port, cookie, seconds, connections), stdout=subprocess.PIPE,
                                    text=True) for mode, (_, port) in servers.items()}
    outs = {mode: load.communicate()[0] for mode, load in loads.items()}
    wall, children_after = time.perf_counter() - start, os.times()
    if any(load.returncode for load in loads.values()):
        raise RuntimeError(f"wrk failed: {outs}")
    wrk_cpu = (children_after.children_user + children_after.children_system
               - children_before.children_user - children_before.children_system)
    results = {}
    for mode, (process, _) in servers.items():
        result = _wrk_figures(outs[mode])
        server_cpu = _cpu_seconds(process.pid) - cpu_before[mode]
        result["server_cpu_share"] = server_cpu / wall
        result["server_cpu_us_per_request"] = server_cpu * 1e6 / max(1, result["requests"])
        result["wrk_cpu_share"] = wrk_cpu / len(servers) / wall  # each wrk's share of CPU 1 (mean of the two)
        results[mode] = result
    return results


def run(log: Log, *, rounds: int, seconds: float, connections: int = 32) -> dict[str, Any]:
    cfg = fx.config()
    tokens = fx.token_set(fx.fake_logto())
    cookie = fx.cookie_store_cookie(cfg, tokens, secure=False)  # http origin: no prefix
    servers = {mode: _start(mode) for mode in ("bare", "logto")}
    try:
        check = httpx.get(f"http://127.0.0.1:{servers['logto'][1]}/whoami", headers={"cookie": cookie})
        if check.text != tokens.claims["sub"] or "set-cookie" in check.headers:
            raise RuntimeError(f"the middleware did not see the session: {check.status_code} {check.text!r}")
        log("2. throughput: warm-up")
        _load_together(servers, cookie, 1, connections)
        runs: dict[str, list[dict[str, Any]]] = {"bare": [], "logto": []}
        for round_ in range(rounds):
            for mode, result in _load_together(servers, cookie, seconds, connections).items():
                runs[mode].append(result)
            log(f"  round {round_ + 1}/{rounds}: bare {runs['bare'][-1]['rps']:.0f} req/s, "
                f"middleware {runs['logto'][-1]['rps']:.0f} req/s (both at once)")
    finally:
        for process, _ in servers.values():
            process.terminate()
            process.wait(timeout=10)
    ratios = [m["rps"] / b["rps"] for b, m in zip(runs["bare"], runs["logto"], strict=True)]
    cpu_ratios = [b["server_cpu_us_per_request"] / m["server_cpu_us_per_request"]
                  for b, m in zip(runs["bare"], runs["logto"], strict=True)]
    bare_cpu = [r["server_cpu_us_per_request"] for r in runs["bare"]]
    logto_cpu = [r["server_cpu_us_per_request"] for r in runs["logto"]]
    bare_rps = [r["rps"] for r in runs["bare"]]
    logto_rps = [r["rps"] for r in runs["logto"]]
    return {
        "connections": connections, "seconds_per_run": seconds, "rounds": rounds,
        "bare_rps": statistics.median(bare_rps), "bare_rps_mad": timing.mad(bare_rps),
        "logto_rps": statistics.median(logto_rps), "logto_rps_mad": timing.mad(logto_rps),
        "ratio": statistics.median(ratios), "ratio_mad": timing.mad(ratios), "ratios": ratios,
        "bare_us_per_request": 1e6 / statistics.median(bare_rps),
        "cpu_ratio": statistics.median(cpu_ratios), "cpu_ratio_mad": timing.mad(cpu_ratios), "cpu_ratios": cpu_ratios,
        "bare_cpu_us_per_request": statistics.median(bare_cpu),
        "logto_cpu_us_per_request": statistics.median(logto_cpu),
        "errors": sum(r["non_2xx"] + r["socket_errors"] for rs in runs.values() for r in rs),
        "server_cpu_share": statistics.median(r["server_cpu_share"] for rs in runs.values() for r in rs),
        "wrk_cpu_share": statistics.median(r["wrk_cpu_share"] for rs in runs.values() for r in rs),
        "runs": runs,
    }
