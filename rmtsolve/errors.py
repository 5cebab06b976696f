"""Exceptions with the messages the CLI prints (conventions section 3)."""
from __future__ import annotations


class ParameterError(ValueError):
    """A parameter outside its allowed range; the CLI exits with status 2.

    The message names the parameter and the allowed range in one line.
    """

    def __init__(self, name: str, allowed: str, value=None):
        self.name = name
        self.allowed = allowed
        shown = "" if value is None else f" (got {_one_line(value)})"
        super().__init__(f"{name} must be {allowed}{shown}")


def _one_line(value) -> str:
    """repr of a value on one short line (arrays by their first entries and shape)."""
    try:
        import numpy as np

        if isinstance(value, np.ndarray) and value.size > 1:
            head = ", ".join(repr(x) for x in value.ravel()[:3].tolist())
            return f"array of shape {value.shape}: [{head}{', ...' if value.size > 3 else ''}]"
    except ImportError:  # pragma: no cover - numpy is a dependency
        pass
    text = " ".join(repr(value).split())
    return text if len(text) <= 120 else text[:117] + "..."


class ConvergenceError(RuntimeError):
    """A solver did not reach its tolerance; the CLI exits with status 3."""


def check_range(name: str, value, *, low=None, high=None, low_open=False, high_open=False,
                allowed: str | None = None, allow_inf: bool = False):
    """Raise :class:`ParameterError` unless every entry of ``value`` is finite (or +inf with
    ``allow_inf``) and in range; non-numeric values are a ParameterError too."""
    import numpy as np

    desc = allowed or _describe(low, high, low_open, high_open)
    try:
        arr = np.asarray(value, dtype=float) if not _is_mp(value) else np.asarray([float(value)])
    except (TypeError, ValueError):  # strings, complex numbers, ragged lists
        raise ParameterError(name, "a real number or an array of real numbers " + desc, value) from None
    bad = np.isnan(arr) | (np.isinf(arr) & ~(allow_inf & (arr > 0)))
    if low is not None:
        bad |= (arr <= low) if low_open else (arr < low)
    if high is not None:
        bad |= ((arr >= high) if high_open else (arr > high)) & ~(allow_inf & np.isinf(arr))
    if np.any(bad):
        shown = arr[bad].flat[0] if arr.ndim else float(arr)
        raise ParameterError(name, desc, float(shown))
    return value


def _is_mp(value) -> bool:
    return type(value).__module__.startswith("mpmath")


def _describe(low, high, low_open, high_open) -> str:
    """The allowed range in words."""
    if low is not None and high is None:
        return f"{'>' if low_open else '>='} {low:g} and finite"
    if high is not None and low is None:
        return f"{'<' if high_open else '<='} {high:g}"
    lb = "(" if low_open else "["
    rb = ")" if high_open else "]"
    return f"in {lb}{low:g}, {high:g}{rb}"
