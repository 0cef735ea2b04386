"""How much of this process's cores other processes used during a window: contention measured, not guessed.

The load average cannot tell a clean figure from a busy machine's: it lags by a minute and counts the
benchmark itself. Here the kernel's own counters are read at the two ends of a timed window (no
sampling thread, so nothing is taken from the measured threads):

- busy time of the cores this process may run on (`/proc/stat`: user, nice, system, irq, softirq);
- this process's own CPU time (`/proc/<pid>/stat`: utime + stime, all its threads);
- the hypervisor's steal time of those cores.

foreign share = (busy - own - one tick per core of sampling slack) / all time of those cores; steal
share = steal / all time. On a GPU, other processes holding a context on the device (NVML, when
nvidia-ml-py is installed) are listed.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel


@dataclass(frozen=True)
class CpuSnapshot:
    at: float  # time.monotonic()
    busy: int  # clock ticks, summed over the cores below
    steal: int
    total: int
    own: int  # the process's own utime + stime, clock ticks
    cores: int


class Contention(BaseModel):
    """What else ran on this process's cores during a window."""

    window_s: float
    cores: int
    foreign_share: float  # CPU time of other processes, as a share of all the cores' time
    steal_share: float  # time the hypervisor gave to other guests, same basis
    own_share: float  # the measured process itself, same basis
    foreign_device_pids: list[int] | None = None  # other processes on the accelerator; None: not known


def _usable_cpus() -> set[int]:
    try:
        return set(os.sched_getaffinity(0))
    except AttributeError:
        return set(range(os.cpu_count() or 1))


def _cpu_ticks(cpus: set[int]) -> tuple[int, int, int]:
    busy = steal = total = 0
    for line in Path("/proc/stat").read_text().splitlines():
        name, _, rest = line.partition(" ")
        if not name.startswith("cpu") or name == "cpu" or int(name[3:]) not in cpus:
            continue
        v = [int(x) for x in rest.split()]
        # user nice system idle iowait irq softirq steal (guest time is already inside user and nice)
        user, nice, system, idle, iowait, irq, softirq = v[:7]
        st = v[7] if len(v) > 7 else 0
        busy += user + nice + system + irq + softirq
        steal += st
        total += user + nice + system + idle + iowait + irq + softirq + st
    return busy, steal, total


def process_cpu_ticks(pid: int) -> int:
    """utime + stime of a process (all its threads), in clock ticks; 0 once it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0
    fields = text[text.rindex(")") + 2 :].split()  # the command name may hold spaces and parentheses
    return int(fields[11]) + int(fields[12])  # fields 14 and 15 of proc(5), counted after the name


def cpu_snapshot(pid: int | None = None) -> CpuSnapshot | None:
    """The counters now, for process `pid` (default: this one); None where /proc is not there."""
    if not Path("/proc/stat").is_file():
        return None
    cpus = _usable_cpus()
    busy, steal, total = _cpu_ticks(cpus)
    own = process_cpu_ticks(pid or os.getpid())
    return CpuSnapshot(at=time.monotonic(), busy=busy, steal=steal, total=total, own=own, cores=len(cpus))


def contention_between(start: CpuSnapshot | None, end: CpuSnapshot | None) -> Contention | None:
    """Contention over the window between two snapshots of one process; None when it cannot be known."""
    if start is None or end is None:
        return None
    total = end.total - start.total
    if total <= 0:  # a window shorter than one clock tick
        zero = {"foreign_share": 0.0, "steal_share": 0.0, "own_share": 0.0}
        return Contention(window_s=end.at - start.at, cores=end.cores, **zero)
    own = end.own - start.own
    # The kernel charges time in whole clock ticks (10 ms), per core and per thread, so the two counts can
    # disagree by about a tick per core: that much is sampling slack, not another process.
    foreign = max(0, (end.busy - start.busy) - own - end.cores)
    return Contention(
        window_s=round(end.at - start.at, 4),
        cores=end.cores,
        foreign_share=round(foreign / total, 4),
        steal_share=round((end.steal - start.steal) / total, 4),
        own_share=round(min(own, total) / total, 4),
    )


def foreign_device_pids(device_index: int = 0, own: set[int] | None = None) -> list[int] | None:
    """Processes other than `own` (default: this one) with a context on NVIDIA GPU `device_index`.

    None when NVML cannot say (nvidia-ml-py not installed, no driver): unknown, never "none".
    """
    try:
        import pynvml
    except ImportError:
        return None
    own = own or {os.getpid()}
    try:
        pynvml.nvmlInit()
        try:
            handle = pynvml.nvmlDeviceGetHandleByIndex(device_index)
            procs = list(pynvml.nvmlDeviceGetComputeRunningProcesses(handle))
            procs += list(pynvml.nvmlDeviceGetGraphicsRunningProcesses(handle))
        finally:
            pynvml.nvmlShutdown()
    except pynvml.NVMLError:
        return None
    return sorted({p.pid for p in procs} - own)
