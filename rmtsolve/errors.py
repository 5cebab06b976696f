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
                allowed: str | None = None, allow_inf: bool = False, allow_text: bool = False):
    """Raise :class:`ParameterError` unless every entry of ``value`` is finite (or +inf with
    ``allow_inf``) and in range; non-numeric values are a ParameterError too, and so are
    strings unless ``allow_text`` (decimal strings that high-precision paths read exactly)."""
    import numpy as np

    desc = allowed or _describe(low, high, low_open, high_open)
    try:
        if not allow_text and has_text(value):  # numpy would read '1' as 1.0
            raise TypeError
        if np.iscomplexobj(value):  # numpy would drop the imaginary part of a complex array
            raise TypeError
        arr = np.asarray(value, dtype=float) if not _is_mp(value) else np.asarray([float(value)])
    except (TypeError, ValueError, OverflowError):  # strings, complex numbers, ragged lists, 10**400
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


def not_real_scalar(value) -> bool:
    """Strings, bools, complex numbers and anything with a shape: not one real number."""
    import numpy as np

    if isinstance(value, (str, bytes, bool, np.bool_, complex, np.complexfloating)) or type(value).__name__ == "mpc":
        return True
    try:
        return not _is_mp(value) and np.ndim(value) != 0
    except ValueError:  # a ragged list
        return True


def check_scalar(name: str, value, **range_kw) -> float:
    """:func:`check_range` for one real number (the arguments of scalar-only functions);
    returns it as a float."""
    if not_real_scalar(value):
        allowed = range_kw.get("allowed")
        raise ParameterError(name, f"{allowed} (one number)" if allowed else "one real number " + _describe(
            range_kw.get("low"), range_kw.get("high"), range_kw.get("low_open", False),
            range_kw.get("high_open", False)), value)
    check_range(name, value, **range_kw)
    return float(value)


def check_integer(name: str, value, *, low: int, high: float | None = None, allowed: str | None = None) -> int:
    """One integer in [low, high] given as an int or an integral real (not a bool or a string);
    returns it as an int."""
    desc = allowed or f"an integer >= {low}" + ("" if high is None else f" and <= {high:g}")
    if not_real_scalar(value):
        raise ParameterError(name, desc, value)
    try:
        v = float(value)
    except (TypeError, ValueError, OverflowError):
        raise ParameterError(name, desc, value) from None
    if not (v.is_integer() and v >= low and (high is None or v <= high)):
        raise ParameterError(name, desc, value)
    return int(v)


def has_text(value) -> bool:
    """A string, or an array or (nested) list holding one."""
    import numpy as np

    if isinstance(value, (str, bytes)):
        return True
    if isinstance(value, np.ndarray):
        return value.dtype.kind in "USO" and (value.dtype.kind != "O" or any(
            isinstance(x, (str, bytes)) for x in value.ravel()))
    if isinstance(value, (list, tuple)):
        return any(has_text(x) for x in value)
    return False


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
