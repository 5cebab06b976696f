"""Shared helpers of the benchmark scripts: repeat timings and the machine description."""
import argparse
import os
import platform
import time

import numpy as np


def best(fn, repeat):
    """(best, median) wall time in seconds over ``repeat`` calls."""
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times), float(np.median(times))


def machine() -> dict:
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo")
                if line.startswith("model name")), "?")
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(),
            "numpy": np.__version__, "load_average_1min": os.getloadavg()[0]}


def cli(doc: str) -> None:
    """The scripts take no options; this makes ``--help`` print ``doc`` instead of running the benchmark."""
    argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter).parse_args()
