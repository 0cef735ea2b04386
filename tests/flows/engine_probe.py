"""A stand-in for Prefect's engine in tests/flows/test_warm_engine.py: run in a fork server's child."""

from __future__ import annotations

import os
import signal
import time


def run(argv: list[str]) -> int:
    cut = argv.index("--report-fd")
    os.close(int(argv[cut + 1]))
    mode, *rest = argv[:cut]
    print(f"child {os.getpid()}", flush=True)
    if mode == "exit":
        print(rest[0], flush=True)
        return int(rest[1])
    if mode == "hang":

        def said(signum: int, _frame: object) -> None:
            print(f"got {signal.Signals(signum).name}", flush=True)
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)

        signal.signal(signal.SIGTERM, said)
        print("ready", flush=True)
        time.sleep(120)
    return 0
