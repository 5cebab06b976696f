"""The two numeric back ends behind one interface.

Generated equation code (``rmtsolve._generated``) is written against a namespace ``_f``
providing ``sqrt, log, exp, erf, pi, j`` and exact rationals ``q(p, q)``.  ``NUMPY``
evaluates on arrays in double precision; :func:`mp_namespace` evaluates with mpmath at
a given number of decimal digits.
"""
from __future__ import annotations

import math
import types

import mpmath
import numpy as np
import scipy.special as _sps


def _npq(p, q):
    return p / q


NUMPY = types.SimpleNamespace(
    name="numpy", sqrt=np.sqrt, log=np.log, exp=np.exp, expm1=np.expm1, erf=_sps.erf, pi=np.pi, j=1j,
    q=_npq, abs=np.abs, eps=np.finfo(float).eps, dps=15,
)


# Python floats one point at a time: far less per-operation overhead than numpy scalars.
MATH = types.SimpleNamespace(
    name="math", sqrt=math.sqrt, log=math.log, exp=math.exp, expm1=math.expm1, erf=math.erf, pi=math.pi, j=1j,
    q=_npq, abs=abs, eps=np.finfo(float).eps, dps=15,
)


def mp_namespace(dps: int) -> types.SimpleNamespace:
    """Namespace evaluating in mpmath; call inside ``mpmath.workdps(dps)``."""
    return types.SimpleNamespace(
        name="mpmath", sqrt=mpmath.sqrt, log=mpmath.log, exp=mpmath.exp, expm1=mpmath.expm1, erf=mpmath.erf,
        pi=mpmath.pi, j=mpmath.mpc(0, 1), q=lambda p, q: mpmath.mpf(p) / q, abs=abs,
        eps=mpmath.mpf(10) ** (-dps), dps=dps,
    )


def check_dps(dps) -> int | None:
    """Validate the ``dps`` argument (None = double precision)."""
    from .errors import check_integer

    if dps is None:
        return None
    return check_integer("dps", dps, low=16, high=1000,
                         allowed="an integer in [16, 1000] (omit for double precision)")
