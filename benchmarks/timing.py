"""The one timer every in-process figure goes through.

A *batch* runs its workload `n` times back to back. `compare()` calibrates `n` per variant so
that one batch lasts about `batch_seconds`, runs one warm-up batch per variant that is thrown
away, then runs `repeats` rounds in which every variant runs one batch, variants interleaved, so
slow drift of the machine hits all variants alike. Each batch is timed twice at once: wall time
(`time.perf_counter_ns`) and the CPU time of the benchmarking thread (`time.thread_time_ns`),
which does not count time the thread spent descheduled, so it stays honest on a busy machine.
CPU-bound variants are reported in CPU time; a variant that waits on I/O (Redis) in wall time.

A figure is the median over the rounds of the per-iteration time; its spread is the median
absolute deviation (MAD) over the rounds. An *overhead* is paired: in each round the variant's
time minus the baseline's time of the same round (same clock), then median and MAD.
"""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

Batch = Callable[[int], object]

WALL = "wall"
CPU = "cpu"


@dataclass
class Samples:
    """Per-iteration times (ns) of one variant, one value per round, for both clocks."""

    name: str
    iterations: int
    clock: str = CPU
    wall_ns: list[float] = field(default_factory=list)
    cpu_ns: list[float] = field(default_factory=list)

    def values(self, clock: str | None = None) -> list[float]:
        return self.wall_ns if (clock or self.clock) == WALL else self.cpu_ns

    @property
    def median_us(self) -> float:
        return statistics.median(self.values()) / 1000

    @property
    def mad_us(self) -> float:
        return mad(self.values()) / 1000

    def to_dict(self) -> dict[str, object]:
        return {"median_us": self.median_us, "mad_us": self.mad_us, "clock": self.clock,
                "iterations_per_round": self.iterations,
                "wall_median_us": statistics.median(self.wall_ns) / 1000,
                "cpu_median_us": statistics.median(self.cpu_ns) / 1000,
                "rounds_us": [v / 1000 for v in self.values()]}


def mad(values: Sequence[float]) -> float:
    middle = statistics.median(values)
    return statistics.median(abs(v - middle) for v in values)


def overhead(variant: Samples, baseline: Samples) -> tuple[float, float, list[float]]:
    """Median and MAD (µs) of the per-round difference variant - baseline (in the variant's
    clock), and the differences."""
    diffs = [(v - b) / 1000 for v, b in zip(variant.values(), baseline.values(variant.clock), strict=True)]
    return statistics.median(diffs), mad(diffs), diffs


def _time(batch: Batch, n: int) -> tuple[int, int]:
    wall, cpu = time.perf_counter_ns(), time.thread_time_ns()
    batch(n)
    return time.perf_counter_ns() - wall, time.thread_time_ns() - cpu


def calibrate(batch: Batch, batch_seconds: float) -> int:
    """Iterations for one batch of about `batch_seconds` of wall time (at least 1)."""
    n = 1
    while True:
        elapsed, _ = _time(batch, n)
        if elapsed >= 20_000_000 or n >= 10_000_000:  # 20 ms is enough to extrapolate
            per_iter = max(elapsed / n, 1.0)
            return max(1, int(batch_seconds * 1e9 / per_iter))
        n *= 10 if elapsed < 2_000_000 else 3


def compare(variants: Mapping[str, Batch], *, repeats: int, batch_seconds: float,
            clocks: Mapping[str, str] | None = None) -> dict[str, Samples]:
    """Interleaved rounds of every variant; see the module docstring."""
    sizes = {name: calibrate(batch, batch_seconds) for name, batch in variants.items()}
    for name, batch in variants.items():  # warm-up, discarded
        batch(sizes[name])
    samples = {name: Samples(name, sizes[name], (clocks or {}).get(name, CPU)) for name in variants}
    for _ in range(repeats):
        for name, batch in variants.items():
            gc.collect()
            wall, cpu = _time(batch, sizes[name])
            samples[name].wall_ns.append(wall / sizes[name])
            samples[name].cpu_ns.append(cpu / sizes[name])
    return samples


def calls(fn: Callable[[], object]) -> Batch:
    """A batch that calls `fn()` n times."""

    def batch(n: int) -> None:
        for _ in range(n):
            fn()

    return batch
