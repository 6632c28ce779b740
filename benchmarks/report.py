"""Targets (PASS/FAIL), the printed table, the plot and the README's results section."""

from __future__ import annotations

import os
import platform
import re
import subprocess
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

README_START = "<!-- results:start -->"
README_END = "<!-- results:end -->"


@dataclass
class Target:
    section: str
    name: str
    measured: str
    limit: str
    ok: bool

    @property
    def verdict(self) -> str:
        return "PASS" if self.ok else "FAIL"


def machine() -> dict[str, Any]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                cwd=Path(__file__).parent, check=False).stdout.strip() or "unknown"
    except OSError:
        commit = "unknown"
    versions = {}
    for package in ("starlette", "flask", "uvicorn", "httpx", "cryptography", "joserfc", "redis"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    return {"nproc": os.cpu_count(), "cpu": cpu, "python": platform.python_version(),
            "implementation": platform.python_implementation(), "platform": platform.platform(),
            "commit": commit, "packages": versions}


def load_average() -> list[float]:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return []


# -- targets ----------------------------------------------------------------------------------------


def targets(results: dict[str, Any]) -> list[Target]:
    found: list[Target] = []
    s1 = results.get("overhead")
    if s1:
        for stack, label in (("asgi", "ASGI"), ("wsgi", "WSGI")):
            floor = s1[stack]["floor"]["median_us"]
            ratio = s1[stack]["cookie"]["floor_ratio"]
            peer = s1[stack]["peer"]["overhead_us"]
            cookie = s1[stack]["cookie"]["overhead_us"]
            anon = s1[stack]["anonymous"]["overhead_us"]
            found.append(Target("1", f"{label} signed-in (cookie store) overhead ≤ 1.0x peer",
                                f"{cookie:.1f} µs = {cookie / peer:.2f}x peer", f"≤ {peer:.1f} µs", cookie <= peer))
            found.append(Target("1", f"{label} anonymous overhead ≤ 0.25x peer",
                                f"{anon:.1f} µs = {anon / peer:.2f}x peer", f"≤ {0.25 * peer:.1f} µs",
                                anon <= 0.25 * peer))
            found.append(Target("1", f"{label} signed-in (cookie store) overhead ≤ 3x crypto floor",
                                f"{cookie:.1f} µs = {ratio:.2f}x floor (per round)", f"≤ {3 * floor:.1f} µs, 3.00x",
                                ratio <= 3))
            if "memory" in s1[stack]:
                memory = s1[stack]["memory"]["overhead_us"]
                found.append(Target("1", f"{label} signed-in (MemoryStore) overhead ≤ 3x cookie store's",
                                    f"{memory:.1f} µs = {memory / cookie:.2f}x cookie store", f"≤ {3 * cookie:.1f} µs",
                                    memory <= 3 * cookie))
            if "redis" in s1[stack] and "redis_get" in s1[stack]:
                redis_cost, get = s1[stack]["redis"]["overhead_us"], s1[stack]["redis_get"]["median_us"]
                found.append(Target("1", f"{label} signed-in (RedisStore) overhead ≤ 2x one GET round trip + cookie "
                                    "store's", f"{redis_cost:.1f} µs (GET {get:.1f} µs)",
                                    f"≤ {2 * get + cookie:.1f} µs", redis_cost <= 2 * get + cookie))
        commands = s1.get("redis_commands_per_request")
        if commands:
            found.append(Target("1", "signed-in request with RedisStore: one Redis round trip",
                                " ".join(f"{k.upper()} {v:.2f}" for k, v in commands.items()), "1 per request",
                                all(v <= 1 for v in commands.values())))
    s2 = results.get("throughput")
    if s2:
        found.append(Target("2", "uvicorn throughput, signed in ≥ 0.93x bare (per server CPU-second)",
                            f"{s2['cpu_ratio']:.3f}x (wall req/s: {s2['ratio']:.3f}x)", "≥ 0.930x",
                            s2["cpu_ratio"] >= 0.93 and s2["errors"] == 0))
    s3 = results.get("refresh_storm")
    if s3:
        for stack in ("asgi", "wsgi"):
            cases = s3[stack]
            grants = {n: c["refresh_grants"] for n, c in cases.items()}
            failed = sum(c["failed"] for c in cases.values())
            found.append(Target("3", f"{stack.upper()} refresh storm: one grant per storm, no failed request",
                                f"grants {' '.join(f'N={n}:{g}' for n, g in grants.items())}; failed {failed}",
                                "1 each; 0 failed",
                                all(all(g == 1 for g in gs) for gs in grants.values()) and failed == 0))
            for n, case in cases.items():
                found.append(Target("3", f"{stack.upper()} N={n}: slowest ≤ 1.5x round-trip + no-refresh storm",
                                    f"{case['slowest_ms']:.1f} ms", f"≤ {case['limit_ms']:.1f} ms",
                                    case["slowest_ms"] <= case["limit_ms"]))
            for n, case in cases.items():
                if int(n) >= s3["peer_judged_from_n"]:
                    found.append(Target("3", f"{stack.upper()} N={n}: no-refresh storm ≤ peer's storm",
                                        f"{case['quiet_slowest_ms']:.1f} ms", f"≤ {case['peer_slowest_ms']:.1f} ms",
                                        case["quiet_slowest_ms"] <= case["peer_slowest_ms"]))
    s4 = results.get("cold_start")
    if s4:
        for stack in ("asgi", "wsgi"):
            case = s4[stack]
            found.append(Target("4", f"{stack.upper()} cold start, {s4['concurrency']} concurrent callbacks",
                                f"discovery {case['discovery']}, JWKS {case['jwks']}, failed {case['failed']}",
                                "1, 1, 0", case["discovery"] == 1 and case["jwks"] == 1 and case["failed"] == 0))
    s5 = results.get("callback")
    if s5:
        floor = s5["floor"]["median_us"]
        for stack in ("asgi", "wsgi"):
            own, ratio = s5[stack]["own_us"], s5[stack]["ratio"]
            found.append(Target("5", f"{stack.upper()} callback, own time ≤ 2x ES384 verification",
                                f"{own:.0f} µs = {ratio:.2f}x floor (paired)", f"≤ {2 * floor:.0f} µs, 2.00x",
                                ratio <= 2))
    s6 = results.get("memory")
    if s6:
        store = s6["store"]
        found.append(Target("6", f"MemoryStore bound ({store['sessions']} sessions) holds",
                            f"{store['length_after_extra']} after "
                            f"{store['sessions'] + store['extra_inserted']} inserts",
                            f"≤ {store['sessions']}, memory flat", store["bound_holds"]))
        for name, case in s6["requests"].items():
            if isinstance(case, dict):
                found.append(Target("6", f"no growth after warm-up: {name.replace('_', ' ')}",
                                    f"{case['growth_bytes']:+d} B over {case['requests']:,} req",
                                    f"≤ {s6['requests']['growth_limit_bytes'] // 1024} KiB", case["flat"]))
    s7 = results.get("cookie_size")
    if s7:
        found.append(Target("7", "session cookie fits one 4096-byte cookie",
                            f"{s7['token_set_cookie']['set_cookie_bytes']} B (sign-in: "
                            f"{s7['sign_in_cookie']['set_cookie_bytes']} B), "
                            f"{max(s7['token_set_cookie']['cookies'], s7['sign_in_cookie']['cookies'])} cookie",
                            "≤ 4096 B, 1 cookie", s7["fits"]))
    s8 = results.get("workers_storm")
    if s8:
        storms = s8["storms"]
        grants = [c["refresh_grants"] for c in storms]
        invalid = sum(c["invalid_grant"] for c in storms)
        failed = sum(c["failed"] for c in storms)
        found.append(Target("8", f"{s8['workers']}-worker refresh storm (uvicorn): one grant per storm, 0 failed",
                            f"grants {' '.join(map(str, grants))}; invalid_grant {invalid}; failed {failed}; "
                            f"{len(storms)} of {s8['storms_planned']} storms, "
                            f"{'signed in' if s8['signed_in_after'] else 'signed out'} after",
                            "1 each; 0 failed",
                            len(storms) == s8["storms_planned"] and all(g == 1 for g in grants) and failed == 0
                            and s8["signed_in_after"]))
    return found


# -- the table -----------------------------------------------------------------------------------------


def _row(cells: list[str], widths: list[int]) -> str:
    return "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()


def figures_table(results: dict[str, Any]) -> list[str]:
    """The measured figures; the last column names how each was obtained (legend below)."""
    rows: list[list[str]] = []
    legend: dict[str, str] = {}
    s1 = results.get("overhead")
    if s1:
        rounds = f"{s1['repeats']} interleaved rounds of ~{s1['batch_seconds']:.2f} s per variant, in process"
        legend["a"] = f"CPU time of the benchmarking thread per request, median ± MAD over {rounds}"
        legend["b"] = f"paired overhead: per round (variant - bare app, CPU time), median ± MAD over {rounds}"
        legend["c"] = "as b, but wall time (the request waits on redis-server, a loopback round-trip)"
        legend["d"] = (f"as a, base64url + AES-256-GCM open + json.loads of the same {s1['payload_bytes']}-byte "
                       "session JSON with `cryptography` directly, a variant in the ASGI and in the WSGI rounds "
                       "(pooled here); the 3x-floor targets divide each round's overhead by that round's floor")
        for stack, label, peer in (("asgi", "ASGI", "Starlette SessionMiddleware"), ("wsgi", "WSGI", "Flask session")):
            entry = s1[stack]
            bare = entry["bare"]
            rows.append(["1", f"{label} bare {'Starlette' if stack == 'asgi' else 'Flask'} app, per request",
                         f"{bare['median_us']:.1f} ± {bare['mad_us']:.1f} µs", "a"])
            names = {"peer": f"+ {peer} (peer, same data)", "anonymous": "+ logto, anonymous",
                     "cookie": "+ logto, signed in, cookie store", "memory": "+ logto, signed in, MemoryStore",
                     "redis": "+ logto, signed in, RedisStore (local)"}
            if "redis_get" in entry:
                get = entry["redis_get"]
                rows.append(["1", f"{label} one Redis GET round trip (local, redis-py "
                             f"{'asyncio' if stack == 'asgi' else 'sync'})",
                             f"{get['median_us']:.1f} ± {get['mad_us']:.1f} µs", "g"])
                legend["g"] = (f"wall time of one GET of a {s1.get('stored_session_bytes', 0)}-byte value (a stored "
                               "session's size) on the same redis-server, back to back, interleaved with the rounds")
            for key, title in names.items():
                if key in entry:
                    v = entry[key]
                    rows.append(["1", f"{label} {title}", f"{v['overhead_us']:+.1f} ± {v['overhead_mad_us']:.1f} µs",
                                 "c" if v["clock"] == "wall" else "b"])
        rows.append(["1", "floor: one cookie decrypt + parse", f"{s1['floor']['median_us']:.1f} ± "
                     f"{s1['floor']['mad_us']:.1f} µs", "d"])
    s2 = results.get("throughput")
    if s2:
        legend["e"] = (f"uvicorn, 1 worker each, both servers on CPU 0, loaded at the same time by one wrk -t1 "
                       f"-c{s2['connections']} each on CPU 1; {s2['rounds']} rounds of {s2['seconds_per_run']:.0f} s, "
                       "median; CPU-µs/req = server CPU time (/proc) / requests completed (two servers share a core "
                       "and its caches: higher than alone)")
        legend["f"] = (f"median of per-round ratios; each server used {s2['server_cpu_share']:.0%} of CPU 0, each wrk "
                       f"{s2['wrk_cpu_share']:.0%} of CPU 1; {s2['errors']} non-2xx or socket errors")
        rows.append(["2", "uvicorn bare app", f"{s2['bare_rps']:.0f} req/s, {s2['bare_cpu_us_per_request']:.0f} "
                     "CPU-µs/req", "e"])
        rows.append(["2", "uvicorn + logto, signed in", f"{s2['logto_rps']:.0f} req/s, "
                     f"{s2['logto_cpu_us_per_request']:.0f} CPU-µs/req", "e"])
        rows.append(["2", "ratio per server CPU-second (wall req/s)", f"{s2['cpu_ratio']:.3f}x ({s2['ratio']:.3f}x)",
                     "f"])
    s3 = results.get("refresh_storm")
    if s3:
        legend["g"] = (f"wall time from the release of the storm to the last response, median of {s3['repeats']} "
                       f"storms ({s3.get('big_repeats', s3['repeats'])} at N=1000); one round-trip = the lone grant's "
                       f"time in the transport ({s3['rtt_ms']:.0f} ms "
                       "fixed delay + FakeLogto); \"no refresh\": the same storm through the middleware on a session "
                       "that needs nothing (the refresh is judged against it); \"peer\": the same storm behind the "
                       "peer session middleware with the token set of section 1, no refresh")
        for stack in ("asgi", "wsgi"):
            for n, case in s3[stack].items():
                rows.append(["3", f"{stack.upper()} refresh storm N={n}: slowest (bare; peer; no refresh)",
                             f"{case['slowest_ms']:.1f} ms ({case['bare_slowest_ms']:.1f}; "
                             f"{case['peer_slowest_ms']:.1f}; {case['quiet_slowest_ms']:.1f} ms)", "g"])
            first = next(iter(s3[stack].values()))
            rows.append(["3", f"{stack.upper()} one token round-trip", f"{first['round_trip_ms']:.1f} ms", "g"])
    s4 = results.get("cold_start")
    if s4:
        legend["h"] = f"wall time; every provider request delayed {s4['rtt_ms']:.0f} ms"
        for stack in ("asgi", "wsgi"):
            case = s4[stack]
            rows.append(["4", f"{stack.upper()} cold start: slowest of {s4['concurrency']} callbacks",
                         f"{case['slowest_ms']:.0f} ms", "h"])
    s5 = results.get("callback")
    if s5:
        case = s5["asgi"]
        legend["i"] = ("CPU time, `cryptography` ECDSA P-384/SHA-384 verify of an ID token (raw signature to DER), "
                       "one right before each callback of j, median ± MAD over the rounds of both stacks")
        legend["j"] = (f"CPU time of a callback minus its round-trip (httpx's `Client.send` with the mock "
                       f"transport, timed by an instrumented client subclass); in brackets the provider's CPU "
                       f"time inside the transport; {case['rounds']} rounds of {case['callbacks_per_round']} "
                       "callbacks, median ± MAD")
        rows.append(["5", "floor: one ES384 verification", f"{s5['floor']['median_us']:.0f} ± "
                     f"{s5['floor']['mad_us']:.0f} µs", "i"])
        for stack in ("asgi", "wsgi"):
            case = s5[stack]
            rows.append(["5", f"{stack.upper()} callback, middleware's own time (provider)",
                         f"{case['own_us']:.0f} ± {case['own_mad_us']:.0f} µs ({case['provider_us']:.0f} µs)", "j"])
            rows.append(["5", f"{stack.upper()} round-trip: httpx around the transport",
                         f"{case['client_us']:.0f} µs (counted as own: {case['with_client_ratio']:.2f}x floor)",
                         "j"])
    s6 = results.get("memory")
    if s6:
        store = s6["store"]
        legend["k"] = (f"tracemalloc, store filled with copies of what a real sign-in stores ({store['value_bytes']}"
                       f"-byte value, tags {', '.join(store['tags'])}), then {store['extra_inserted']:,} more")
        legend["l"] = "tracemalloc snapshot difference after gc.collect(), after warm-up, minimal inner app"
        rows.append(["6", f"MemoryStore, {store['sessions']:,} sessions", f"{store['bytes_per_session']:.0f} B/session",
                     "k"])
        rows.append(["6", "MemoryStore after the extra inserts", f"{store['length_after_extra']:,} sessions, "
                     f"{store['max_growth_fraction']:+.1%} memory", "k"])
        for name, case in s6["requests"].items():
            if isinstance(case, dict):
                rows.append(["6", f"growth after warm-up, {name.replace('_', ' ')}",
                             f"{case['growth_bytes']:+d} B / {case['requests']:,} req", "l"])
    s7 = results.get("cookie_size")
    if s7:
        legend["m"] = (f"name, value and attributes; ID token {s7['id_token_bytes']} B (ES384), 43-character access "
                       "and refresh tokens, https origin")
        rows.append(["7", "Set-Cookie, realistic token set (real sign-in)",
                     f"{s7['token_set_cookie']['set_cookie_bytes']} B ({s7['sign_in_cookie']['set_cookie_bytes']} B)",
                     "m"])
    s8 = results.get("workers_storm")
    if s8:
        legend["n"] = (f"uvicorn --workers {s8['workers']}, the Starlette example, default cookie store and "
                       f"coordination, the real oidc-provider; {s8['requests']} concurrent requests on fresh "
                       "connections once the token is due; from the release to the last response; workers = "
                       "distinct worker pids that answered")
        slowest = sorted(c["slowest_ms"] for c in s8["storms"])
        workers = sorted(c["workers"] for c in s8["storms"])
        rows.append(["8", f"{s8['workers']}-worker refresh storm, slowest request (min-max over storms)",
                     f"{slowest[0]:.0f}-{slowest[-1]:.0f} ms, {workers[0]}-{workers[-1]} workers", "n"])
    if not rows:
        return []
    widths = [1, max(len(r[1]) for r in rows), max(len(r[2]) for r in rows)]
    lines = [_row(["§", "figure", "value", "how"], [*widths, 0])]
    lines += [_row(r, [*widths, 0]) for r in rows]
    lines += ["", "how:"] + [f"  {key}: {text}" for key, text in legend.items()]
    return lines


def targets_table(found: list[Target]) -> list[str]:
    widths = [1, max(len(t.name) for t in found), max(len(t.measured) for t in found),
              max(len(t.limit) for t in found)]
    lines = [_row(["§", "target", "measured", "limit", "result"], [*widths, 0])]
    lines += [_row([t.section, t.name, t.measured, t.limit, t.verdict], [*widths, 0]) for t in found]
    return lines


def header(results: dict[str, Any]) -> list[str]:
    m = results["machine"]
    return [f"logto-middleware benchmarks, {results['finished']} ({results['wall_seconds']:.0f} s)"
            + (" [QUICK: reduced counts]" if results.get("quick") else ""),
            f"machine: {m['nproc']} x {m['cpu']}, Python {m['python']} ({m['platform']}), commit {m['commit']}; "
            f"load average before {results['load_before']}, after {results['load_after']}"]


# -- the plot ----------------------------------------------------------------------------------------


def plot(results: dict[str, Any], path: Path) -> None:
    panels = [k for k in ("overhead", "refresh_storm", "throughput") if k in results]
    if not panels:
        return
    # Imported here, not at the top: matplotlib and numpy would double the objects the garbage
    # collector walks in a full collection during the measurements (about 110 000 instead of
    # 60 000 here), a cost that belongs to the benchmark's plotting, not to the middleware.
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(panels), figsize=(6.2 * len(panels), 5.2), squeeze=False)
    draw = {"overhead": _plot_overhead, "refresh_storm": _plot_storm, "throughput": _plot_throughput}
    for ax, key in zip(axes[0], panels, strict=True):
        draw[key](ax, results[key])
    m = results["machine"]
    fig.suptitle(f"logto-middleware, {results['finished']} — {m['nproc']} x {m['cpu']}, Python {m['python']}",
                 fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _plot_overhead(ax: Any, s1: dict[str, Any]) -> None:
    bars = [("ASGI\npeer", s1["asgi"]["peer"], "#999999"), ("ASGI\nanon.", s1["asgi"]["anonymous"], "#7fb3d5"),
            ("ASGI\ncookie", s1["asgi"]["cookie"], "#2e86c1"), ("ASGI\nMemory", s1["asgi"]["memory"], "#1b4f72"),
            ("ASGI\nRedis", s1["asgi"]["redis"], "#0b2638"), ("WSGI\npeer", s1["wsgi"]["peer"], "#999999"),
            ("WSGI\nanon.", s1["wsgi"]["anonymous"], "#f5b041"), ("WSGI\ncookie", s1["wsgi"]["cookie"], "#ca6f1e")]
    values = [max(b[1]["overhead_us"], 0.1) for b in bars]
    errors = [b[1]["overhead_mad_us"] for b in bars]
    xs = range(len(bars))
    ax.bar(xs, values, yerr=errors, color=[b[2] for b in bars], capsize=3)
    for x, v in zip(xs, values, strict=True):
        ax.text(x, v * 1.08, f"{v:.1f}", ha="center", fontsize=8)
    floor = s1["floor"]["median_us"]
    ax.axhline(floor, color="green", linestyle="--", linewidth=1, label=f"crypto floor {floor:.1f} µs")
    ax.axhline(3 * floor, color="red", linestyle=":", linewidth=1, label=f"3x floor {3 * floor:.1f} µs")
    ax.set_xticks(list(xs), [b[0] for b in bars], fontsize=8)
    ax.set_yscale("log")
    ax.set_ylabel("added time per request, µs (log)")
    ax.set_title(f"Per-request overhead over the bare app\n(bare: Starlette {s1['asgi']['bare']['median_us']:.1f} µs, "
                 f"Flask {s1['wsgi']['bare']['median_us']:.1f} µs)", fontsize=10)
    ax.legend(fontsize=8, loc="upper left")


def _plot_storm(ax: Any, s3: dict[str, Any]) -> None:
    for stack, color in (("asgi", "#2e86c1"), ("wsgi", "#ca6f1e")):
        cases = s3[stack]
        ns = [int(n) for n in cases]
        ax.plot(ns, [c["slowest_ms"] for c in cases.values()], "o-", color=color,
                label=f"{stack.upper()} + logto, refresh storm")
        ax.plot(ns, [c["bare_slowest_ms"] for c in cases.values()], "s--", color=color, alpha=0.6,
                label=f"{stack.upper()} bare app, same storm")
        ax.plot(ns, [c["peer_slowest_ms"] for c in cases.values()], "^-.", color=color, alpha=0.6,
                label=f"{stack.upper()} peer session middleware, same storm, no refresh")
        ax.plot(ns, [c["limit_ms"] for c in cases.values()], ":", color=color, alpha=0.8,
                label=f"{stack.upper()} limit: 1.5x round-trip + no-refresh storm")
    ax.axhline(s3["rtt_ms"], color="grey", linewidth=0.8, label=f"one round-trip ({s3['rtt_ms']:.0f} ms delay)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("concurrent requests on one expired session (N)")
    ax.set_ylabel("slowest request, ms (log)")
    ax.set_title("Refresh under concurrency (one grant each time)", fontsize=10)
    ax.legend(fontsize=7)


def _plot_throughput(ax: Any, s2: dict[str, Any]) -> None:
    labels = ["bare", "+ logto\n(signed in)"]
    wall = [s2["bare_rps"], s2["logto_rps"]]
    cpu = [1e6 / s2["bare_cpu_us_per_request"], 1e6 / s2["logto_cpu_us_per_request"]]
    xs = [0, 1]
    ax.bar([x - 0.18 for x in xs], wall, width=0.36, color="#aab7b8", label="req/s (wall, wrk)")
    ax.bar([x + 0.18 for x in xs], cpu, width=0.36, color="#2e86c1", label="req per server CPU-second")
    for x, w, c in zip(xs, wall, cpu, strict=True):
        ax.text(x - 0.18, w, f"{w:.0f}", ha="center", va="bottom", fontsize=8)
        ax.text(x + 0.18, c, f"{c:.0f}", ha="center", va="bottom", fontsize=8)
    ax.set_xticks(xs, labels)
    ax.set_ylabel("requests per second")
    ax.set_title(f"uvicorn, one worker: ratio {s2['cpu_ratio']:.3f}x per CPU-s, {s2['ratio']:.3f}x wall",
                 fontsize=10)
    ax.legend(fontsize=8, loc="lower center")


# -- README ---------------------------------------------------------------------------------------------


def update_readme(readme: Path, lines: list[str]) -> None:
    text = readme.read_text()
    block = "\n".join([README_START, "", "```text", *lines, "```", "", "![latest results](results/latest.png)", "",
                       README_END])
    pattern = re.compile(re.escape(README_START) + ".*?" + re.escape(README_END), re.S)
    if pattern.search(text) is None:
        raise RuntimeError(f"{readme} lacks the {README_START} ... {README_END} markers")
    readme.write_text(pattern.sub(lambda _: block, text))
