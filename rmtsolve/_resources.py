"""Memory estimates: refuse a computation that cannot fit before allocating anything."""
from __future__ import annotations

import os

from .errors import ParameterError


def available_bytes() -> int:
    """Memory available to this process now (MemAvailable on Linux, else physical memory)."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 2**40


def check_memory(name: str, needed: float, what: str) -> None:
    """ParameterError naming ``name`` when ``needed`` bytes exceed 80 % of the available memory."""
    have = available_bytes()
    if needed > 0.8 * have:
        raise ParameterError(name, f"small enough for memory: {what} needs about {_size(needed)}, "
                             f"{_size(have)} available", None)


def _size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB", "PB"):
        if n < 1024 or unit == "PB":
            return f"{n:.3g} {unit}"
        n /= 1024
    return f"{n:.3g} PB"  # pragma: no cover
