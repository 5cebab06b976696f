"""Gaussian-equivalence coefficients of an activation at diffusion time t (conventions section 1).

Conventions: g, u, v ~ N(0, 1); rho = e^{-2t}; (u, v) standard normals with correlation
rho, v = rho u + s w with s = sqrt(1 - rho^2) and w ~ N(0, 1) independent of u.

- mu0 = E sigma(g), mu1 = E g sigma(g), mustar^2 = E sigma(g)^2 - mu0^2 - mu1^2;
- kernel K(rho) = E sigma(u) sigma(v) = sum_k rho^k c_k^2 (c_k the coefficients of sigma on
  the orthonormal Hermite polynomials He_k / sqrt(k!));
- mu_s^2 = K(rho) - mu0^2 - rho mu1^2 = sum_{k>=2} rho^k c_k^2 (shared part) and
  mu_e^2 = mustar^2 - mu_s^2 = sum_{k>=2} (1 - rho^k) c_k^2 (private part).

Numerics (no cancellation in either limit):

- with the centred activation sigmā(x) = sigma(x) - mu0 - mu1 x,
  mustar^2 = E sigmā(g)^2 and mu_e^2 = E (sigmā(u) - sigmā(v))^2 / 2, both integrals of
  non-negative functions; mu_e^2 is computed this way for rho > 1/2 (small t) and
  mu_s^2 = mustar^2 - mu_e^2;
- for rho <= 1/2 (large t) the Hermite series of mu_s^2 converges geometrically and is
  summed; mu_e^2 = mustar^2 - mu_s^2;
- relu, erf and linear use closed forms written to be stable for rho -> 0 and rho -> 1.

Double precision integrates with composite Gauss-Legendre rules (24 nodes per panel,
checked against 16 nodes, panels refined until they agree) on |x| <= 12 split at the kinks
of sigma; the double integral splits its inner integral where v crosses a kink and grades
the outer panels towards the kinks on the scale s. A few ms per (activation, t); results
are cached. With ``dps`` (see the notes above the mpmath section) the computation runs in
mpmath at ``dps + 6`` digits or more, to a relative tolerance 10^-(dps+2): for smooth
activations by trapezoid rules on cached dyadic lattices in exact fixed-point arithmetic
(tens of ms per activation and t at dps = 30 to 50, a few tenths of a second at 100
digits), for kinked ones by split Gauss-Legendre rules (seconds). Either path reaches its
tolerance or raises :class:`~rmtsolve.errors.ConvergenceError`. At very small t the
double-precision mu_e is accurate to about 1e-16 / sqrt(t) relative (rounding of
sigmā(u) - sigmā(v)); the mpmath path adds the digits this cancellation costs.
"""
from __future__ import annotations

import functools
import math
import time
import types
from dataclasses import dataclass

import mpmath
import numpy as np

from ._results import ShortRepr
from ._backend import check_dps
from .activations import Activation, resolve_activation, scaled_activation
from .errors import ConvergenceError, ParameterError, check_range, not_real_scalar

KEYS = ("mu0", "mu1", "mustar", "mu_s", "mu_e")

_RHO_SERIES = 0.5       # the Hermite series is summed for rho <= this
_K_MAX = 64             # Hermite terms: 0.5**64 ~ 5e-20 of mustar^2 is left out
_L_STEPS = (12.0, 20.0, 30.0, 38.0)  # double-precision truncations: phi(12) ~ 5e-32, then wider
                        # for activations that grow fast (x**50 peaks at |x| = 10 against phi)
_TAIL = 1e-18           # the integrand over the outermost unit, relative to its integral
_PANEL_LENGTHS = (2.0, 1.0, 0.5, 0.25)
_RTOL = 1e-12
# absolute accuracy floor of the squares, relative to E f^2: the pair quadrature's convergence
# test accepts this much, and Hermite coefficients that are pure rounding (c_k ~ 1e-17 for an
# affine f) square to below it
_ABS_FLOOR = 1e-28
_GL = {n: np.polynomial.legendre.leggauss(n) for n in (16, 24)}
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
_EPS = float(np.finfo(float).eps)


@dataclass(frozen=True, repr=False)
class Coefficients(ShortRepr):
    """Gaussian-equivalence coefficients of ``activation`` at diffusion time ``t``.

    ``mu0, mu1, mustar, mu_s, mu_e`` are floats (``dps`` None) or mpmath mpf at ``dps``
    digits; mustar^2 = mu_s^2 + mu_e^2.
    """

    mu0: object
    mu1: object
    mustar: object
    mu_s: object
    mu_e: object
    t: object
    activation: str
    dps: int | None = None

    def as_dict(self) -> dict:
        """The five coefficients keyed ``mu0, mu1, mustar, mu_s, mu_e``."""
        return {k: getattr(self, k) for k in KEYS}


def coefficients(activation, t, *, dps: int | None = None, s2=1.0) -> Coefficients:
    """Gaussian-equivalence coefficients (mu0, mu1, mustar, mu_s, mu_e) at time t.

    Parameters
    ----------
    activation : str, callable or Activation
        See :func:`rmtsolve.activations.resolve_activation`.
    t : float (or mpf / decimal string when dps is given)
        Diffusion time, > 0 and finite.
    dps : int, optional
        mpmath decimal digits; None (default) for double precision.
    s2 : float (or decimal string when dps is given)
        tr Sigma / d of the data (conventions 1.5), >= 0.  The preactivations h = w.y/sqrt(d) then have
        variance v_t = e^{-2t} s2 + D and covariance e^{-2t} s2 between two noisy copies of one
        data point, and the coefficients are those of h: mu0 = E sigma(h), mu1 = E sigma'(h)
        (= E h sigma(h)/v_t), mustar^2 = E sigma(h)^2 - mu0^2 - v_t mu1^2, mu_s^2 = E sigma(h_j)
        sigma(h_k) - mu0^2 - e^{-2t} s2 mu1^2 (j != k), mu_e^2 = mustar^2 - mu_s^2.  s2 = 1 gives
        the unit-variance coefficients of the module docstring.

    Raises
    ------
    ParameterError
        For a bad activation, t, or dps (or dps with a double-only callable).
    ConvergenceError
        If a quadrature does not reach its tolerance.
    """
    act = resolve_activation(activation)
    dps = check_dps(dps)
    _check_t(t)
    if not isinstance(s2, str) and not_real_scalar(s2):  # decimal strings are read exactly at dps
        raise ParameterError("s2", "one number >= 0 and finite", s2)
    try:
        check_range("s2", s2, low=0.0, allow_text=True)
    except (TypeError, ValueError) as exc:
        if isinstance(exc, ParameterError):
            raise
        raise ParameterError("s2", ">= 0 and finite", s2) from exc
    unit = float(s2) == 1.0
    if dps is None:
        return _coefficients_np(act, float(t)) if unit else _coefficients_var_np(act, float(t), float(s2))
    _require_mp(act)
    if unit:
        return _coefficients_mp(act, _mp_key(t), dps)
    return _coefficients_var_mp(act, _mp_key(t), _mp_key(s2), dps)


def coefficients_array(activation, t) -> dict:
    """Double-precision coefficients for an array of times.

    Returns a dict with keys ``mu0, mu1, mustar, mu_s, mu_e`` of float arrays shaped
    like ``t``; each distinct t is computed once (and cached).
    """
    act = resolve_activation(activation)
    _check_t(t, scalar=False)
    t = np.asarray(t, dtype=float)
    uniq, inverse = np.unique(t, return_inverse=True)
    rows = [_coefficients_np(act, float(tu)) for tu in uniq]
    return {k: np.array([getattr(r, k) for r in rows])[inverse].reshape(t.shape) for k in KEYS}


def kernel(activation, rho, *, dps: int | None = None):
    """K(rho) = E sigma(u) sigma(v) for standard normals with correlation rho in [-1, 1].

    Double precision accepts an array of rho (returns an array of the same shape).
    """
    act = resolve_activation(activation)
    dps = check_dps(dps)
    if dps is None:
        r = np.asarray(rho, dtype=float)
        check_range("rho", r, low=-1.0, high=1.0)
        out = np.array([_kernel_np(act, float(x)) for x in r.ravel()]).reshape(r.shape)
        return out if r.ndim else float(out)
    _require_mp(act)
    check_range("rho", rho, low=-1.0, high=1.0, allow_text=True)
    return _kernel_mp(act, _mp_key(rho), dps)


def _check_t(t, scalar: bool = True) -> None:
    if scalar and not isinstance(t, (str, mpmath.mpf)) and not_real_scalar(t):  # ragged lists too
        raise ParameterError("t", "a number > 0 and finite (coefficients_array takes arrays)", t)
    try:
        check_range("t", t, low=0.0, low_open=True, allowed="> 0 and finite", allow_text=True)
    except (TypeError, ValueError) as exc:
        if isinstance(exc, ParameterError):
            raise
        raise ParameterError("t", "> 0 and finite", t) from exc


def _require_mp(act: Activation) -> None:
    if act.mp_func is None:
        raise ParameterError(
            "activation", "a known name or an expression in x when dps is given "
            "(a callable must map an mpmath mpf to an mpf)", act.name)


def _mp_key(value):
    """Hashable exact representation of a float, mpf or decimal string."""
    return value if isinstance(value, (str, mpmath.mpf)) else float(value)


def _clip_square(value, err, name):
    """A non-negative square from a quadrature: tiny negative rounding becomes 0.

    ``err`` must include the absolute floor of the quadratures (``_ABS_FLOOR`` or tol^2 times
    E f^2): for an affine activation mustar^2 is exactly 0 and its parts are rounding noise."""
    if value < 0:
        if -value > err:
            raise ConvergenceError(f"{name} came out negative ({value}) beyond its error {err}")
        return abs(value * 0)  # +0, never -0
    return value


# ---------------------------------------------------------------- closed forms

def _asin_minus_x(x, ns):
    """asin(x) - x for 0 <= x <= 1 without cancellation at small x."""
    if x > 0.5:
        return ns.asin(x) - x
    # asin x - x = sum_{n>=1} (2n)! / (4^n n!^2 (2n+1)) x^(2n+1); ratio of terms <= x^2
    x2, term, total, n = x * x, x, x * 0, 0
    while True:
        n += 1
        term = term * x2 * (2 * n - 1) / (2 * n)
        add = term / (2 * n + 1)
        total += add
        if abs(add) <= ns.eps * abs(total):
            return total


def _sin_minus_x_cos(theta, ns):
    """sin(theta) - theta cos(theta) for 0 <= theta <= pi without cancellation at small theta."""
    if theta > 0.5:
        return ns.sin(theta) - theta * ns.cos(theta)
    # sum_{k>=1} (-1)^(k+1) 2k theta^(2k+1)/(2k+1)! = theta^3/3 - theta^5/30 + ...
    t2, power, total, k = theta * theta, theta, theta * 0, 0
    while True:
        k += 1
        power = power * t2 / ((2 * k) * (2 * k + 1))
        add = (2 * k) * power if k % 2 else -(2 * k) * power
        total += add
        if abs(add) <= ns.eps * abs(total):
            return total


def _closed_relu(rho, omr, ns):
    # mu_s^2 + mu_e^2 = mustar^2 exactly; each branch computes the smaller of the two, whose
    # formula has no cancellation there, from rho (small rho) or from omr = 1 - rho: near
    # rho = 1, asin(rho) would turn a rounding of rho into an error of order sqrt(eps)
    mustar2 = ns.one / 4 - 1 / (2 * ns.pi)
    if rho <= 0.5:
        sq = ns.sqrt(omr * (1 + rho))                 # sqrt(1 - rho^2)
        mu_s2 = rho * (ns.asin(rho) - rho / (1 + sq)) / (2 * ns.pi)
        mu_e2 = mustar2 - mu_s2
    else:
        theta = 2 * ns.asin(ns.sqrt(omr / 2))         # arccos(rho), accurate near rho = 1
        mu_e2 = omr / 4 - _sin_minus_x_cos(theta, ns) / (2 * ns.pi)
        mu_s2 = mustar2 - mu_e2
    return 1 / ns.sqrt(2 * ns.pi), ns.one / 2, mustar2, mu_s2, mu_e2


def _asin_minus(x, omx, ns):
    """asin(x) - x for 0 <= x <= 1 given omx = 1 - x exactly: the series at small x, and
    pi/2 - 2 asin(sqrt(omx/2)) - x near 1 (a rounded x would cost sqrt(eps) there)."""
    return _asin_minus_x(x, ns) if x <= 0.5 else ns.pi / 2 - 2 * ns.asin(ns.sqrt(omx / 2)) - x


def _erf_e_series(a, rho, omr, ns):
    """(asin a - a) - (asin(a rho) - a rho) = sum_{n>=1} alpha_n a^(2n+1) (1 - rho^(2n+1)) for
    a <= 1/2, alpha_n = (2n)!/(4^n n!^2 (2n+1)): positive terms, 1 - rho^k from omr = 1 - rho."""
    a2, term, total, n = a * a, a, a * 0, 0
    log_rho = ns.log1p(-omr) if rho > 0.5 else None
    while True:
        n += 1
        k = 2 * n + 1
        term = term * a2 * (2 * n - 1) / (2 * n)
        gap = -ns.expm1(k * log_rho) if log_rho is not None else 1 - rho**k
        add = term / k * gap
        total += add
        if n > 1 and abs(add) <= ns.eps * abs(total):
            return total


def _closed_erf(rho, omr, ns, c=None, omc=None):
    """erf(a x) with c = 2a^2/(1 + 2a^2) (a = 1: c = 2/3): K(rho) = (2/pi) asin(c rho).

    ``omc`` = 1 - c exactly (c is near 1 for a large preactivation variance), with omr = 1 - rho.
    """
    a = 2 * ns.one / 3 if c is None else c
    oma = ns.one / 3 if c is None else omc
    b = a * rho
    omb = oma + omr - oma * omr                       # 1 - a rho
    mu_s2 = 2 / ns.pi * _asin_minus(b, omb, ns)
    if a <= 0.5:  # there asin(d) - a omr cancels to O(a^2): sum the positive series instead
        mu_e2 = 2 / ns.pi * _erf_e_series(a, rho, omr, ns)
    else:
        # asin(a) - asin(b) = asin((a^2 - b^2) / (a sqrt(1 - b^2) + b sqrt(1 - a^2)))
        d = (a * omr) * (a + b) / (a * ns.sqrt(omb * (1 + b)) + b * ns.sqrt(oma * (1 + a)))
        mu_e2 = 2 / ns.pi * ns.asin(d) - 2 * a * omr / ns.pi
    mustar2 = 2 / ns.pi * _asin_minus(a, oma, ns)
    mu1 = 2 / ns.sqrt(3 * ns.pi) if c is None else ns.sqrt(2 * a / ns.pi)
    return ns.zero, mu1, mustar2, mu_s2, mu_e2


def _closed_linear(rho, omr, ns):
    return ns.zero, ns.one, ns.zero, ns.zero, ns.zero


_CLOSED = {"name:relu": _closed_relu, "name:erf": _closed_erf, "name:linear": _closed_linear}


def _kernel_relu(rho, ns):
    return (ns.sqrt(1 - rho * rho) + rho * (ns.pi - ns.acos(rho))) / (2 * ns.pi)


_CLOSED_KERNEL = {
    "name:relu": _kernel_relu,
    "name:erf": lambda rho, ns: 2 / ns.pi * ns.asin(2 * rho / 3),
    "name:linear": lambda rho, ns: rho,
}

_NS_NP = types.SimpleNamespace(sqrt=math.sqrt, asin=math.asin, acos=math.acos, sin=math.sin, cos=math.cos,
                               log1p=math.log1p, expm1=math.expm1, pi=math.pi, one=1.0, zero=0.0, eps=2.0 ** -53)


def _ns_mp():
    return types.SimpleNamespace(sqrt=mpmath.sqrt, asin=mpmath.asin, acos=mpmath.acos, sin=mpmath.sin,
                                 cos=mpmath.cos, log1p=mpmath.log1p, expm1=mpmath.expm1, pi=+mpmath.pi,
                                 one=mpmath.mpf(1), zero=mpmath.mpf(0), eps=mpmath.eps)


# ---------------------------------------------------------------- double precision

def _breaks(lo, hi, h, points=()):
    n = max(1, math.ceil((hi - lo) / h - 1e-9))
    extra = [p for p in points if lo < p < hi]
    return np.unique(np.concatenate([np.linspace(lo, hi, n + 1), extra]))


def _graded(kinks, scale, h, ratio):
    """Breakpoints k +- scale * ratio^j (< h) resolving features of width ``scale`` at kinks."""
    offsets = []
    d = scale
    while d < h:
        offsets.append(d)
        d *= ratio
    return [k + sgn * d for k in kinks for d in offsets for sgn in (-1, 1)]


def _rule(breaks, n):
    """Composite Gauss-Legendre nodes and weights (times the normal density phi)."""
    xi, wi = _GL[n]
    a, b = breaks[:-1, None], breaks[1:, None]
    x = (0.5 * (a + b) + 0.5 * (b - a) * xi).ravel()
    w = (0.5 * (b - a) * wi).ravel() * _INV_SQRT_2PI * np.exp(-0.5 * x * x)
    return x, w


@dataclass(frozen=True)
class _Moments:
    mu0: object
    mu1: object
    mustar2: object
    second: object     # E sigma^2, a scale for absolute tolerances
    c: tuple           # Hermite coefficients c_0 .. c_{K_MAX}
    c_err: tuple       # their error estimates
    h: object          # panel length (lattice step) that reached the tolerance
    level: int = 0     # lattice paths: the step is 2^-level ...
    L: float = 0       # ... on |x| <= L (moments and Hermite coefficients; double: the truncation)
    Lw: int = 0        # ... and |x| <= Lw for double integrals


def _label(act: Activation) -> str:
    """The activation's name, shortened for a one-line message."""
    return act.name if len(act.name) <= 60 else act.name[:57] + "..."


def _hermite_coeffs(x, w, s, kmax):
    """c_k = E sigma(g) He_k(g) / sqrt(k!), k = 0..kmax (normalised three-term recurrence)."""
    out = np.empty(kmax + 1)
    h_prev, h_cur = np.ones_like(x), x.copy()
    out[0], out[1] = w @ s, w @ (x * s)
    for k in range(1, kmax):
        h_prev, h_cur = h_cur, (x * h_cur - math.sqrt(k) * h_prev) / math.sqrt(k + 1)
        out[k + 1] = w @ (h_cur * s)
    return out


@functools.lru_cache(maxsize=256)
def _moments_np(act: Activation) -> _Moments:
    # overflow (e.g. 1e300*x) becomes inf/NaN, which the tolerance test below refuses; numpy's
    # warnings would only precede that error message
    with np.errstate(all="ignore"):
        return _moments_np_quiet(act)


def _moments_np_quiet(act: Activation) -> _Moments:
    L = _truncation_np(act)
    for h in _PANEL_LENGTHS:
        brk = _breaks(-L, L, h, act.kinks)
        res = []
        for n in (24, 16):
            x, w = _rule(brk, n)
            s = act.np_func(x)
            c = _hermite_coeffs(x, w, s, _K_MAX)
            sc = s - c[0] - c[1] * x
            res.append((c, w @ (sc * sc), w @ (s * s), w @ np.abs(s), w @ np.abs(x * s)))
        (c, m2, e2, a0, a1), (c16, m2_16, *_) = res
        c_err = np.abs(c - c16)
        ok = (c_err[0] <= _RTOL * a0 + 1e-300 and c_err[1] <= _RTOL * a1 + 1e-300
              and abs(m2 - m2_16) <= _RTOL * m2 + 1e-14 * e2
              # Hermite terms enter mu_s^2 with weights rho^k <= 2^-k
              and np.all(c_err[2:] * 0.5 ** np.arange(2, _K_MAX + 1) <= 1e-13 * math.sqrt(e2)))
        if ok:
            return _Moments(c[0], c[1], m2, e2, tuple(c), tuple(c_err), h, L=L)
    raise ConvergenceError(f"Gaussian moments of activation {_label(act)!r} did not converge")


def _truncation_np(act: Activation) -> float:
    """The first L of _L_STEPS beyond which sigma^2 phi (and |x sigma| phi) is negligible: their
    integrals over the outermost unit |x| in [L - 1, L] below _TAIL of the whole; such
    integrands decay faster than geometrically from there on."""
    for L in _L_STEPS:
        x, w = _rule(_breaks(-L, L, 1.0), 16)
        s = act.np_func(x)
        edge = np.abs(x) >= L - 1
        if all(w[edge] @ f[edge] <= _TAIL * (w @ f) for f in (s * s, np.abs(x * s))):
            return L
    raise ConvergenceError(f"Gaussian moments of activation {_label(act)!r} did not converge: "
                           f"its square against the normal density is not negligible at |x| = {_L_STEPS[-1]:g}")


def _combine(gu, gv, diff):
    if diff:
        d = gu - gv
        return d * d / 2
    return gu * gv


def _pair_np(act, mom, rho, s, slope, diff, h=None):
    """E over correlated normals (u, v) of (g(u) - g(v))^2 / 2 (``diff``) or g(u) g(v),
    g(x) = sigma(x) - slope x, on panels of length ``h`` (default: the moments' panel);
    returns (value, error estimate)."""
    h = mom.h if h is None else h
    kinks = np.asarray(act.kinks, dtype=float)
    L = mom.L
    outer = _breaks(-L, L, h, list(act.kinks) + _graded(act.kinks, s, h, 2))
    base = _breaks(-L, L, h)
    vals = []
    for n in (24, 16):
        u, wu = _rule(outer, n)
        # inner panels: a fixed grid plus the points where v = rho u + s w crosses a kink
        cross = np.clip((kinks[None, :] - rho * u[:, None]) / s, -L, L)
        brk = np.sort(np.concatenate([np.broadcast_to(base, (u.size, base.size)), cross], 1), 1)
        xi, wi = _GL[n]
        a, b = brk[:, :-1, None], brk[:, 1:, None]
        w = 0.5 * (a + b) + 0.5 * (b - a) * xi
        ww = 0.5 * (b - a) * wi * _INV_SQRT_2PI * np.exp(-0.5 * w * w)
        v = rho * u[:, None, None] + s * w
        gu = (act.np_func(u) - slope * u)[:, None, None]
        f = _combine(gu, act.np_func(v) - slope * v, diff)
        vals.append(wu @ np.einsum("ijk,ijk->i", ww, f))
    return vals[0], abs(vals[0] - vals[1])


def _coefficients_np(act: Activation, t: float) -> Coefficients:
    mu0, mu1, mustar2, mu_s2, mu_e2 = _squares_np(act, t)
    return Coefficients(mu0, mu1, math.sqrt(mustar2), math.sqrt(mu_s2), math.sqrt(mu_e2),
                        t, act.name, None)


def _variances(mu0, mu1, mustar2, mu_s2, mu_e2):
    """The squares as variances: a subnormal t (D = 1 - e^{-2t} below 1e-307, where double
    precision has no relative accuracy) can round a vanishing share below 0."""
    return mu0, mu1, max(mustar2, 0.0), max(mu_s2, 0.0), max(mu_e2, 0.0)


@functools.lru_cache(maxsize=8192)
def _squares_np(act: Activation, t: float):
    return _variances(*_squares_rho_np(act, math.exp(-2.0 * t), -math.expm1(-2.0 * t), t))


def _coefficients_var_np(act: Activation, t: float, s2: float) -> Coefficients:
    mu0, mu1, mustar2, mu_s2, mu_e2 = _squares_var_np(act, t, s2)
    return Coefficients(mu0, mu1, math.sqrt(mustar2), math.sqrt(mu_s2), math.sqrt(mu_e2),
                        t, act.name, None)


@functools.lru_cache(maxsize=8192)
def _squares_var_np(act: Activation, t: float, s2: float):
    """Coefficients at preactivation variance v = e^{-2t} s2 + D (covariance e^{-2t} s2).

    sigma(h) = sigma~(g) with g = h/sqrt(v) ~ N(0, 1) and sigma~(g) = sigma(sqrt(v) g); two
    copies have correlation rho = e^{-2t} s2 / v, and mu1 = mu1~/sqrt(v).  relu and linear
    are homogeneous (sigma~ = sqrt(v) sigma), erf has a closed form in v, other activations
    go through the quadratures with the scaled function.
    """
    D = -math.expm1(-2.0 * t)
    v = math.exp(-2.0 * t) * s2 + D
    rho, omr = math.exp(-2.0 * t) * s2 / v, D / v
    if act.key in ("name:relu", "name:linear"):
        mu0, mu1, mustar2, mu_s2, mu_e2 = _variances(*_squares_rho_np(act, rho, omr, t))
        return mu0 * math.sqrt(v), mu1, mustar2 * v, mu_s2 * v, mu_e2 * v
    if act.key == "name:erf":
        mu0, mu1, mustar2, mu_s2, mu_e2 = _closed_erf(rho, omr, _NS_NP, 2 * v / (1 + 2 * v), 1 / (1 + 2 * v))
    else:
        mu0, mu1, mustar2, mu_s2, mu_e2 = _squares_rho_np(scaled_activation(act, v), rho, omr, t)
    return _variances(mu0, mu1 / math.sqrt(v), mustar2, mu_s2, mu_e2)


def _squares_rho_np(act: Activation, rho: float, omr: float, t: float):
    """Unit-variance coefficients at correlation rho = 1 - omr between copies (t for messages)."""
    closed = _CLOSED.get(act.key)
    if closed is not None:
        return closed(rho, omr, _NS_NP)
    mom = _moments_np(act)
    if rho <= _RHO_SERIES:
        k = np.arange(2, _K_MAX + 1)
        rk = rho ** k
        c = np.asarray(mom.c[2:])
        mu_s2 = float(rk @ (c * c))
        err = float(rk @ (2 * np.abs(c) * mom.c_err[2:])) + rho ** (_K_MAX + 1) * mom.mustar2
        mu_e2 = _clip_square(mom.mustar2 - mu_s2, err + _ABS_FLOOR * mom.second, "mu_e^2")
        mu_s2 = min(mu_s2, mom.mustar2)  # keeps mustar^2 = mu_s^2 + mu_e^2 where rounding clipped
        return mom.mu0, mom.mu1, mom.mustar2, mu_s2, mu_e2
    s = math.sqrt(omr * (1.0 + rho))
    if _EPS / s > 1e-6:
        # v - u = O(s) drowns in rounding: sigmā(u) - sigmā(v) has relative error ~ eps / s
        raise ConvergenceError(f"t={t} is too small to compute mu_e of activation "
                               f"{_label(act)!r} in double precision; pass dps")
    mu1 = mom.mu1
    for h in (mom.h, mom.h / 2, mom.h / 4):  # the panels that sufficed for the moments, then finer
        mu_e2, err = _pair_np(act, mom, rho, s, mu1, True, h)
        # rounding of sigmā(u) - sigmā(v) (size ~ sqrt(mu_e^2)) bounds the attainable accuracy
        # when t is tiny: relative ~ eps / sqrt(mu_e^2)
        rounding = 16 * _EPS * math.sqrt((mom.second + mu1 * mu1) * mu_e2)
        if err <= _RTOL * mu_e2 + rounding + _ABS_FLOOR * mom.second:
            break
    else:
        raise ConvergenceError(f"mu_e^2 of activation {_label(act)!r} at t={t} did not converge")
    mu_s2 = _clip_square(mom.mustar2 - mu_e2, err + _ABS_FLOOR * mom.second, "mu_s^2")
    mu_e2 = min(mu_e2, mom.mustar2)
    return mom.mu0, mom.mu1, mom.mustar2, mu_s2, mu_e2


@functools.lru_cache(maxsize=4096)
def _kernel_np(act: Activation, rho: float) -> float:
    closed = _CLOSED_KERNEL.get(act.key)
    if closed is not None:
        return float(closed(rho, _NS_NP))
    mom = _moments_np(act)
    if abs(rho) <= _RHO_SERIES:
        return float(np.asarray(mom.c) ** 2 @ rho ** np.arange(_K_MAX + 1))
    s = math.sqrt(max(0.0, (1.0 - abs(rho)) * (1.0 + abs(rho))))
    if s == 0.0 and rho > 0:
        return float(mom.second)
    if s == 0.0:        # E sigma(u) sigma(-u)
        brk = _breaks(-mom.L, mom.L, mom.h, list(act.kinks) + [-k for k in act.kinks])
        vals = [w @ (act.np_func(x) * act.np_func(-x)) for x, w in
                (_rule(brk, n) for n in (24, 16))]
        if abs(vals[0] - vals[1]) > _RTOL * mom.second:
            raise ConvergenceError(f"kernel of activation {_label(act)!r} at rho=-1 did not converge")
        return float(vals[0])
    val, err = _pair_np(act, mom, rho, s, 0.0, False)
    if err > _RTOL * mom.second:
        raise ConvergenceError(f"kernel of activation {_label(act)!r} at rho={rho} did not converge")
    return float(val)


# ---------------------------------------------------------------- mpmath
#
# Working precision wp = dps + 6 digits, tolerance 10^-(dps+2) relative. Every rule is
# checked against a coarser one and, since the integrands are analytic (errors fall
# geometrically), the error of the finer rule is estimated as diff^2 / scale.
#
# Smooth activations (no kinks): trapezoid rules on the dyadic lattice x = i 2^-m, whose
# error falls like exp(-c 2^m) for an integrand analytic in a strip; the step is halved
# until two successive lattices agree to sqrt(tol). sigma and sqrt(phi) are evaluated
# once per lattice point and precision and cached (_Grid); all sums are exact integer
# arithmetic on fixed-point values (Python ints holding value * 2^B; Gaussian weights
# carry B plus twice the bits of the largest |sigma|, for activations like exp(3x)),
# fast and free of rounding, so no cancellation can cost digits:
#
# - moments: sums over the lattice;
# - Hermite coefficients for the series regime rho <= 1/2: the recurrence
#   He_{k+1} = x He_k - k He_{k-1} run on sqrt(phi) He_k, all lattice points at once
#   (numpy object arrays), until Parseval (E sigma^2 = sum_k c_k^2) bounds the rest of
#   the series;
# - the double integral for rho > 1/2: u on the lattice i h and v on the lattice
#   j |rho| h / q (q an integer), so that the conditional mean rho u_i is a lattice point
#   of v and the Gaussian weight of v given u depends on j - i q only: the double sum is
#   two exact discrete convolutions (Kronecker substitution into big integers). The
#   v-step is at most pi s / sqrt(ln(1/tol)) so that the Gaussian in w is resolved;
# - for small s = sqrt(1 - rho^2) (t -> 0), where that v-lattice would be too fine,
#   Gauss-Hermite in w (nodes at the working precision by Newton from numpy's, cached)
#   with u on the lattice; the cheaper scheme is picked from the timed cost of an
#   activation evaluation.
# sigmā(u) - sigmā(v) = O(s) cancels -log10(s) digits, which the values carry in addition.
#
# Kinked activations keep composite Gauss-Legendre rules split at the kinks, as in double
# precision, with the Hermite series for rho <= 1/4; the double integral also grades its
# outer panels towards u = k / rho (where v crosses a kink k in the bulk of w) and moves
# to 24 vs 48 nodes per panel when 12 vs 24 do not reach the tolerance.

_RHO_SERIES_MP = 0.25       # kinked activations: Hermite series for rho <= this
_RHO_SERIES_LATTICE = 0.5   # smooth activations
_GUARD = 6
_EXTRA = 2                  # digits beyond wp carried by the lattice values
_M_MAX = 10                 # finest lattice step 2^-10
_MAX_EVALS = 250_000        # activation evaluations allowed for one double integral
_GH_LADDER = (4, 6, 8, 12, 16, 24, 32, 48, 64)
_LOG2_10 = math.log2(10)


@functools.lru_cache(maxsize=64)
def _gl_mp(level: int, prec: int):
    from mpmath.calculus.quadrature import GaussLegendre

    return GaussLegendre(mpmath.mp).calc_nodes(level, prec)


def _mp_setup(dps):
    """Working precision, tolerance and truncation |x| <= L (phi(L - 1) < 10^-(dps + 4))."""
    wp = dps + _GUARD
    tol = mpmath.mpf(10) ** (-(dps + 2))
    L = math.ceil(math.sqrt(2 * (dps + 4) * math.log(10))) + 1
    return wp, tol, L


def _phi_mp(x):
    return mpmath.exp(-x * x / 2) / mpmath.sqrt(2 * mpmath.pi)


# ------------------------------------------------ smooth activations: dyadic lattices

def _fix(x, bits):
    """int(x * 2^bits) (floor) for a finite mpf x."""
    return mpmath.libmp.to_fixed(x._mpf_, bits)


def _eval_mp(func, x):
    value = func(x)
    if not isinstance(value, mpmath.mpf):
        value = mpmath.mpf(value)
    if not mpmath.isfinite(value):
        raise ConvergenceError(f"activation is not finite at x = {mpmath.nstr(x, 8)}")
    return value


def _weight_bits(B, *value_lists):
    """Fixed-point bits for Gaussian weights multiplying products of two values held at
    B bits: B plus twice the bits of the largest |value| (weights are tiny where an
    activation like exp(3x) is huge, yet their product matters), plus guard bits."""
    top = max(max(abs(v) for v in values).bit_length() for values in value_lists)
    return B + 2 * max(0, top - B) + 16


class _Grid:
    """sigma(x) (fixed point, value * 2^B) and sqrt(phi(x)) (mpf) at the lattice points
    x = i 2^-m, each computed once at ``dps`` digits; keyed by i 2^(_M_MAX - m)."""

    def __init__(self, act: Activation, dps: int):
        self.act, self.dps = act, dps
        self.B = math.ceil(dps * _LOG2_10) + 24
        self.sig, self.sqphi = {}, {}
        self.seconds, self.count = 0.0, 0     # time spent evaluating, for cost estimates

    def nodes(self, m: int, L: int, stride: int = 1):
        """Indices i, sigma(i h) (fixed point) and sqrt(phi(i h)) (mpf) for |i h| <= L,
        h = 2^-m, i a multiple of ``stride``."""
        shift = _M_MAX - m
        n = (L << _M_MAX) // (stride << shift) * (stride << shift)
        keys = range(-n, n + 1, stride << shift)
        missing = [k for k in keys if k not in self.sig]
        if missing:
            B, func = self.B, self.act.mp_func
            start = time.perf_counter()
            with mpmath.workdps(self.dps):
                norm = (2 * mpmath.pi) ** mpmath.mpf(-0.25)
                for k in missing:
                    x = mpmath.ldexp(k, -_M_MAX)
                    self.sig[k] = _fix(_eval_mp(func, x), B)
                    if k not in self.sqphi:
                        self.sqphi[k] = self.sqphi[-k] = norm * mpmath.exp(-x * x / 4)
            self.seconds += time.perf_counter() - start
            self.count += len(missing)
        return ([k >> shift for k in keys], [self.sig[k] for k in keys],
                [self.sqphi[k] for k in keys])


@functools.lru_cache(maxsize=32)
def _grid(act: Activation, dps: int) -> _Grid:
    return _Grid(act, dps)


def _lattice_L(dps: int, rho_max: float) -> int:
    """Half-width L with phi(L - 1)^(1 - rho_max^2) < 10^-(dps + 4): enough for the Hermite
    coefficients c_k weighted by rho_max^k (He_k(x) rho^k grows like exp(rho^2 x^2 / 2))."""
    return math.ceil(math.sqrt(2 * (dps + 4) * math.log(10) / (1 - rho_max ** 2))) + 1


def _lattice_moments(grid: _Grid, m: int, L: int, stride: int = 1):
    """(mu0, mu1, mustar^2, E sigma^2) by the trapezoid rule with step stride 2^-m on |x| <= L."""
    idx, sg, sq = grid.nodes(m, L, stride)
    B = grid.B
    Bw = _weight_bits(B, sg)
    phi = [_fix(q * q, Bw) for q in sq]
    ws = [p * s for p, s in zip(phi, sg)]
    mu0 = stride * mpmath.ldexp(sum(ws), -Bw - B - m)
    mu1 = stride * mpmath.ldexp(sum(i * w for i, w in zip(idx, ws)), -Bw - B - 2 * m)
    second = stride * mpmath.ldexp(sum(w * s for w, s in zip(ws, sg)), -Bw - 2 * B - m)
    c0, c1 = _fix(mu0, B), _fix(mu1, B)
    g = [s - c0 - (c1 * i >> m) for i, s in zip(idx, sg)]
    mustar2 = stride * mpmath.ldexp(sum(p * gi * gi for p, gi in zip(phi, g)), -Bw - 2 * B - m)
    return mu0, mu1, mustar2, second


def _agree(cur, prev, tol) -> bool:
    """Two lattice estimates of (mu0, mu1, mustar^2, E sigma^2) agree to the tolerance."""
    (mu0, mu1, m2, e2), (p0, p1, pm2, pe2) = cur, prev
    return bool((mu0 - p0) ** 2 <= tol * e2 and (mu1 - p1) ** 2 <= tol * e2
                and (m2 - pm2) ** 2 <= tol * m2 * e2 + tol ** 2 * e2 ** 2
                and (e2 - pe2) ** 2 <= tol * e2 ** 2)


def _tail_too_big(grid: _Grid, L: int, tol, second) -> bool:
    """Whether phi (1 + x^2) sigma^2 at the lattice ends |x| >= L - 1 is not negligible
    against E sigma^2 (an activation growing like exp(a x) needs a wider lattice)."""
    idx, sg, sq = grid.nodes(1, L)
    worst = max(q * q * (1 + mpmath.mpf(i * i) / 4) * mpmath.ldexp(s, -grid.B) ** 2
                for i, s, q in zip(idx, sg, sq) if abs(i) >= 2 * (L - 1))
    return worst > tol * second / 1000


@functools.lru_cache(maxsize=64)
def _moments_lattice_mp(act: Activation, dps: int) -> _Moments:
    wp, tol, L0 = _mp_setup(dps)
    L = _lattice_L(dps, _RHO_SERIES_LATTICE)
    grid = _grid(act, wp + _EXTRA)
    with mpmath.workdps(wp):
        prev = _lattice_moments(grid, 1, L)
        while _tail_too_big(grid, L, tol, prev[3]):
            if L > 64:
                raise ConvergenceError(f"Gaussian moments of activation {_label(act)!r}: the "
                                       f"integrand does not decay by |x| = 64")
            L, L0 = L + 4, L0 + 4
            prev = _lattice_moments(grid, 1, L)
        for m in range(2, _M_MAX + 1):
            cur = _lattice_moments(grid, m, L)
            (mu0, mu1, m2, e2), (p0, p1, _, _) = cur, prev
            # dyadic steps share their aliases (an oscillation at frequency w folds to the same
            # w mod 2 pi / h on every coarser level), so agreement is confirmed on the step
            # 3 h / 4 as well, whose aliases fall elsewhere (sin(100 x) fooled the dyadic test)
            if _agree(cur, prev, tol) and (m + 2 > _M_MAX  # (the finest lattice cannot check)
                                           or _agree(_lattice_moments(grid, m + 2, L, stride=3), cur, tol)):
                scale = mpmath.sqrt(e2) or 1
                c_err = ((mu0 - p0) ** 2 / scale, (mu1 - p1) ** 2 / scale)
                return _Moments(mu0, mu1, m2, e2, (mu0, mu1), c_err, mpmath.ldexp(1, -m),
                                level=m, L=L, Lw=L0)
            prev = cur
    raise ConvergenceError(f"Gaussian moments of activation {_label(act)!r} did not converge "
                           f"at dps={dps} (lattice step 2^-{_M_MAX}); is it smooth?")


@functools.lru_cache(maxsize=64)
def _series_lattice_mp(act: Activation, dps: int):
    """Hermite coefficients (c_0 .. c_K), their error estimates, and a bound on
    sum_{k > K} c_k^2, for rho <= _RHO_SERIES_LATTICE."""
    mom = _moments_mp(act, dps)
    wp, tol, _ = _mp_setup(dps)
    rmax = _RHO_SERIES_LATTICE
    drop = math.log2(1 / rmax)
    kmax = math.ceil((dps + 4) * math.log(10) / math.log(1 / rmax))
    grid = _grid(act, wp + _EXTRA)
    if not mom.second:                  # sigma = 0 on the lattice
        return (mom.mu0, mom.mu1), (0, 0), mom.second
    with mpmath.workdps(wp):
        scale = mpmath.sqrt(mom.second)
        target = tol * mom.mustar2 / 8
        for m in range(mom.level, _M_MAX + 1):
            idx, sg, sq = grid.nodes(m, mom.L)
            # a = sigma sqrt(phi) and the recurrence carry Ba = B + log2 max|sigma| bits
            Bw = _weight_bits(grid.B, sg)
            Ba = (grid.B + Bw) // 2
            x = np.array(idx, dtype=object)
            sqf = [_fix(q, Bw) for q in sq]
            a = np.array([s * q >> (grid.B + Bw - Ba) for s, q in zip(sg, sqf)], dtype=object)
            a_even, a_odd = a[::2], a[1::2]
            # f = sqrt(phi) He_k(x) 2^e, x = i 2^-m: f_{k+1} = i f_k - k 4^m f_{k-1} raises e
            # by m per step; both are shifted right now and then so that e follows
            # Ba - log2 sqrt(k!) (f stays below 2^Ba) less 0.9 log2(1/rmax) bits per k,
            # which rmax^k makes insignificant in the series
            f_prev, f = np.zeros(len(idx), dtype=object), np.array(sqf, dtype=object)
            e, inv_sqrt_fact = Bw, mpmath.mpf(1)
            c, c_err, total = [], [], mpmath.mpf(0)
            for k in range(kmax + 1):
                if k:
                    inv_sqrt_fact /= mpmath.sqrt(k)
                    f_prev, f = f, x * f - ((k - 1) << 2 * m) * f_prev
                    e += m
                    want = Ba - int(math.lgamma(k + 1) / (2 * math.log(2)) + 0.9 * drop * k)
                    if e - want >= 24:
                        f, f_prev, e = f >> (e - want), f_prev >> (e - want), want
                norm = mpmath.ldexp(inv_sqrt_fact, -e - Ba - m)  # h 2^(-e - Ba) / sqrt(k!)
                even, odd = np.dot(a_even, f[::2]), np.dot(a_odd, f[1::2])
                ck = mpmath.mpf(even + odd) * norm
                coarse = 2 * mpmath.mpf(even) * norm
                err = (ck - coarse) ** 2 / scale
                if err * mpmath.mpf(rmax) ** k > tol * scale:
                    break
                c.append(ck)
                c_err.append(err)
                total += ck * ck
                tail = abs(mom.second - total) + 4 * tol * mom.second
                if mpmath.mpf(rmax) ** (k + 1) * tail <= target:
                    return tuple(c), tuple(c_err), tail
            else:
                return tuple(c), tuple(c_err), tail
    raise ConvergenceError(f"Hermite coefficients of activation {_label(act)!r} did not "
                           f"converge at dps={dps}")


def _pack(values, nbytes):
    pos = b"".join((v if v > 0 else 0).to_bytes(nbytes, "little") for v in values)
    packed = int.from_bytes(pos, "little")
    if any(v < 0 for v in values):
        neg = b"".join((-v if v < 0 else 0).to_bytes(nbytes, "little") for v in values)
        packed -= int.from_bytes(neg, "little")
    return packed


def _convolve(a, b):
    """Exact convolution of two lists of Python ints (Kronecker substitution: one big-integer
    product, the slots wide enough for every sum, decoded with signed digits)."""
    bits = (max(abs(v) for v in a).bit_length() + max(abs(v) for v in b).bit_length()
            + min(len(a), len(b)).bit_length() + 2)
    nbytes = (bits + 7) // 8
    width = 8 * nbytes
    n = len(a) + len(b) - 1
    product = (_pack(a, nbytes) * _pack(b, nbytes)) & ((1 << (width * n)) - 1)
    raw = product.to_bytes(nbytes * n, "little")
    out, carry, half, full, from_bytes = [], 0, 1 << (width - 1), 1 << width, int.from_bytes
    for pos in range(0, nbytes * n, nbytes):
        r = from_bytes(raw[pos:pos + nbytes], "little") + carry
        carry = r >= half
        out.append(r - full if carry else r)
    return out


def _lattice_pair_sum(W, gx, gy, G, q, diff):
    """sum_i W_i sum_k G_k F(gx_i, gy_{i q + k}), F = (a - b)^2 (``diff``) or a b, exactly.

    i runs over -N..N, k over -K..K (G symmetric) and j over -J..J, J = N q + K.
    """
    N, K, J = len(W) // 2, len(G) // 2, len(gy) // 2
    conv = _convolve(gy, G)                      # sum_k G_k gy_{r + k}, r = -J-K .. J+K
    at = [conv[J + K + i * q] for i in range(-N, N + 1)]
    wg = [w * g for w, g in zip(W, gx)]
    cross = sum(a * b for a, b in zip(wg, at))
    if not diff:
        return cross
    if q > 1:
        up = [0] * (2 * N * q + 1)
        up[::q] = W
    else:
        up = W
    dens = _convolve(up, G)                      # sum_{i q + k = j} W_i G_k, j = -J .. J
    return (sum(G) * sum(a * g for a, g in zip(wg, gx)) - 2 * cross
            + sum(g * g * d for g, d in zip(gy, dens)))


def _extra_digits(s) -> int:
    return max(_EXTRA, math.ceil(-math.log10(float(s))))


def _pair_lattice_mp(act, mom, rho, s, slope, diff, tol, dps, q):
    """The double integral on the lattices u = i h, v = j |rho| h / q: (value, error).

    Refined first in u only when q is even (h and q halve: the v-lattice, where nearly all
    activation evaluations are, stays as it is), else in both (h halves).
    """
    grid = _grid(act, dps + _GUARD + _extra_digits(s))
    B, func, L = grid.B, act.mp_func, mom.Lw
    sgn = 1 if rho > 0 else -1
    cache = {}
    m, halvings = mom.level, 0
    with mpmath.workdps(grid.dps):
        arho, slope_fix = abs(rho), _fix(mpmath.mpf(slope), B)
        for attempt in range(_M_MAX - m + 1):
            hv = arho * mpmath.ldexp(1, -m) / q
            K = math.ceil(L * float(s) / float(hv))
            K += K % 2
            idx, sg, sq = grid.nodes(m, L)
            N = len(idx) // 2
            J = N * q + K
            # y_j = j |rho| 2^-m / q with q = q0 / 2^halvings: keys j 2^(2 _M_MAX - m + halvings)
            # are proportional to y_j
            shift = 2 * _M_MAX - m + halvings
            if 2 * J + 1 > _MAX_EVALS:        # the earlier v-points are a subset of these
                break
            gx = [v - (slope_fix * i >> m) for i, v in zip(idx, sg)]
            gy = []
            for j in range(-J, J + 1):
                key = j << shift
                if key not in cache:
                    y = sgn * j * hv
                    cache[key] = _fix(_eval_mp(func, y) - slope * y, B)
                gy.append(cache[key])
            Bw = _weight_bits(B, gx, gy)
            W = [_fix(v * v, Bw) for v in sq]
            z = hv / s
            c = z / mpmath.sqrt(2 * mpmath.pi)
            half = [_fix(c * mpmath.exp(-(k * z) ** 2 / 2), Bw) for k in range(K + 1)]
            G = half[:0:-1] + half
            fine = _lattice_pair_sum(W, gx, gy, G, q, diff)
            coarse = _lattice_pair_sum(W[::2], gx[::2], gy[::2], G[::2], q, diff)
            # G on the coarse lattice is 2 G[::2]; the u-step is 2h
            value = mpmath.ldexp(fine, -2 * Bw - 2 * B - m - diff)
            err = (value - mpmath.ldexp(coarse, -2 * Bw - 2 * B - m + 2 - diff)) ** 2
            if diff:
                err = err / value if value else abs(err)
                if err <= tol * value + tol ** 2 * mom.second:
                    return value, err
            else:
                err = err / mom.second if mom.second else abs(err)
                if err <= tol * mom.second:
                    return value, err
            if m == _M_MAX:
                break
            m += 1
            if attempt == 0 and q % 2 == 0:
                q, halvings = q // 2, 1         # finer u, same v-lattice
    raise ConvergenceError(f"double Gaussian integral of activation {_label(act)!r} at rho="
                           f"{mpmath.nstr(rho, 8)} did not converge at dps={dps}; "
                           f"is the activation smooth?")


@functools.lru_cache(maxsize=64)
def _gauss_hermite(n: int, dps: int):
    """Nodes and weights of the n-point Gauss rule for E f(w), w ~ N(0, 1), at dps digits
    (Newton on the normalised Hermite recurrence from numpy's double-precision nodes)."""
    start = np.polynomial.hermite_e.hermegauss(n)[0]
    with mpmath.workdps(dps + 10):
        sq = [mpmath.sqrt(k) for k in range(n + 1)]
        nodes, weights = [], []
        for x0 in start[n // 2:]:                  # x >= 0; the rule is symmetric
            x = mpmath.mpf(float(x0))
            for _ in range(100):
                p_prev, p = mpmath.mpf(0), mpmath.mpf(1)
                for k in range(n):
                    p_prev, p = p, (x * p - sq[k] * p_prev) / sq[k + 1]
                dx = p / (sq[n] * p_prev)          # He_n' = n He_{n-1}
                x -= dx
                if abs(dx) <= mpmath.ldexp(abs(x) + 1, -mpmath.mp.prec + 8):
                    break
            else:
                raise ConvergenceError(f"Gauss-Hermite nodes (n={n}) did not converge")
            p_prev, p = mpmath.mpf(0), mpmath.mpf(1)
            for k in range(n - 1):
                p_prev, p = p, (x * p - sq[k] * p_prev) / sq[k + 1]
            nodes.append(x)
            weights.append(1 / (n * p * p))
        full_x = [-v for v in reversed(nodes[n % 2:])] + nodes
        full_w = list(reversed(weights[n % 2:])) + weights
    with mpmath.workdps(dps):
        return tuple(+v for v in full_x), tuple(+v for v in full_w)


def _gh_start(s, tol):
    """Index in _GH_LADDER of the smallest Gauss-Hermite rule expected to integrate
    F(rho u + s w) in w to tol, for F analytic in the strip |Im| < pi/2 (as tanh): error
    ~ (2 n s^2 / (e (pi/2)^2))^n; None if beyond the ladder. (The ladder is climbed if
    not.)"""
    s2, lt = float(s) ** 2, float(mpmath.log(tol)) - 5
    for i, n in enumerate(_GH_LADDER[:-1]):
        if n * math.log(max(8 * n * s2 / (math.e * math.pi ** 2), 1e-300)) <= lt:
            return i
    return None


def _pair_gh_mp(act, mom, rho, s, slope, diff, tol, dps, first):
    """The double integral with u on the lattice and Gauss-Hermite in w: (value, error), or
    None if the ladder of rules is exhausted.

    Accepted when two successive rules of the ladder agree to tol (in w) and the lattice
    agrees with its even points to sqrt(tol) (in u)."""
    grid = _grid(act, dps + _GUARD + _extra_digits(s))
    B, func, L = grid.B, act.mp_func, mom.Lw

    def total(n, xs, gx, sq, m):
        nodes, weights = _gauss_hermite(n, grid.dps)
        gv = [[_fix(_eval_mp(func, v) - slope * v, B) for v in (rho * x + s * w for w in nodes)]
              for x in xs]
        Bw = _weight_bits(B, gx, *gv)
        wf = [_fix(w, Bw) for w in weights]
        if diff:
            rows = [sum(w * (g - v) ** 2 for w, v in zip(wf, row)) for g, row in zip(gx, gv)]
        else:
            rows = [g * sum(w * v for w, v in zip(wf, row)) for g, row in zip(gx, gv)]
        W = [_fix(q * q, Bw) for q in sq]
        fine = mpmath.ldexp(sum(w * r for w, r in zip(W, rows)), -2 * Bw - 2 * B - m - diff)
        coarse = mpmath.ldexp(sum(w * r for w, r in zip(W[::2], rows[::2])),
                              -2 * Bw - 2 * B - m + 1 - diff)
        return fine, coarse

    with mpmath.workdps(grid.dps):
        slope_fix = _fix(mpmath.mpf(slope), B)
        for m in range(mom.level, _M_MAX + 1):
            idx, sg, sq = grid.nodes(m, L)
            if len(idx) * (_GH_LADDER[first] + _GH_LADDER[first + 1]) > _MAX_EVALS:
                break
            xs = [mpmath.ldexp(i, -m) for i in idx]
            gx = [v - (slope_fix * i >> m) for i, v in zip(idx, sg)]
            prev = None
            for n in _GH_LADDER[first:]:
                value, coarse = total(n, xs, gx, sq, m)
                scale = abs(value) if diff else mom.second
                # the absolute floor as in the acceptance below: for an affine activation the
                # value is rounding noise that successive rules do not reproduce relatively
                if prev is not None and abs(value - prev) <= tol * scale + tol ** 2 * mom.second:
                    break
                prev = value
            else:
                break
            err = (value - coarse) ** 2 / scale if scale else abs(value - coarse)
            err += abs(value - prev)
            if err <= tol * scale + tol ** 2 * mom.second:
                return value, err
            first = _GH_LADDER.index(n) - 1
    return None


def _pair_smooth_mp(act, mom, rho, s, slope, diff, tol, dps):
    """E over correlated normals (u, v) of (g(u) - g(v))^2 / 2 (``diff``) or g(u) g(v),
    g(x) = sigma(x) - slope x, for smooth sigma; picks the cheaper of the lattice and the
    Gauss-Hermite scheme by the number of activation evaluations."""
    L = mom.Lw
    h = 2.0 ** -mom.level
    # v-step <= cmax s: the coarse check lattice (2 h_v) resolves the Gaussian in w to
    # about tol^0.6 (exp(-2 pi^2 s^2 / (2 h_v)^2)), the fine one to far below tol
    cmax = 0.9 * math.pi / math.sqrt(-float(mpmath.log(tol)))
    arho, sf = abs(float(rho)), float(s)
    q = max(1, math.ceil(arho * h / (cmax * sf)))
    q += q % 2 if q > 1 else 0
    hv = arho * h / q
    K = math.ceil(L * sf / hv)
    N = L << mom.level
    J = N * q + K
    # cost in seconds: activation evaluations (timed on the moments' lattice) against the
    # big-integer convolutions (~7e-8 s per term at 400 bits, growing like bits^1.6)
    grid = _grid(act, dps + _GUARD + _EXTRA)
    t_eval = grid.seconds / max(grid.count, 1)
    t_term = 7e-8 * (grid.B / 400) ** 1.6
    lattice = (2 * J + (2 * N if _extra_digits(s) != _EXTRA else 0)) * t_eval + 3 * J * K * t_term
    first = _gh_start(s, tol)
    if first is not None and 2 * N * sum(_GH_LADDER[first:first + 2]) * t_eval < lattice:
        res = _pair_gh_mp(act, mom, rho, s, slope, diff, tol, dps, first)
        if res is not None:
            return res
    if 2 * J > _MAX_EVALS:
        raise ConvergenceError(f"double Gaussian integral of activation {_label(act)!r} at rho="
                               f"{mpmath.nstr(rho, 8)} did not converge at dps={dps}")
    return _pair_lattice_mp(act, mom, rho, s, slope, diff, tol, dps, q)


def _reflect_lattice_mp(act, mom, tol, dps):
    """E sigma(u) sigma(-u) on the lattice (kernel at rho = -1)."""
    grid = _grid(act, dps + _GUARD + _EXTRA)
    B = grid.B
    vals = []
    for m in (mom.level - 1, mom.level):
        idx, sg, sq = grid.nodes(m, mom.L)
        Bw = _weight_bits(B, sg)
        vals.append(mpmath.ldexp(sum(_fix(q * q, Bw) * a * b for q, a, b in zip(sq, sg, sg[::-1])),
                                 -Bw - 2 * B - m))
    if (vals[1] - vals[0]) ** 2 > tol * mom.second ** 2:
        raise ConvergenceError(f"kernel of activation {_label(act)!r} at rho=-1 did not "
                               f"converge at dps={dps}")
    return vals[1]


# ------------------------------------------------ kinked activations: split Gauss-Legendre

def _rule_mp(breaks, level):
    xs, ws = [], []
    for a, b in zip(breaks[:-1], breaks[1:]):
        m, r = (a + b) / 2, (b - a) / 2
        for xi, wi in _gl_mp(level, mpmath.mp.prec):
            x = m + r * xi
            xs.append(x)
            ws.append(r * wi * _phi_mp(x))
    return xs, ws


def _breaks_mp(lo, hi, h, points=()):
    n = math.ceil((hi - lo) / h)
    grid = [lo + (hi - lo) * mpmath.mpf(i) / n for i in range(n + 1)]
    return sorted(set(grid) | {p for p in points if lo < p < hi})


def _moments_mp(act: Activation, dps: int) -> _Moments:
    """Gaussian moments at dps digits: lattice rules for smooth sigma, else split GL."""
    if act.kinks:
        return _moments_gl_mp(act, dps)
    return _moments_lattice_mp(act, dps)


def _clear_mp_caches() -> None:
    """Forget every mpmath result (for timings)."""
    for f in (_squares_mp, _squares_var_mp, _kernel_mp, _moments_gl_mp, _moments_lattice_mp,
              _series_lattice_mp, _grid, _gauss_hermite):
        f.cache_clear()


def _series_mp(act: Activation, mom: _Moments, dps: int):
    """(c_0 .. c_K, their error estimates, a bound on sum_{k > K} c_k^2)."""
    if act.kinks:
        return mom.c, mom.c_err, mom.mustar2
    return _series_lattice_mp(act, dps)


def _series_threshold(act: Activation) -> float:
    """The Hermite series is summed for |rho| up to this."""
    return _RHO_SERIES_MP if act.kinks else _RHO_SERIES_LATTICE


@functools.lru_cache(maxsize=64)
def _moments_gl_mp(act: Activation, dps: int) -> _Moments:
    wp, tol, L = _mp_setup(dps)
    kmax = math.ceil((wp + 2) * math.log(10) / math.log(1 / _RHO_SERIES_MP))
    with mpmath.workdps(wp):
        kinks = act.mp_kinks()
        for h in (2, 1, mpmath.mpf(1) / 2):
            brk = _breaks_mp(-L, L, h, kinks)
            res = []
            for level in (4, 5):
                x, w = _rule_mp(brk, level)
                s = [act.mp_func(xi) for xi in x]
                ws = [wi * si for wi, si in zip(w, s)]
                c = _hermite_mp(x, ws, kmax)
                sc2 = [wi * (si - c[0] - c[1] * xi) ** 2 for xi, wi, si in zip(x, w, s)]
                res.append((c, mpmath.fsum(sc2), mpmath.fdot(ws, s)))
            (c24, m2_24, _), (c, m2, e2) = res
            scale = mpmath.sqrt(e2)
            c_err = [(a - b) ** 2 / scale for a, b in zip(c, c24)]
            m2_err = (m2 - m2_24) ** 2 / e2
            ok = m2_err <= tol * m2 + tol ** 2 * e2 and all(
                err * _RHO_SERIES_MP ** k <= tol * scale for k, err in enumerate(c_err))
            if ok:
                return _Moments(c[0], c[1], m2, e2, tuple(c), tuple(c_err), h)
    raise ConvergenceError(f"Gaussian moments of activation {_label(act)!r} did not converge "
                           f"at dps={dps}")


def _hermite_mp(x, ws, kmax):
    """c_k = sum_j ws_j He_k(x_j) / sqrt(k!) for k = 0..kmax."""
    c = [mpmath.fsum(ws), mpmath.fdot(ws, x)]
    h_prev, h_cur = [mpmath.mpf(1)] * len(x), list(x)
    for k in range(1, kmax):
        a, b = mpmath.sqrt(k), 1 / mpmath.sqrt(k + 1)
        h_prev, h_cur = h_cur, [(xi * hc - a * hp) * b for xi, hc, hp in zip(x, h_cur, h_prev)]
        c.append(mpmath.fdot(ws, h_cur))
    return c


def _pair_mp(act, mom, rho, s, slope, diff, tol, L, dps):
    """Mirror of :func:`_pair_np` in mpmath: (value, error estimate)."""
    if not act.kinks:
        return _pair_smooth_mp(act, mom, rho, s, slope, diff, tol, dps)
    if diff:
        def accept(value, err):
            return err <= tol * value + tol ** 2 * mom.second
    else:
        def accept(value, err):
            return err <= tol * mom.second
    if s >= _SEPARABLE_MIN_S and _costly(act.key):
        return _pair_separable_mp(act, mom, rho, s, slope, diff, L, accept)
    return _pair_gl_mp(act, mom, rho, s, slope, diff, L, accept)


@functools.lru_cache(maxsize=256)
def _costly(key: str) -> bool:
    """Whether sigma costs more than the exponential per evaluation: an expression with a
    special or transcendental function (erfc, exp, tanh, ...), not only Abs/Max/Min/sign/
    Piecewise and arithmetic.  Decided from the expression, so a point always takes one path."""
    if not key.startswith("expr:"):
        return False
    import sympy as sp

    cheap = (sp.Abs, sp.Max, sp.Min, sp.sign, sp.Heaviside, sp.Piecewise)
    expr = sp.sympify(key[len("expr:"):].split("|")[0])  # a scaled activation appends "|variance=..."
    return any(not isinstance(f, cheap) for f in expr.atoms(sp.Function))


# below this noise share s of v = rho u + s w, the v-grid of _pair_separable_mp would have to
# cover (|rho| + s) L / s panel widths of the narrow Gaussian: the w-integral is cheaper then
_SEPARABLE_MIN_S = 0.25


def _outer_breaks_mp(kinks, rho, s, h, L):
    """Breakpoints in u of the outer rule on [-L, L].

    F(u) = E_w f(u, rho u + s w) has kinks at the kinks k of sigma(u), features of width s at
    them, and features of width s/|rho| where v crosses a kink in the bulk of w (u near k/rho):
    split there and grade towards them.
    """
    shadows = [k / rho for k in kinks if abs(k / rho) < L and abs(k / rho - k) > s / 1000]
    return _breaks_mp(-L, L, h, list(kinks) + _graded(kinks, s, h, 2) + shadows
                      + _graded(shadows, s / abs(rho), h, 2))


def _refined_mp(estimate, accept):
    """``estimate(level)`` at Gauss-Legendre levels 3, 4, 5 (12, 24, 48 nodes per panel) until
    ``accept(value, err)`` takes two successive ones; (value, err), err = diff^2/|value|."""
    vals = []
    for level in (3, 4, 5):
        vals.append(estimate(level))
        if len(vals) > 1:
            err = abs(vals[-1] - vals[-2])
            err = err * err / abs(vals[-1]) if vals[-1] else err
            if accept is None or accept(vals[-1], err):
                break
    return vals[-1], err


def _pair_separable_mp(act, mom, rho, s, slope, diff, L, accept=None):
    """:func:`_pair_gl_mp` with the inner integral taken in v = rho u + s w on one fixed grid.

    For fixed u, E_w f(u, v) = int f(u, v) phi((v - rho u)/s)/s dv; composite Gauss-Legendre in
    v, panels of width h s split at the kinks of sigma (the same resolution and splits as the
    w-rule), shares sigma(v) between all u: sigma is evaluated at N_u + N_v points instead of
    N_u N_v, and a pair costs one exponential (about 6x faster for kinked expressions at
    30-50 digits).  Nodes with phi below phi(L) are skipped, as the w-rule truncates at L.
    """
    import bisect

    sig = act.mp_func
    kinks = act.mp_kinks()
    h = mom.h
    outer = _outer_breaks_mp(kinks, rho, s, h, L)
    R = (abs(rho) + s) * L
    vbreaks = _breaks_mp(-R, R, h * s, list(kinks))
    norm = 1 / (s * mpmath.sqrt(2 * mpmath.pi))
    half_inv_s2 = 1 / (2 * s * s)
    cut = L * s

    def estimate(level):
        nodes = []
        for a, b in zip(vbreaks[:-1], vbreaks[1:]):
            mid, rad = (a + b) / 2, (b - a) / 2
            nodes += [(mid + rad * xi, rad * wi) for xi, wi in _gl_mp(level, mpmath.mp.prec)]
        nodes.sort()
        vs = [v for v, _ in nodes]
        wv = [w * norm for _, w in nodes]
        gv = [sig(v) - slope * v for v in vs]
        us, wus = _rule_mp(outer, level)
        acc = []
        for u, wu in zip(us, wus):
            gu, ru = sig(u) - slope * u, rho * u
            lo, hi = bisect.bisect_left(vs, ru - cut), bisect.bisect_right(vs, ru + cut)
            ks = [w * mpmath.exp(-(v - ru) ** 2 * half_inv_s2) for v, w in zip(vs[lo:hi], wv[lo:hi])]
            if diff:
                inner = mpmath.fsum(k * (gu - g) ** 2 for k, g in zip(ks, gv[lo:hi])) / 2
            else:
                inner = gu * mpmath.fdot(ks, gv[lo:hi])
            acc.append(wu * inner)
        return mpmath.fsum(acc)

    return _refined_mp(estimate, accept)


def _pair_gl_mp(act, mom, rho, s, slope, diff, L, accept=None):
    """Composite Gauss-Legendre in (u, w) (12 vs 24 nodes per panel, then 24 vs 48 if
    ``accept(value, err)`` rejects the first estimate) on the disc of radius L; outer panels
    split at the kinks and graded towards them, inner panels split where v = rho u + s w
    crosses a kink."""
    sig = act.mp_func
    kinks = act.mp_kinks()
    h = mom.h
    outer = _outer_breaks_mp(kinks, rho, s, h, L)
    base = _breaks_mp(-L, L, h)

    def estimate(level):
        # the fixed inner panels' nodes are shared by all u; only split panels are rebuilt
        panels = [(a, b, _rule_mp([a, b], level)) for a, b in zip(base[:-1], base[1:])]
        us, wus = _rule_mp(outer, level)
        acc = []
        for u, wu in zip(us, wus):
            gu, ru = sig(u) - slope * u, rho * u
            cross = sorted({min(max((k - ru) / s, -L), L) for k in kinks})
            terms = []
            for a, b, (ws, wws) in panels:
                if min(abs(a), abs(b)) ** 2 + u * u > L * L and a * b > 0:
                    continue
                inside = [c for c in cross if a < c < b]
                if inside:
                    ws, wws = _rule_mp([a, *inside, b], level)
                for w, ww in zip(ws, wws):
                    v = ru + s * w
                    terms.append(ww * _combine(gu, sig(v) - slope * v, diff))
            acc.append(wu * mpmath.fsum(terms))
        return mpmath.fsum(acc)

    return _refined_mp(estimate, accept)


def _coefficients_mp(act: Activation, t, dps: int) -> Coefficients:
    mu0, mu1, mustar2, mu_s2, mu_e2 = _squares_mp(act, t, dps)
    with mpmath.workdps(dps):
        return Coefficients(+mu0, +mu1, +mpmath.sqrt(mustar2), +mpmath.sqrt(mu_s2),
                            +mpmath.sqrt(mu_e2), +mpmath.mpf(t), act.name, dps)


@functools.lru_cache(maxsize=1024)
def _squares_mp(act: Activation, t, dps: int):
    wp = _mp_setup(dps)[0]
    with mpmath.workdps(wp):
        t = mpmath.mpf(t)
        return _squares_rho_mp(act, mpmath.exp(-2 * t), -mpmath.expm1(-2 * t), t, dps)


def _coefficients_var_mp(act: Activation, t, s2, dps: int) -> Coefficients:
    mu0, mu1, mustar2, mu_s2, mu_e2 = _squares_var_mp(act, t, s2, dps)
    with mpmath.workdps(dps):
        return Coefficients(+mu0, +mu1, +mpmath.sqrt(mustar2), +mpmath.sqrt(mu_s2),
                            +mpmath.sqrt(mu_e2), +mpmath.mpf(t), act.name, dps)


@functools.lru_cache(maxsize=1024)
def _squares_var_mp(act: Activation, t, s2, dps: int):
    """:func:`_squares_var_np` in mpmath (t and s2 as decimal strings or mpf)."""
    wp = _mp_setup(dps)[0]
    with mpmath.workdps(wp):
        t, s2 = mpmath.mpf(t), mpmath.mpf(s2)
        D = -mpmath.expm1(-2 * t)
        v = mpmath.exp(-2 * t) * s2 + D
        rho, omr = mpmath.exp(-2 * t) * s2 / v, D / v
        if act.key in ("name:relu", "name:linear"):
            mu0, mu1, mustar2, mu_s2, mu_e2 = _squares_rho_mp(act, rho, omr, t, dps)
            return mu0 * mpmath.sqrt(v), mu1, mustar2 * v, mu_s2 * v, mu_e2 * v
        if act.key == "name:erf":
            mu0, mu1, mustar2, mu_s2, mu_e2 = _closed_erf(rho, omr, _ns_mp(), 2 * v / (1 + 2 * v), 1 / (1 + 2 * v))
        else:
            with mpmath.workdps(wp + 10):
                sv = mpmath.sqrt(v)
            scaled = scaled_activation(act, mpmath.nstr(v, wp + 5), sqrt_v=sv)
            mu0, mu1, mustar2, mu_s2, mu_e2 = _squares_rho_mp(scaled, rho, omr, t, dps)
        return mu0, mu1 / mpmath.sqrt(v), mustar2, mu_s2, mu_e2


def _squares_rho_mp(act: Activation, rho, omr, t, dps: int):
    """Unit-variance coefficients at correlation rho = 1 - omr, in mpmath (t for messages)."""
    wp, tol, L = _mp_setup(dps)
    with mpmath.workdps(wp):
        closed = _CLOSED.get(act.key)
        if closed is not None:
            return closed(rho, omr, _ns_mp())
        mom = _moments_mp(act, dps)
        if rho <= _series_threshold(act):
            c, c_err, tail = _series_mp(act, mom, dps)
            terms = [rho ** k * ck ** 2 for k, ck in enumerate(c) if k >= 2]
            mu_s2 = mpmath.fsum(terms)
            err = mpmath.fsum(rho ** k * 2 * abs(ck) * e
                              for k, (ck, e) in enumerate(zip(c, c_err)) if k >= 2)
            err += rho ** len(c) * tail
            mu_e2 = _clip_square(mom.mustar2 - mu_s2, err + tol * mom.mustar2 + tol ** 2 * mom.second, "mu_e^2")
            mu_s2 = min(mu_s2, mom.mustar2)
            return mom.mu0, mom.mu1, mom.mustar2, mu_s2, mu_e2
        s = mpmath.sqrt(omr * (1 + rho))
        # sigmā(u) - sigmā(v) = O(s): carry the digits that the difference cancels
        with mpmath.workdps(wp + max(0, math.ceil(-math.log10(float(s))))):
            mu_e2, err = _pair_mp(act, mom, rho, s, mom.mu1, True, tol, L, dps)
        if err > tol * mu_e2 + tol ** 2 * mom.second:
            raise ConvergenceError(f"mu_e^2 of activation {_label(act)!r} at t={t} did not "
                                   f"converge at dps={dps}")
        mu_s2 = _clip_square(mom.mustar2 - mu_e2, err + tol * mom.mustar2 + tol ** 2 * mom.second, "mu_s^2")
        mu_e2 = min(mu_e2, mom.mustar2)
        return mom.mu0, mom.mu1, mom.mustar2, mu_s2, mu_e2


@functools.lru_cache(maxsize=1024)
def _kernel_mp(act: Activation, rho, dps: int):
    wp, tol, L = _mp_setup(dps)
    with mpmath.workdps(wp):
        rho = mpmath.mpf(rho)
        closed = _CLOSED_KERNEL.get(act.key)
        if closed is not None:
            val = closed(rho, _ns_mp())
        else:
            mom = _moments_mp(act, dps)
            if abs(rho) <= _series_threshold(act):
                c = _series_mp(act, mom, dps)[0]
                val = mpmath.fsum(rho ** k * ck ** 2 for k, ck in enumerate(c))
            elif rho == 1:
                val = mom.second
            elif rho == -1 and not act.kinks:
                val = _reflect_lattice_mp(act, mom, tol, dps)
            elif rho == -1:     # E sigma(u) sigma(-u)
                brk = _breaks_mp(-L, L, mom.h, act.mp_kinks() + tuple(-k for k in act.mp_kinks()))
                v4, val = (mpmath.fdot(w, [act.mp_func(xi) * act.mp_func(-xi) for xi in x])
                           for x, w in (_rule_mp(brk, level) for level in (4, 5)))
                if (val - v4) ** 2 > tol * mom.second ** 2:
                    raise ConvergenceError(f"kernel of activation {_label(act)!r} at rho=-1 did "
                                           f"not converge at dps={dps}")
            else:
                s = mpmath.sqrt((1 - rho) * (1 + rho))
                val, err = _pair_mp(act, mom, rho, s, 0, False, tol, L, dps)
                if err > tol * mom.second:
                    raise ConvergenceError(f"kernel of activation {_label(act)!r} at rho={rho} "
                                           f"did not converge at dps={dps}")
    with mpmath.workdps(dps):
        return +val
