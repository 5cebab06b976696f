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
from mpmath import libmp
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


# -- gmpy2: the hot loops of a high-precision solve ------------------------------------------
# An mpmath operation costs microseconds of Python around MPFR-sized work; gmpy2's mpfr/mpc
# call MPFR/MPC directly, about eight times faster on object arrays.  Values cross between the
# two exactly (binary mantissa and exponent), so a loop run in gmpy2 at mpmath's working
# precision returns what mpmath would have computed, up to rounding in the last bits.
def _gmpy_expm1(w):
    import gmpy2

    if not isinstance(w, gmpy2.mpc):
        return gmpy2.expm1(w)
    # MPC has no expm1: Re = expm1(x) cos y - 2 sin^2(y/2) keeps its relative accuracy near 0
    x, y = w.real, w.imag
    s = gmpy2.sin(y / 2)
    return gmpy2.mpc(gmpy2.expm1(x) * gmpy2.cos(y) - 2 * s * s, gmpy2.exp(x) * gmpy2.sin(y))


def gmpy_context():
    """A gmpy2 context at mpmath's working precision that raises (an ArithmeticError) where a
    result would leave MPFR's exponent range (about 10^(+-3e8)), instead of rounding it to 0
    or inf as mpmath, whose exponents are unbounded, would not."""
    import gmpy2

    ctx = gmpy2.get_context().copy()
    ctx.precision = mpmath.mp.prec
    ctx.trap_underflow = ctx.trap_overflow = True
    return ctx


def gmpy_namespace() -> types.SimpleNamespace:
    """Namespace of elementwise gmpy2 functions for generated code on object arrays.

    Use inside :func:`gmpy_context` on arrays made by :func:`to_gmpy`.
    """
    import gmpy2

    ew = np.frompyfunc
    return types.SimpleNamespace(name="gmpy2", sqrt=ew(gmpy2.sqrt, 1, 1), expm1=ew(_gmpy_expm1, 1, 1),
                                 exp=ew(gmpy2.exp, 1, 1), log=ew(gmpy2.log, 1, 1))


def _tuple_to_gmpy(t):
    import gmpy2

    sign, man, exp, bc = t
    if not man:  # mpmath's special values: zero (bc 0), inf (exp -456), nan
        v = gmpy2.mpfr(0 if not bc else ("inf" if exp in (-456, -789) else "nan"))
    else:
        v = gmpy2.mul_2exp(gmpy2.mpfr(man), exp)
    return -v if sign else v


def _one_to_gmpy(x):
    import gmpy2

    if not hasattr(x, "_mpc_") and not hasattr(x, "_mpf_"):
        x = mpmath.mpmathify(x)
    if hasattr(x, "_mpc_"):
        re, im = x._mpc_
        return gmpy2.mpc(_tuple_to_gmpy(re), _tuple_to_gmpy(im))
    return _tuple_to_gmpy(x._mpf_)


def _gmpy_to_tuple(v):
    import gmpy2

    if not v or not gmpy2.is_finite(v):
        return mpmath.mpf(float(v))._mpf_
    man, exp = v.as_mantissa_exp()
    return libmp.from_man_exp(int(man), int(exp), mpmath.mp.prec, "n")


def _one_from_gmpy(v):
    import gmpy2

    if isinstance(v, gmpy2.mpc):
        return mpmath.mp.make_mpc((_gmpy_to_tuple(v.real), _gmpy_to_tuple(v.imag)))
    return mpmath.mp.make_mpf(_gmpy_to_tuple(v))


def to_gmpy(x):
    """mpmath numbers (scalar or object array) as gmpy2 mpfr/mpc, exactly.

    Call inside :func:`gmpy_context`; a number beyond MPFR's exponent range raises an
    ArithmeticError (OverflowError or gmpy2's range errors).
    """
    if np.ndim(x) == 0:
        return _one_to_gmpy(x.item() if isinstance(x, np.ndarray) else x)
    return np.frompyfunc(_one_to_gmpy, 1, 1)(np.asarray(x, dtype=object))


def from_gmpy(v):
    """gmpy2 numbers (scalar or object array) as mpmath mpf/mpc, exactly (mpmath rounds them to
    its working precision)."""
    if np.ndim(v) == 0:
        return _one_from_gmpy(v.item() if isinstance(v, np.ndarray) else v)
    return np.frompyfunc(_one_from_gmpy, 1, 1)(np.asarray(v, dtype=object))
