"""Exceptions with the messages the CLI prints (SPEC section 3)."""
from __future__ import annotations


class ParameterError(ValueError):
    """A parameter outside its allowed range; the CLI exits with status 2.

    The message names the parameter and the allowed range in one line.
    """

    def __init__(self, name: str, allowed: str, value=None):
        self.name = name
        self.allowed = allowed
        shown = "" if value is None else f" (got {value!r})"
        super().__init__(f"{name} must be {allowed}{shown}")


class ConvergenceError(RuntimeError):
    """A solver did not reach its tolerance; the CLI exits with status 3."""


def check_range(name: str, value, *, low=None, high=None, low_open=False, high_open=False,
                allowed: str | None = None):
    """Raise :class:`ParameterError` unless every entry of ``value`` is finite and in range."""
    import numpy as np

    arr = np.asarray(value, dtype=float) if not _is_mp(value) else np.asarray([float(value)])
    desc = allowed or _describe(low, high, low_open, high_open)
    bad = ~np.isfinite(arr)
    if low is not None:
        bad |= (arr <= low) if low_open else (arr < low)
    if high is not None:
        bad |= (arr >= high) if high_open else (arr > high)
    if np.any(bad):
        shown = arr[bad].flat[0] if arr.ndim else float(arr)
        raise ParameterError(name, desc, float(shown))
    return value


def _is_mp(value) -> bool:
    return type(value).__module__.startswith("mpmath")


def _describe(low, high, low_open, high_open) -> str:
    if low is not None and high is None:
        return f"{'>' if low_open else '>='} {low:g} and finite"
    if high is not None and low is None:
        return f"{'<' if high_open else '<='} {high:g}"
    lb = "(" if low_open else "["
    rb = ")" if high_open else "]"
    return f"in {lb}{low:g}, {high:g}{rb}"
