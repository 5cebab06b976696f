"""JSON and table rendering of results (conventions section 3 number conventions)."""
from __future__ import annotations

import json
import math
import numbers

import mpmath
import numpy as np


def _scalar(x, dps=None):
    """A JSON-ready scalar: finite reals as numbers, inf/nan as strings, complex as {re, im}.

    mpmath numbers are printed with ``dps`` significant digits (all of them are kept)."""
    if isinstance(x, (mpmath.mpf,)):
        if mpmath.isfinite(x):
            return _RawNumber(mpmath.nstr(x, dps or mpmath.mp.dps, min_fixed=-4, max_fixed=6))
        return "nan" if mpmath.isnan(x) else ("inf" if x > 0 else "-inf")
    if isinstance(x, mpmath.mpc):
        return {"re": _scalar(x.real, dps), "im": _scalar(x.imag, dps)}
    if isinstance(x, (complex, np.complexfloating)):
        return {"re": _scalar(float(x.real)), "im": _scalar(float(x.imag))}
    if isinstance(x, (bool, np.bool_)):
        return bool(x)
    if isinstance(x, numbers.Integral):
        return int(x)
    if isinstance(x, numbers.Real):
        xf = float(x)
        if math.isfinite(xf):
            return xf
        return "nan" if math.isnan(xf) else ("inf" if xf > 0 else "-inf")
    return x


class _RawNumber(str):
    """A number already rendered as text (keeps all mpmath digits in the JSON)."""


def jsonable(obj, dps=None):
    if isinstance(obj, dict):
        return {str(k): jsonable(v, dps) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v, dps) for v in obj]
    if isinstance(obj, np.ndarray):
        return jsonable(obj.tolist(), dps) if obj.ndim else jsonable(obj[()], dps)
    return _scalar(obj, dps)


def dumps(obj, dps=None) -> str:
    """Serialise to one line of JSON; mpmath numbers keep ``dps`` digits."""
    data = jsonable(obj, dps)
    marker = "@@rmtsolve-raw@@"

    def default(o):
        raise TypeError(f"not JSON serialisable: {type(o).__name__}")

    def mark(o):
        if isinstance(o, _RawNumber):
            return marker + str(o) + marker
        if isinstance(o, dict):
            return {k: mark(v) for k, v in o.items()}
        if isinstance(o, list):
            return [mark(v) for v in o]
        return o

    text = json.dumps(mark(data), default=default)
    return text.replace('"' + marker, "").replace(marker + '"', "")


def table(columns: dict, title: str | None = None) -> str:
    """A fixed-width text table of equal-length columns."""
    names = list(columns)
    cols = [np.atleast_1d(np.asarray(columns[n], dtype=object)) for n in names]
    rows = [[_fmt(c[i]) for c in cols] for i in range(len(cols[0]))]
    widths = [max(len(n), *(len(r[j]) for r in rows)) for j, n in enumerate(names)]
    lines = [] if title is None else [title]
    lines.append("  ".join(n.rjust(w) for n, w in zip(names, widths)))
    lines += ["  ".join(v.rjust(w) for v, w in zip(r, widths)) for r in rows]
    return "\n".join(lines)


def _fmt(x) -> str:
    if isinstance(x, (float, np.floating, mpmath.mpf)):
        return f"{float(x):.6g}"
    return str(x)
