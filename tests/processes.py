"""What tests ask of an operating-system process they started or watched."""

from __future__ import annotations

import time

import psutil


def gone(pid: int, within_s: float = 10.0) -> bool:
    """True once `pid` has exited (reaped, or a zombie awaiting its parent) within `within_s` seconds.

    One look per poll: a process can be reaped between "does it exist" and "what is its state".
    """
    deadline = time.monotonic() + within_s
    while True:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
