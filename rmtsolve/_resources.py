"""Memory estimates: refuse a computation that cannot fit before allocating anything."""
from __future__ import annotations

import os

from .errors import ParameterError


def available_bytes() -> int:
    """Memory available to this process now: MemAvailable on Linux (else physical memory), and
    no more than the address space left under an RLIMIT_AS limit (``ulimit -v``), which makes
    allocations fail with MemoryError however much memory the machine has free."""
    have = _proc_bytes("/proc/meminfo", "MemAvailable:")
    if have is None:
        try:
            have = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        except (ValueError, OSError, AttributeError):
            have = 2**40
    limit = _address_space_left()
    return have if limit is None else min(have, limit)


def _address_space_left() -> int | None:
    try:
        import resource

        soft = resource.getrlimit(resource.RLIMIT_AS)[0]
    except (ImportError, OSError, ValueError):
        return None
    if soft == resource.RLIM_INFINITY:
        return None
    return max(0, soft - (_proc_bytes("/proc/self/status", "VmSize:") or 0))


def _proc_bytes(path: str, field: str) -> int | None:
    """A ``field: N kB`` line of a /proc file in bytes, or None (no such file or line)."""
    try:
        with open(path) as fh:
            for line in fh:
                if line.startswith(field):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


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
