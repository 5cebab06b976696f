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
mpmath at ``dps + 6`` digits or more, to a relative tolerance 10^-(dps+2): ~0.5 s per t
for the series regime, seconds for t < ln(2)/2 at dps = 30. Either path reaches its
tolerance or raises :class:`~rmtsolve.errors.ConvergenceError`. At very small t the
double-precision mu_e is accurate to about 1e-16 / sqrt(t) relative (rounding of
sigmā(u) - sigmā(v)); the mpmath path adds the digits this cancellation costs.
"""
from __future__ import annotations

import functools
import math
import types
from dataclasses import dataclass

import mpmath
import numpy as np

from ._backend import check_dps
from .activations import Activation, resolve_activation, scaled_activation
from .errors import ConvergenceError, ParameterError, check_range

KEYS = ("mu0", "mu1", "mustar", "mu_s", "mu_e")

_RHO_SERIES = 0.5       # the Hermite series is summed for rho <= this
_K_MAX = 64             # Hermite terms: 0.5**64 ~ 5e-20 of mustar^2 is left out
_L = 12.0               # double-precision truncation: phi(12) ~ 5e-32
_PANEL_LENGTHS = (2.0, 1.0, 0.5, 0.25)
_RTOL = 1e-12
_GL = {n: np.polynomial.legendre.leggauss(n) for n in (16, 24)}
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
_EPS = float(np.finfo(float).eps)


@dataclass(frozen=True)
class Coefficients:
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
    try:
        check_range("s2", s2, low=0.0)
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
    check_range("rho", rho, low=-1.0, high=1.0)
    return _kernel_mp(act, _mp_key(rho), dps)


def _check_t(t, scalar: bool = True) -> None:
    if scalar and not isinstance(t, (str, mpmath.mpf)) and np.ndim(t) != 0:
        raise ParameterError("t", "a number > 0 and finite (coefficients_array takes arrays)", t)
    try:
        check_range("t", t, low=0.0, low_open=True, allowed="> 0 and finite")
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
    """A non-negative square from a quadrature: tiny negative rounding becomes 0."""
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


def _closed_relu(rho, omr, ns):
    sq = ns.sqrt(omr * (1 + rho))                     # sqrt(1 - rho^2)
    mu_s2 = rho * (ns.asin(rho) - rho / (1 + sq)) / (2 * ns.pi)
    theta = 2 * ns.asin(ns.sqrt(omr / 2))             # arccos(rho), accurate near rho = 1
    mu_e2 = omr / 4 - (sq - theta * rho) / (2 * ns.pi)
    return 1 / ns.sqrt(2 * ns.pi), ns.one / 2, ns.one / 4 - 1 / (2 * ns.pi), mu_s2, mu_e2


def _closed_erf(rho, omr, ns, c=None):
    """erf(a x) with c = 2a^2/(1 + 2a^2) (a = 1: c = 2/3): K(rho) = (2/pi) asin(c rho)."""
    a = 2 * ns.one / 3 if c is None else c
    b = a * rho
    mu_s2 = 2 / ns.pi * _asin_minus_x(b, ns)
    # asin(a) - asin(b) = asin((a^2 - b^2) / (a sqrt(1 - b^2) + b sqrt(1 - a^2)))
    d = (a * omr) * (a + b) / (a * ns.sqrt(1 - b * b) + b * ns.sqrt(1 - a * a))
    mu_e2 = 2 / ns.pi * ns.asin(d) - 2 * a * omr / ns.pi
    mustar2 = 2 / ns.pi * ns.asin(a) - 2 * a / ns.pi
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

_NS_NP = types.SimpleNamespace(sqrt=math.sqrt, asin=math.asin, acos=math.acos, pi=math.pi,
                               one=1.0, zero=0.0, eps=2.0 ** -53)


def _ns_mp():
    return types.SimpleNamespace(sqrt=mpmath.sqrt, asin=mpmath.asin, acos=mpmath.acos,
                                 pi=+mpmath.pi, one=mpmath.mpf(1), zero=mpmath.mpf(0),
                                 eps=mpmath.eps)


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
    h: object          # panel length that reached the tolerance


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
    for h in _PANEL_LENGTHS:
        brk = _breaks(-_L, _L, h, act.kinks)
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
            return _Moments(c[0], c[1], m2, e2, tuple(c), tuple(c_err), h)
    raise ConvergenceError(f"Gaussian moments of activation {act.name!r} did not converge")


def _combine(gu, gv, diff):
    if diff:
        d = gu - gv
        return d * d / 2
    return gu * gv


def _pair_np(act, mom, rho, s, slope, diff):
    """E over correlated normals (u, v) of (g(u) - g(v))^2 / 2 (``diff``) or g(u) g(v),
    g(x) = sigma(x) - slope x; returns (value, error estimate)."""
    kinks = np.asarray(act.kinks, dtype=float)
    outer = _breaks(-_L, _L, mom.h, list(act.kinks) + _graded(act.kinks, s, mom.h, 2))
    base = _breaks(-_L, _L, mom.h)
    vals = []
    for n in (24, 16):
        u, wu = _rule(outer, n)
        # inner panels: a fixed grid plus the points where v = rho u + s w crosses a kink
        cross = np.clip((kinks[None, :] - rho * u[:, None]) / s, -_L, _L)
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


@functools.lru_cache(maxsize=8192)
def _squares_np(act: Activation, t: float):
    return _squares_rho_np(act, math.exp(-2.0 * t), -math.expm1(-2.0 * t), t)


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
        mu0, mu1, mustar2, mu_s2, mu_e2 = _squares_rho_np(act, rho, omr, t)
        return mu0 * math.sqrt(v), mu1, mustar2 * v, mu_s2 * v, mu_e2 * v
    if act.key == "name:erf":
        mu0, mu1, mustar2, mu_s2, mu_e2 = _closed_erf(rho, omr, _NS_NP, 2 * v / (1 + 2 * v))
    else:
        mu0, mu1, mustar2, mu_s2, mu_e2 = _squares_rho_np(scaled_activation(act, v), rho, omr, t)
    return mu0, mu1 / math.sqrt(v), mustar2, mu_s2, mu_e2


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
        mu_e2 = _clip_square(mom.mustar2 - mu_s2, err, "mu_e^2")
        mu_s2 = min(mu_s2, mom.mustar2)  # keeps mustar^2 = mu_s^2 + mu_e^2 where rounding clipped
        return mom.mu0, mom.mu1, mom.mustar2, mu_s2, mu_e2
    s = math.sqrt(omr * (1.0 + rho))
    if _EPS / s > 1e-6:
        # v - u = O(s) drowns in rounding: sigmā(u) - sigmā(v) has relative error ~ eps / s
        raise ConvergenceError(f"t={t} is too small to compute mu_e of activation "
                               f"{act.name!r} in double precision; pass dps")
    mu1 = mom.mu1
    mu_e2, err = _pair_np(act, mom, rho, s, mu1, True)
    # rounding of sigmā(u) - sigmā(v) (size ~ sqrt(mu_e^2)) bounds the attainable accuracy
    # when t is tiny: relative ~ eps / sqrt(mu_e^2)
    rounding = 16 * _EPS * math.sqrt((mom.second + mu1 * mu1) * mu_e2)
    if err > _RTOL * mu_e2 + rounding + 1e-28 * mom.second:
        raise ConvergenceError(f"mu_e^2 of activation {act.name!r} at t={t} did not converge")
    mu_s2 = _clip_square(mom.mustar2 - mu_e2, err, "mu_s^2")
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
        brk = _breaks(-_L, _L, mom.h, list(act.kinks) + [-k for k in act.kinks])
        vals = [w @ (act.np_func(x) * act.np_func(-x)) for x, w in
                (_rule(brk, n) for n in (24, 16))]
        if abs(vals[0] - vals[1]) > _RTOL * mom.second:
            raise ConvergenceError(f"kernel of activation {act.name!r} at rho=-1 did not converge")
        return float(vals[0])
    val, err = _pair_np(act, mom, rho, s, 0.0, False)
    if err > _RTOL * mom.second:
        raise ConvergenceError(f"kernel of activation {act.name!r} at rho={rho} did not converge")
    return float(val)


# ---------------------------------------------------------------- mpmath
#
# Same scheme at wp = dps + 6 digits, tolerance 10^-(dps+2) relative. Rules are
# checked against a coarser one and, since the integrands are analytic between the split
# points (errors fall geometrically), the error of the finer rule is estimated as
# diff^2 / scale. The Hermite series is used for rho <= 1/4 (fewer terms at high
# precision); above, mu_e^2 is a double integral: a tensor trapezoid rule in (u, w),
# exponentially accurate and nested under halving, when sigma has no kinks, else
# composite Gauss-Legendre split at the kinks as in double precision.

_RHO_SERIES_MP = 0.25
_GUARD = 6


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


@functools.lru_cache(maxsize=64)
def _moments_mp(act: Activation, dps: int) -> _Moments:
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
    raise ConvergenceError(f"Gaussian moments of activation {act.name!r} did not converge "
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


def _pair_mp(act, mom, rho, s, slope, diff, tol, L):
    """Mirror of :func:`_pair_np` in mpmath: (value, error estimate)."""
    if not act.kinks:
        return _pair_trapezoid_mp(act.mp_func, rho, s, slope, diff, tol, L)
    return _pair_gl_mp(act, mom, rho, s, slope, diff, L)


def _pair_trapezoid_mp(sig, rho, s, slope, diff, tol, L, levels=5):
    """Tensor trapezoid rule in (u, w) on the disc u^2 + w^2 <= L^2, steps 1/2 .. 2^-levels.

    Accepted from step 1/4 on, when successive values agree to sqrt(tol): the error falls
    like exp(-c / step) for an analytic integrand, so the finer value's relative error is
    about the square of the relative difference.
    """
    n_fine = 2 ** levels
    delta = mpmath.mpf(1) / n_fine
    npts = L * n_fine
    grid = {}

    def point(i):
        if i not in grid:
            x = i * delta
            grid[i] = (rho * x, s * x, _phi_mp(x), sig(x) - slope * x)
        return grid[i]

    total, prev = mpmath.mpf(0), None
    for level in range(1, levels + 1):
        step = n_fine >> level
        for i in range(-npts, npts + 1, step):
            ru, _, pu, gu = point(i)
            old_row = level > 1 and i % (2 * step) == 0
            jmax = math.isqrt(npts * npts - i * i) // step * step
            row = 0
            for j in range(-jmax, jmax + 1, step):
                if old_row and j % (2 * step) == 0:
                    continue
                _, sw, pw, _ = point(j)
                v = ru + sw
                row += pw * _combine(gu, sig(v) - slope * v, diff)
            total += pu * row
        value = total * (delta * step) ** 2
        if prev is not None and value:
            rel = abs(value - prev) / abs(value)
            if rel * rel <= tol:
                return value, rel * rel * abs(value)
        prev = value
    raise ConvergenceError("double Gaussian integral (trapezoid rule) did not converge; "
                           "is the activation smooth?")


def _pair_gl_mp(act, mom, rho, s, slope, diff, L):
    """Composite Gauss-Legendre in (u, w) (12 vs 24 nodes per panel) on the disc of radius L;
    outer panels split at the kinks and graded towards them, inner panels split where
    v = rho u + s w crosses a kink."""
    sig = act.mp_func
    kinks = act.mp_kinks()
    h = mom.h
    outer = _breaks_mp(-L, L, h, list(kinks) + _graded(kinks, s, h, 2))
    base = _breaks_mp(-L, L, h)
    vals = []
    for level in (3, 4):
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
        vals.append(mpmath.fsum(acc))
    err = abs(vals[1] - vals[0])
    return vals[1], err * err / abs(vals[1]) if vals[1] else err


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
            mu0, mu1, mustar2, mu_s2, mu_e2 = _closed_erf(rho, omr, _ns_mp(), 2 * v / (1 + 2 * v))
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
        if rho <= _RHO_SERIES_MP:
            terms = [rho ** k * ck ** 2 for k, ck in enumerate(mom.c) if k >= 2]
            mu_s2 = mpmath.fsum(terms)
            err = mpmath.fsum(rho ** k * 2 * abs(ck) * e
                              for k, (ck, e) in enumerate(zip(mom.c, mom.c_err)) if k >= 2)
            err += rho ** len(mom.c) * mom.mustar2
            mu_e2 = _clip_square(mom.mustar2 - mu_s2, err + tol * mom.mustar2, "mu_e^2")
            mu_s2 = min(mu_s2, mom.mustar2)
            return mom.mu0, mom.mu1, mom.mustar2, mu_s2, mu_e2
        s = mpmath.sqrt(omr * (1 + rho))
        # sigmā(u) - sigmā(v) = O(s): carry the digits that the difference cancels
        with mpmath.workdps(wp + max(0, math.ceil(-math.log10(float(s))))):
            mu_e2, err = _pair_mp(act, mom, rho, s, mom.mu1, True, tol, L)
        if err > tol * mu_e2 + tol ** 2 * mom.second:
            raise ConvergenceError(f"mu_e^2 of activation {act.name!r} at t={t} did not "
                                   f"converge at dps={dps}")
        mu_s2 = _clip_square(mom.mustar2 - mu_e2, err + tol * mom.mustar2, "mu_s^2")
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
            if abs(rho) <= _RHO_SERIES_MP:
                val = mpmath.fsum(rho ** k * ck ** 2 for k, ck in enumerate(mom.c))
            elif rho == 1:
                val = mom.second
            elif rho == -1:     # E sigma(u) sigma(-u)
                brk = _breaks_mp(-L, L, mom.h, act.mp_kinks() + tuple(-k for k in act.mp_kinks()))
                v4, val = (mpmath.fdot(w, [act.mp_func(xi) * act.mp_func(-xi) for xi in x])
                           for x, w in (_rule_mp(brk, level) for level in (4, 5)))
                if (val - v4) ** 2 > tol * mom.second ** 2:
                    raise ConvergenceError(f"kernel of activation {act.name!r} at rho=-1 did "
                                           f"not converge at dps={dps}")
            else:
                s = mpmath.sqrt((1 - rho) * (1 + rho))
                val, err = _pair_mp(act, mom, rho, s, 0, False, tol, L)
                if err > tol * mom.second:
                    raise ConvergenceError(f"kernel of activation {act.name!r} at rho={rho} "
                                           f"did not converge at dps={dps}")
    with mpmath.workdps(dps):
        return +val
