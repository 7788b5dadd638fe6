"""How many CPU threads the build's torch work uses: the CPUs this process may run on, less
what other processes are using when the build starts.

Why it matters (torch's default is one thread per core): machines are shared. On 2 cores
beside two busy-loop processes, one distillation step of the sample student took 0.154 s with
one torch thread and 3.588 s with two (0.136 s and 0.088 s idle;
scripts/benchmarks/bench_threads.py): every small op's OpenMP parallel region waits at its
barrier for a thread the scheduler has given to another process. A thread count that fits the
CPUs actually free keeps a build near its fair share of the machine instead of 23 times slower.

The CPUs this process may use are its affinity mask, capped by a cgroup CPU quota (containers
and CI runners often set one; ``os.cpu_count()`` sees neither). What the others use is sampled
from ``/proc/stat`` over a quarter of a second, on the CPUs in the mask only.

The default is ``auto``: the free CPUs when the build starts (on a torchrun machine, shared
between its ranks). ``--threads N`` (or ``EDGEPACK_THREADS=N``; an explicit ``OMP_NUM_THREADS=N``
counts too) fixes the count. An earlier default kept torch's own count (one thread per core) so
that the same build trained the same student whatever the machine's load, because CPU float
reductions change with the thread count (1 vs 2 threads moved the sample's 12-epoch student by
0.25 pp). That bought repeatability at the price of 2.6 to 23 times slower builds whenever
anything else ran (``scripts/benchmarks/bench_processes.sh``), which is most of the time on a
laptop or a CI runner. Repeatability now comes from the cache instead: the trained student is
keyed by teacher, data, student and recipe, not by the thread count, so a rebuild reuses it
whatever the load; a user who wants a cold build to repeat bit for bit fixes ``--threads``.
A fixed count above the CPUs free gets a warning. The thread count, its inputs and who chose it
go into the manifest (``compute``).

One process, not several: two single-thread torchrun ranks on 2 cores distilled 3.5 times
slower than one process (gloo's all-reduce per step costs more than the step;
``bench_processes.sh``), so the build never starts ranks by itself. OpenMP's wait policy is
left to the runtime: with ``auto``, no thread waits at a barrier for a CPU another process holds.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from edgepack.core.errors import ConfigError

ENV = "EDGEPACK_THREADS"
MAX_THREADS = 256
SAMPLE_SECONDS = 0.25
# A CPU counts as taken when another process uses at least this share of it: a core that is
# 30 % busy is still better used by a second thread than left idle.
TAKEN_SHARE = 0.5


@dataclass(frozen=True)
class CpuPlan:
    threads: int  # torch intra-op threads for this process
    available: int  # CPUs this process may use (affinity, capped by a cgroup quota)
    busy: float  # CPUs other processes were using when the build started
    source: str  # "auto (default)", "auto", "--threads", "$EDGEPACK_THREADS", "$OMP_NUM_THREADS"

    def to_dict(self) -> dict[str, object]:
        return {f"cpu_{key}": value for key, value in asdict(self).items()}

    @property
    def contended(self) -> bool:
        """More threads than the CPUs other work left free: small parallel regions wait."""
        return self.threads > max(1, self.available - _taken(self.busy))

    def describe(self) -> str:
        text = f"{self.threads} CPU thread(s) ({self.source}): {self.available} CPU(s) available"
        return text + f", {self.busy:.1f} busy with other work"


def plan(request: str | None = None, ranks_here: int = 1) -> CpuPlan:
    """The thread count for one of ``ranks_here`` processes of this build on this machine:
    ``request`` (``--threads``: a number or ``auto``) if given, else ``$EDGEPACK_THREADS``, else
    a whole number in ``$OMP_NUM_THREADS``, else ``auto``: the free CPUs shared between the
    ranks, at least one."""
    available, busy = available_cpus(), busy_cpus()
    omp = os.environ.get("OMP_NUM_THREADS", "").strip()
    choices = (
        ("--threads", request),
        (f"${ENV}", os.environ.get(ENV)),
        # OpenMP's own variable may hold a list ("4,2") or junk it ignores: only a plain count
        # is taken as the user's choice.
        ("$OMP_NUM_THREADS", omp if omp.isdigit() and int(omp) >= 1 else None),
    )
    source, raw = next(
        ((name, value.strip().lower()) for name, value in choices if value and value.strip()),
        ("auto (default)", "auto"),
    )
    if raw == "auto":
        free = max(1, available - _taken(busy))
        chosen = source if source == "auto (default)" else "auto"
        return CpuPlan(max(1, free // max(1, ranks_here)), available, round(busy, 2), chosen)
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_THREADS:
        raise ConfigError(f"{source}: expected auto or 1 to {MAX_THREADS} threads, got {raw!r}")
    return CpuPlan(int(raw), available, round(busy, 2), source)


def _taken(busy: float) -> int:
    """CPUs counted as taken by other work: those at least ``TAKEN_SHARE`` busy, rounded."""
    return math.floor(busy + (1 - TAKEN_SHARE))


def available_cpus() -> int:
    """The CPUs this process may run on: its affinity mask, capped by a cgroup CPU quota."""
    try:
        mask = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        mask = os.cpu_count() or 1
    quota = _cgroup_quota()
    return max(1, min(mask, quota) if quota is not None else mask)


def _cgroup_quota() -> int | None:
    """CPUs a cgroup quota allows (v2 ``cpu.max``, v1 ``cpu.cfs_quota_us``), rounded up."""
    try:
        fields = Path("/sys/fs/cgroup/cpu.max").read_text().split()
        if len(fields) == 2 and fields[0] != "max":
            return math.ceil(int(fields[0]) / int(fields[1]))
    except (OSError, ValueError, ZeroDivisionError):
        pass
    try:
        quota = int(Path("/sys/fs/cgroup/cpu/cpu.cfs_quota_us").read_text())
        period = int(Path("/sys/fs/cgroup/cpu/cpu.cfs_period_us").read_text())
        if quota > 0 and period > 0:
            return math.ceil(quota / period)
    except (OSError, ValueError):
        pass
    return None


def busy_cpus(seconds: float = SAMPLE_SECONDS) -> float:
    """CPUs (of this process's mask) other processes kept busy over ``seconds``; this process
    sleeps meanwhile, so it adds nothing. Falls back to the 1-minute load average."""
    try:
        mask = os.sched_getaffinity(0)
        before = _cpu_times(mask)
        time.sleep(seconds)
        after = _cpu_times(mask)
    except (AttributeError, OSError, ValueError):
        try:
            return float(os.getloadavg()[0])
        except OSError:
            return 0.0
    busy = 0.0
    for cpu, (idle, total) in after.items():
        if cpu in before and total > before[cpu][1]:
            spent = total - before[cpu][1]
            busy += 1 - (idle - before[cpu][0]) / spent
    return busy


def _cpu_times(mask: set[int]) -> dict[int, tuple[int, int]]:
    """(idle + iowait, total) jiffies per CPU in ``mask``, from ``/proc/stat``."""
    found = {}
    for line in Path("/proc/stat").read_text().splitlines():
        name, *values = line.split()
        if not name.startswith("cpu") or name == "cpu":
            continue
        cpu = int(name[3:])
        if cpu in mask:
            ticks = [int(v) for v in values[:8]]
            found[cpu] = (ticks[3] + ticks[4], sum(ticks))
    return found


def apply(cpu: CpuPlan) -> None:
    """Set torch's intra-op thread count to the plan's."""
    import torch

    torch.set_num_threads(cpu.threads)
