"""Marchenko-Pastur and generalised Marchenko-Pastur laws (conventions section 3, ``rmtsolve mp``).

Conventions
-----------
``X`` is ``N x d`` with iid N(0, 1) entries and ``ratio = c = d / N``.  The Marchenko-Pastur
law ``mu`` is the limiting spectral law of ``X^T X / N`` (an atom ``1 - 1/c`` at 0 when
``c > 1``); the generalised law is that of ``S = Sigma^{1/2} X^T X Sigma^{1/2} / N`` when the
spectrum of ``Sigma`` converges to ``H = sum_k w_k delta_{t_k}``.  The Stieltjes transform is
``s(z) = int dmu(x) / (x - z)``, so ``Im s > 0`` when ``Im z > 0``; the companion ``sb`` is
the transform of the ``N x N`` matrix ``X Sigma X^T / N``, ``sb = c s - (1 - c) / z``.

For real ``z`` the boundary value ``s(x + i0)`` is returned and ``density = Im s / pi`` (the
density of the absolutely continuous part; atoms at 0 are reported by ``.atom``).  Every
equation comes from ``derivations/mp.py`` through :mod:`rmtsolve._generated.mp`.

Residuals are relative: ``|F| / (sum of the moduli of the terms of F)`` for the equation
``F = 0`` that defines the value (the MP quadratic, or Silverstein's equation).
"""
from __future__ import annotations

import dataclasses
import fractions
import math
import numbers
from typing import Callable

import mpmath
import numpy as np

from ._results import ShortRepr
from ._backend import NUMPY, check_dps, mp_namespace
from ._generated import mp as _g
from .errors import ConvergenceError, ParameterError, has_text

_GUARD = 10  # extra mpmath digits while solving; results are rounded to dps
_ETA_REAL = 1e-12  # double back end: real x is evaluated at x + i _ETA_REAL * |x| (see _eta)
_TOL_ACCEPT = 1e-12  # double back end: largest accepted relative residual
_TOL_TIGHT = 1e-14  # relative error in v = 1/sb at the target (double)
_TOL_LOOSE = 1e-7  # ... at intermediate continuation stages, which only seed the next one
_CHUNK = 1 << 20  # matrix entries per block of the (points x atoms) evaluation


@dataclasses.dataclass(frozen=True, repr=False)
class StieltjesResult(ShortRepr):
    """Value of a Stieltjes transform with its solver diagnostics.

    Attributes
    ----------
    value : complex ndarray (double) or mpmath ``mpc`` / object ndarray of ``mpc`` (``dps``)
        The transform, shaped like the input ``z``.
    residual : float
        Largest relative residual of the defining equation over the points.
    iterations : int
        Largest number of Newton iterations spent on one point (0 for closed forms).
    converged : bool
        Always True on return: a failed solve raises :class:`ConvergenceError`.
    dps : int or None
        mpmath decimal digits, None for double precision.
    density : same kind as ``value`` (real) or None
        ``Im value / pi`` at the real entries of ``z`` (NaN at non-real entries of an
        array), None when no entry of ``z`` is real.
    """

    value: object
    residual: float
    iterations: int
    converged: bool
    dps: int | None
    density: object = None

    def as_dict(self) -> dict:
        """keys ``stieltjes`` (and ``density`` for real z) plus the diagnostics."""
        out = {"stieltjes": self.value}
        if self.density is not None:
            out["density"] = self.density
        out.update(residual=self.residual, iterations=self.iterations,
                   converged=self.converged, dps=self.dps)
        return out


# -- parameter handling ----------------------------------------------------------------------
_RATIO_RANGE = "a positive number <= 1e150 (d/N)"


def _parse_ratio(ratio):
    """(exact Fraction or None, float) for a ratio given as int/Fraction/str or a float."""
    exact = None
    try:
        if isinstance(ratio, bool):
            raise TypeError
        if isinstance(ratio, numbers.Rational):  # Python ints inside: numpy's int64 would overflow
            exact = fractions.Fraction(int(ratio.numerator), int(ratio.denominator))
            value = float(exact)
        elif isinstance(ratio, str):
            exact = fractions.Fraction(ratio)
            value = float(exact)
        else:
            value = float(ratio)
    except (TypeError, ValueError, ZeroDivisionError, OverflowError):
        raise ParameterError("ratio", _RATIO_RANGE, ratio) from None
    # the edges ((c - 1)^2 over the upper one) must stay within double precision
    if not (math.isfinite(value) and 0 < value <= 1e150):
        raise ParameterError("ratio", _RATIO_RANGE, ratio)
    return exact, value


def _real_array(name: str, x) -> np.ndarray:
    """x as a float array; strings, complex numbers and ragged lists are a ParameterError."""
    try:
        if has_text(x) or np.iscomplexobj(x):
            raise TypeError
        return np.asarray(x, dtype=float)
    except (TypeError, ValueError, OverflowError):
        raise ParameterError(name, "real numbers (an array of one shape)", x) from None


def _complex_array(z) -> np.ndarray:
    try:
        arr = np.asarray(z, dtype=complex)
    except (TypeError, ValueError, OverflowError):
        raise ParameterError("z", "finite complex numbers", z) from None
    if not np.all(np.isfinite(arr)):
        raise ParameterError("z", "finite complex numbers", complex(arr[~np.isfinite(arr)].flat[0]))
    # real input means the boundary value from above, whatever the sign of a zero imaginary part
    return np.where(arr.imag == 0, arr.real + 0j, arr)


def _mp_points(z) -> tuple[list, tuple | None]:
    """mpmath numbers and the input shape (None for a scalar)."""
    try:
        scalar = np.ndim(z) == 0 and not isinstance(z, (list, tuple))
        items = [z] if scalar else list(np.asarray(z, dtype=object).ravel())
        if any(isinstance(v, (list, tuple)) for v in items):  # a ragged list
            raise ValueError
        pts = [mpmath.mpmathify(v.item() if isinstance(v, np.generic) else v) for v in items]
    except (TypeError, ValueError, OverflowError):
        raise ParameterError("z", "finite complex numbers", z) from None
    for p in pts:
        if not (mpmath.isfinite(mpmath.re(p)) and mpmath.isfinite(mpmath.im(p))):
            raise ParameterError("z", "finite complex numbers", str(p))
    return pts, None if scalar else np.shape(np.asarray(z, dtype=object))


def _mp_shape(values: list, shape):
    if shape is None:
        return values[0]
    out = np.empty(len(values), dtype=object)
    out[:] = values
    return out.reshape(shape)


def _zero_z(allowed: str):
    return ParameterError("z", allowed, 0)


# -- Marchenko-Pastur ------------------------------------------------------------------------
class MarchenkoPastur:
    """Marchenko-Pastur law of ``X^T X / N`` with ``ratio = d / N`` (closed forms).

    Parameters
    ----------
    ratio : int, Fraction, str or float
        ``c = d / N > 0``.  Given exactly (int, Fraction, or a decimal string such as
        ``"0.3"``), :meth:`moment` returns exact fractions and the mpmath back end uses the
        exact value.
    """

    def __init__(self, ratio):
        self._exact, self.ratio = _parse_ratio(ratio)
        self._cm1 = _g.mp_shift(self.ratio, _f=NUMPY)
        self.edges: tuple[float, float] = tuple(
            float(e) for e in _g.mp_edges(self.ratio, self._cm1, _f=NUMPY))
        self.atom: float = max(0.0, 1.0 - 1.0 / self.ratio)

    def _mp_ratio(self):
        return _to_mpf(self._exact if self._exact is not None else self.ratio)

    def _zero_allowed(self) -> bool:
        return self.ratio < 1  # c >= 1: atom (c > 1) or x^{-1/2} singularity (c = 1) at 0

    def stieltjes(self, z, dps: int | None = None) -> StieltjesResult:
        """s(z) on the physical branch; boundary value ``s(x + i0)`` for real ``z``.

        Vectorised over numpy arrays in double precision; with ``dps``, evaluated in mpmath
        at ``dps`` digits for a scalar or a list.  ``z = 0`` is allowed only when ratio < 1.
        """
        dps = check_dps(dps)
        if dps is None:
            return self._stieltjes_numpy(_complex_array(z))
        return self._stieltjes_mp(z, dps)

    def _stieltjes_numpy(self, z: np.ndarray) -> StieltjesResult:
        c = self.ratio
        if not self._zero_allowed() and np.any(z == 0):
            raise _zero_z("non-zero when ratio >= 1 (the law is singular at 0)")
        cm1 = self._cm1
        R = _g.mp_sqrt_disc(c, cm1, z, _f=NUMPY)
        n1, d1, n2, d2 = _g.mp_root_parts(c, cm1, z, R, _f=NUMPY)
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            # n1 cancels when |n1| << |d2|; the second form divides by d2 instead of z
            s = np.where(np.abs(n1) >= np.abs(d2), n1 / d1, n2 / d2)
            F, scale = _g.mp_residual(c, cm1, z, s, _f=NUMPY)
        residual = float(np.max(np.abs(F) / scale, initial=0.0))
        if not (np.all(np.isfinite(s)) and residual <= 1e-10):
            raise ConvergenceError(f"Marchenko-Pastur closed form inaccurate (residual {residual:.2e})")
        real = z.imag == 0
        density = None
        if np.any(real):
            density = np.where(real, self.density(z.real), np.nan)
            if density.ndim == 0:
                density = float(density)
        return StieltjesResult(s if s.ndim else complex(s), residual, 0, True, None, density)

    def _stieltjes_mp(self, z, dps: int) -> StieltjesResult:
        with mpmath.workdps(dps + _GUARD):
            pts, shape = _mp_points(z)
            ns = mp_namespace(dps + _GUARD)
            c = self._mp_ratio()
            cm1 = _g.mp_shift(c, _f=ns)
            values, dens, residual = [], [], 0.0
            for zi in pts:
                if zi == 0 and not self._zero_allowed():
                    raise _zero_z("non-zero when ratio >= 1 (the law is singular at 0)")
                R = _g.mp_sqrt_disc(c, cm1, zi, _f=ns)
                n1, d1, n2, d2 = _g.mp_root_parts(c, cm1, zi, R, _f=ns)
                si = n1 / d1 if abs(n1) >= abs(d2) else n2 / d2
                with mpmath.workdps(dps):
                    si = mpmath.mpc(+mpmath.re(si), +mpmath.im(si))
                F, scale = _g.mp_residual(c, cm1, zi, si, _f=ns)
                residual = max(residual, float(abs(F) / scale))
                values.append(si)
                dens.append(self._density_mp(c, cm1, zi, ns, dps) if mpmath.im(zi) == 0 else mpmath.nan)
        if residual > 10.0 ** (2 - dps):
            raise ConvergenceError(f"Marchenko-Pastur closed form inaccurate (residual {residual:.2e})")
        density = None if all(mpmath.isnan(v) for v in dens) else _mp_shape(dens, shape)
        return StieltjesResult(_mp_shape(values, shape), residual, 0, True, dps, density)

    @staticmethod
    def _density_mp(c, cm1, x, ns, dps):
        a, b = _g.mp_edges(c, cm1, _f=ns)
        x = mpmath.re(x)
        if not a < x < b:
            return mpmath.mpf(0)
        with mpmath.workdps(dps):
            return +_g.mp_density(c, cm1, x, _f=ns)

    def density(self, x) -> np.ndarray:
        """Density of the absolutely continuous part on (a, b); 0 elsewhere (double)."""
        x = _real_array("x", x)
        a, b = self.edges
        inside = (x > a) & (x < b)
        with np.errstate(invalid="ignore", divide="ignore"):
            rho = _g.mp_density(self.ratio, self._cm1, np.where(inside, x, 0.5 * (a + b)), _f=NUMPY)
        return np.where(inside, rho, 0.0)

    def moment(self, k: int):
        """E x^k (Narayana polynomial in c), exact Fraction for an exact ratio, else float
        (inf where the moment, about c^(k-1) for large c, exceeds double precision)."""
        if isinstance(k, bool) or not isinstance(k, numbers.Integral) or k < 0:
            raise ParameterError("k", "a non-negative integer", k)
        c = self._exact if self._exact is not None else self.ratio
        k = int(k)
        term = fractions.Fraction(1) if self._exact is not None else 1.0
        if k == 0:
            return term
        # m_k = sum_{j<k} t_j, the positive Narayana terms: O(k), where the moment recursion
        # (the definition) costs O(k^2) products of numbers of O(k) digits
        total = term
        try:
            for j in range(k - 1):
                term = term * _g.mp_narayana_ratio(c, k, j, _f=NUMPY)
                total = total + term
        except OverflowError:
            return math.inf
        return total if self._exact is not None or math.isfinite(total) else math.inf

    def log_moment(self, dps: int | None = None):
        """int log x dmu: -1 - (1-c)/c log(1-c) for c < 1, -1 at c = 1, -inf for c > 1."""
        dps = check_dps(dps)
        if self.ratio > 1:
            return -math.inf if dps is None else mpmath.ninf
        return self._log_moment_at(self._exact if self._exact is not None else self.ratio, dps)

    def log_moment_nonzero(self, dps: int | None = None):
        """int log x over the non-zero eigenvalues (law c MP(1/c) when c > 1), normalised."""
        dps = check_dps(dps)
        if self.ratio <= 1:
            return self.log_moment(dps)
        c = self._exact if self._exact is not None else self.ratio
        L_inv = self._log_moment_at(1 / c, dps)
        if dps is None:
            return float(_g.mp_log_moment_nonzero(float(c), L_inv, _f=NUMPY))
        with mpmath.workdps(dps + _GUARD):
            val = _g.mp_log_moment_nonzero(_to_mpf(c), L_inv, _f=mp_namespace(dps + _GUARD))
        with mpmath.workdps(dps):
            return +val

    @staticmethod
    def _log_moment_at(c, dps):
        """Log-moment for 0 < c <= 1 without cancellation at small c."""
        if c == 1:
            return -1.0 if dps is None else mpmath.mpf(-1)  # limit of 0 log 0 in the closed form
        if dps is None:
            c = float(c)
            fn = _g.mp_log_moment_series if c < 0.1 else _g.mp_log_moment
            return float(fn(c, _f=NUMPY))
        cm = _to_mpf(c)
        # the closed form loses about log10(1/c) digits to cancellation: add them back
        extra = _GUARD + int(max(0, -mpmath.log10(cm)))
        with mpmath.workdps(dps + extra):
            val = _g.mp_log_moment(_to_mpf(c), _f=mp_namespace(dps + extra))
        with mpmath.workdps(dps):
            return +val


def _upper(s, real, rtol):
    """Im s > 0; just above the real axis, Im s ~ eta may round to a slightly negative value."""
    if np.ndim(s) == 0 and not isinstance(s, np.ndarray):
        return mpmath.im(s) > (-rtol * abs(s) if real else 0)
    return s.imag > np.where(real, -rtol * np.abs(s), 0.0)


def _to_mpf(v):
    if isinstance(v, fractions.Fraction):
        return mpmath.mpf(v.numerator) / v.denominator
    return mpmath.mpf(v)


# -- generalised Marchenko-Pastur --------------------------------------------------------------
class GeneralizedMarchenkoPastur:
    """Limiting spectral law of ``Sigma^{1/2} X^T X Sigma^{1/2} / N`` (Silverstein's equation).

    Parameters
    ----------
    atoms : array_like
        Population eigenvalues ``t_k >= 0`` (e.g. the d eigenvalues of Sigma), at least one
        positive.  Equal atoms are merged.
    ratio : float
        ``c = d / N > 0``.
    weights : array_like, optional
        ``w_k >= 0`` summing to 1 (default: uniform).

    Notes
    -----
    The companion transform solves ``z = -1/sb + c sum_k w_k t_k / (1 + t_k sb)`` by Newton's
    method in ``v = 1/sb`` (nearly linear at large ``|z|``) with the analytic derivative,
    vectorised over points and atoms, continued from ``Im z0 = 10 (1 + max t)(1 + c)`` down
    to the target with adaptive geometric steps, a tangent predictor, and damping that keeps
    ``Im sb > 0``; the converged value is the unique solution with ``Im sb > 0`` and
    ``Im s > 0`` (both are checked).  Then ``s = -(1/z) sum_k w_k / (1 + t_k sb)``, which
    does not cancel at small ``|z|`` as ``(sb + (1 - c)/z)/c`` would.
    Real ``x`` is evaluated at ``x + i eta`` with ``eta = 1e-12 |x|`` (double) or
    ``10^-(dps+2) |x|`` (mpmath) (``|x|`` replaced by ``scale = max t (1 + sqrt c)^2`` at
    ``x = 0``); the atom at 0 is then replaced by its exact boundary value.  The mpmath back end polishes the double
    solution point by point.
    """

    def __init__(self, atoms, ratio, weights=None):
        _, self.ratio = _parse_ratio(ratio)
        try:
            t = np.asarray(atoms, dtype=float).ravel()
        except (TypeError, ValueError, OverflowError):
            raise ParameterError("atoms", "finite non-negative numbers", atoms) from None
        if t.size == 0 or not np.all(np.isfinite(t)) or np.any(t < 0) or not np.any(t > 0):
            raise ParameterError("atoms", "finite non-negative numbers, at least one positive",
                                 None if t.size == 0 else float(t.min()))
        if weights is None:
            w = np.full(t.size, 1.0 / t.size)
        else:
            try:
                w = np.asarray(weights, dtype=float).ravel()
            except (TypeError, ValueError, OverflowError):
                raise ParameterError("weights", "non-negative numbers summing to 1", weights) from None
            if w.shape != t.shape or not np.all(np.isfinite(w)) or np.any(w < 0) \
                    or abs(w.sum() - 1) > 1e-9:
                raise ParameterError("weights", f"{t.size} non-negative numbers summing to 1",
                                     float(w.sum()) if w.size else None)
            w = w / w.sum()
        uniq, inv = np.unique(t, return_inverse=True)
        wu = np.bincount(inv, weights=w)
        keep = wu > 0
        self.atoms, self.weights = uniq[keep], wu[keep]
        pos = self.atoms > 0
        if not np.any(pos):
            raise ParameterError("weights", "positive on at least one positive atom")
        self._w0 = float(self.weights[~pos].sum())
        self._tp, self._wp = self.atoms[pos], self.weights[pos]
        self._tau = 1.0 / self._tp
        self._wtau = self._wp * self._tau
        self._mean = float(self.atoms @ self.weights)
        c = self.ratio
        self.scale = float(self.atoms.max() * (1 + math.sqrt(c)) ** 2)
        self._eta0 = 10.0 * (1 + float(self.atoms.max())) * (1 + c)
        self.atom: float = max(self._w0, 1 - 1 / c)  # mass at 0 of the d x d law
        self.companion_atom: float = max(0.0, 1 - c * (1 - self._w0))  # of the N x N law

    @classmethod
    def from_density(cls, density: Callable[[float], float], interval, ratio,
                     n_nodes: int = 256) -> "GeneralizedMarchenkoPastur":
        """Population law with a density on ``interval``, discretised at Gauss-Legendre nodes."""
        try:
            lo, hi = (float(v) for v in interval)
        except (TypeError, ValueError, OverflowError):
            raise ParameterError("interval", "a pair (low, high) with 0 <= low < high", interval) from None
        if not (math.isfinite(lo) and math.isfinite(hi) and 0 <= lo < hi):
            raise ParameterError("interval", "a pair (low, high) with 0 <= low < high", interval)
        if isinstance(n_nodes, bool) or not isinstance(n_nodes, numbers.Integral) or n_nodes < 2:
            raise ParameterError("n_nodes", "an integer >= 2", n_nodes)
        x, wgl = np.polynomial.legendre.leggauss(int(n_nodes))
        nodes = lo + (hi - lo) * (x + 1) / 2
        vals = np.array([float(density(v)) for v in nodes])
        mass = wgl * (hi - lo) / 2 * vals
        total = float(mass.sum())
        if not np.all(np.isfinite(vals)) or np.any(vals < 0) or abs(total - 1) > 1e-3:
            raise ParameterError("density", "a non-negative probability density on the interval "
                                 "(integral 1 within 1e-3)", total)
        return cls(nodes, ratio, weights=mass / total)

    # -- public evaluation ---------------------------------------------------------------------
    def stieltjes(self, z, dps: int | None = None) -> StieltjesResult:
        """s(z) of the d x d law; boundary value from above for real ``z`` (see class notes)."""
        return self._evaluate(z, dps, companion=False)

    def companion(self, z, dps: int | None = None) -> StieltjesResult:
        """sb(z) of the N x N companion law ``X Sigma X^T / N``."""
        return self._evaluate(z, dps, companion=True)

    def density(self, x) -> np.ndarray:
        """Density of the absolutely continuous part at real ``x`` (double).

        At ``x = 0`` exactly, when the law is singular there (an atom of mass ``.atom``, or
        ``ratio = 1``), 0 is returned.
        """
        x = _real_array("x", x)
        if not np.all(np.isfinite(x)):
            raise ParameterError("x", "finite real numbers", float(x[~np.isfinite(x)].flat[0]))
        at0 = (x == 0) & (self._zero_singular(False))
        res = self.stieltjes(np.where(at0, 1.0, x))
        return np.where(at0, 0.0, res.density)

    # -- machinery -----------------------------------------------------------------------------
    def _eta(self, absx, rel):
        """Height above real x: relative to |x|, since s may vary on that scale near 0
        (an edge or atom there); relative to the spectrum's scale at x = 0 itself."""
        return rel * np.where(absx > 0, absx, self.scale) if isinstance(absx, np.ndarray) \
            else rel * (absx if absx > 0 else self.scale)

    def _zero_singular(self, companion: bool) -> bool:
        atom = self.companion_atom if companion else self.atom
        return atom > 0 or self.ratio == 1

    def _evaluate(self, z, dps, companion: bool) -> StieltjesResult:
        dps = check_dps(dps)
        if dps is None:
            zz = _complex_array(z)
            flat = zz.ravel()
        else:
            with mpmath.workdps(dps + _GUARD):
                pts, shape = _mp_points(z)
            flat = np.array([complex(p) for p in pts])
            flat = np.where(flat.imag == 0, flat.real + 0j, flat)
        real = flat.imag == 0
        if np.any(real & (flat == 0)) and self._zero_singular(companion):
            raise _zero_z("non-zero: the law has an atom or a singularity at 0")
        # Im z < 0 by conjugation; real z just above the axis
        target = np.where(real, flat.real + 1j * self._eta(np.abs(flat.real), _ETA_REAL), flat)
        target = np.where(target.imag < 0, target.conj(), target)
        v, its = self._solve_numpy(target)
        if dps is None:
            s, residual = self._finish_numpy(target, v, flat, real, companion)
            value = s.reshape(zz.shape)
            density = None
            if np.any(real):
                # max: Im s ~ eta outside the support may round to -0
                density = np.where(real, np.maximum(value.imag.ravel(), 0) / np.pi, np.nan).reshape(zz.shape)
                density = float(density) if density.ndim == 0 else density
            if value.ndim == 0:
                value = complex(value)
            return StieltjesResult(value, residual, int(its.max(initial=0)), True, None, density)
        return self._evaluate_mp(pts, shape, target, v, its, real, companion, dps)

    def _sums_numpy(self, v: np.ndarray):
        """Atom sums (Bt, H2) over the positive atoms, blocked to bound memory."""
        m = v.size
        rows = max(1, _CHUNK // self._tau.size)
        Bt, H2 = np.empty(m, complex), np.empty(m, complex)
        for i in range(0, m, rows):
            h = _g.silverstein_atom(self._tau[None, :], v[i:i + rows, None], _f=NUMPY)
            # einsum: complex-by-real matmul goes through a much slower path
            Bt[i:i + rows] = np.einsum("ij,j->i", h, self._wtau)
            H2[i:i + rows] = np.einsum("ij,ij,j->i", h, h, self._wp)
        return Bt, H2

    def _residual_numpy(self, z, v):
        Bt, H2 = self._sums_numpy(v)
        return _g.silverstein_residual(z, self.ratio, v, self._w0, Bt, H2, _f=NUMPY)

    def _newton_numpy(self, z, v, tol, maxit=10):
        """Damped Newton in v = 1/sb on all points at once.

        A point stops once the error left after its last step, estimated as |step| times
        the contraction ratio of the last two steps, is below ``tol * |v|`` (or its
        residual is at roundoff).  Returns (v, ok, iterations, dF at the last iterate).
        """
        v = v.copy()
        n = z.size
        tol = np.broadcast_to(tol, n)
        ok = np.zeros(n, bool)
        its = np.zeros(n, int)
        dF_last = np.ones(n, complex)
        r_prev = np.full(n, np.inf)
        step_prev = np.full(n, np.inf)
        act = np.arange(n)
        for _ in range(maxit):
            va = v[act]
            with np.errstate(all="ignore"):
                F, dF, scale = self._residual_numpy(z[act], va)
                r = np.abs(F) / scale
                step = -F / dF
                new = va + step
                # fraction to the boundary: Im v stays < 0, i.e. Im sb > 0 (physical branch)
                new = np.where(new.imag < 0, new, va + (0.9 * va.imag / -step.imag) * step)
                size = np.abs(step)
                rho = size / step_prev[act]
                est = np.where(rho < 0.5, size * rho, np.inf)  # rho = 0 on the first iteration
                est[np.isinf(step_prev[act])] = np.inf
            its[act] += 1
            dF_last[act] = dF
            good = np.isfinite(new) & (new.imag < 0)
            v[act] = np.where(good, new, va)
            mag = np.abs(v[act])
            stalled = (r <= 1e-13) & (r >= 0.5 * r_prev[act])  # roundoff level
            done = good & (r <= 1e-8) & ((est <= tol[act] * mag) | (size <= 1e-3 * tol[act] * mag)
                                         | stalled | (r <= 2 * NUMPY.eps))
            ok[act[done]] = True
            r_prev[act] = r
            step_prev[act] = size
            act = act[~done & good]
            if act.size == 0:
                break
        return v, ok, its, dF_last

    def _solve_numpy(self, target: np.ndarray):
        """Continuation in Im z from eta0 down to the target (Im target > 0); returns v = 1/sb.

        Geometric steps, per point: the log-step doubles after a success and shrinks
        fourfold after a failure; a tangent predictor (dv/dz = -1/F') starts each
        corrector, and only the last stage is solved to full accuracy.
        """
        x, eta_t = target.real, target.imag
        eta = np.maximum(eta_t, self._eta0)
        v0 = -(x + 1j * eta) + self.ratio * self._mean  # F(v) ~ z + v - c E t at large |z|
        tol = np.where(eta == eta_t, _TOL_TIGHT, _TOL_LOOSE)
        v, ok, its, dF = self._newton_numpy(x + 1j * eta, v0, tol)
        if not np.all(ok):
            raise ConvergenceError("Silverstein equation: Newton failed at the start of the continuation")
        logstep = np.full(x.size, np.log(10.0))
        for _ in range(400):
            act = np.nonzero(eta > eta_t)[0]
            if act.size == 0:
                break
            eta_try = np.maximum(eta_t[act], eta[act] * np.exp(-logstep[act]))
            with np.errstate(all="ignore"):
                pred = v[act] - 1j * (eta_try - eta[act]) / dF[act]
            pred = np.where(np.isfinite(pred) & (pred.imag < 0), pred, v[act])
            tol = np.where(eta_try == eta_t[act], _TOL_TIGHT, _TOL_LOOSE)
            v_new, ok, it, dF_new = self._newton_numpy(x[act] + 1j * eta_try, pred, tol)
            its[act] += it
            acc, rej = act[ok], act[~ok]
            eta[acc], v[acc], dF[acc] = eta_try[ok], v_new[ok], dF_new[ok]
            logstep[acc] *= 2
            logstep[rej] /= 4
            if np.any(logstep[rej] < 1e-4):
                bad = rej[logstep[rej] < 1e-4][0]
                raise ConvergenceError(f"Silverstein equation: continuation stalled at z = {target[bad]}")
        else:
            raise ConvergenceError("Silverstein equation: continuation did not reach the target")
        return v, its

    def _finish_numpy(self, target, v, flat, real, companion):
        Bt, H2 = self._sums_numpy(v)
        F, _, scale = _g.silverstein_residual(target, self.ratio, v, self._w0, Bt, H2, _f=NUMPY)
        residual = float(np.max(np.abs(F) / scale, initial=0.0))
        s = _g.silverstein_s(target, v, self._w0, Bt, _f=NUMPY)
        if residual > _TOL_ACCEPT or not np.all(np.isfinite(s)):
            raise ConvergenceError(f"Silverstein equation: residual {residual:.2e} above {_TOL_ACCEPT:g}")
        if np.any(~_upper(s, real, 1e-10)) or np.any(v.imag >= 0):
            raise ConvergenceError("Silverstein equation: solution left the physical branch (Im s <= 0)")
        out = 1 / v if companion else s
        out = self._boundary(out, target, flat, real, companion)
        out = np.where(flat.imag < 0, out.conj(), out)
        return out, residual

    def _boundary(self, v, target, flat, real, companion):
        """Replace the atom's -m/(x + i eta) by its exact boundary value -m/x at real x."""
        m = self.companion_atom if companion else self.atom
        if m == 0:
            return v
        with np.errstate(divide="ignore", invalid="ignore"):
            fixed = v + m / target - m / np.where(real, flat.real, 1.0)
        return np.where(real, fixed, v)

    # -- mpmath back end -------------------------------------------------------------------------
    def _evaluate_mp(self, pts, shape, target_d, v_d, its_d, real, companion, dps):
        work = dps + _GUARD
        values, dens, residual, iters = [], [], 0.0, 0
        with mpmath.workdps(work):
            ns = mp_namespace(work)
            atoms = _MpAtoms(self.ratio, self._tp, self._wp, self._w0)
            for i, zi in enumerate(pts):
                x = mpmath.re(zi)
                if real[i]:
                    zt = mpmath.mpc(x, self._eta(abs(x), mpmath.mpf(10) ** (-dps - 2)))
                else:
                    zt = zi if mpmath.im(zi) > 0 else mpmath.conj(zi)
                z0 = mpmath.mpc(x, float(target_d[i].imag)) if real[i] else zt
                v, it = self._continue_mp(z0, mpmath.mpc(complex(v_d[i])), zt, atoms, ns, work)
                iters = max(iters, it + int(its_d[i]))
                with mpmath.workdps(dps):
                    v = mpmath.mpc(+mpmath.re(v), +mpmath.im(v))
                F, _, sc, Bt = atoms.residual(zt, v, ns)
                residual = max(residual, float(abs(F) / sc))
                s = _g.silverstein_s(zt, v, atoms.w0, Bt, _f=ns)
                if not _upper(s, real[i], mpmath.mpf(10) ** -dps) or mpmath.im(v) >= 0:
                    raise ConvergenceError("Silverstein equation: solution left the physical branch")
                out = 1 / v if companion else s
                m = self.companion_atom if companion else self.atom
                if real[i] and m > 0:
                    out = out + m / zt - m / x
                if not real[i] and mpmath.im(zi) < 0:
                    out = mpmath.conj(out)
                with mpmath.workdps(dps):
                    out = mpmath.mpc(+mpmath.re(out), +mpmath.im(out))
                values.append(out)
                dens.append(max(mpmath.im(out), 0) / mpmath.pi if real[i] else mpmath.nan)
        if residual > 10.0 ** (2 - dps):
            raise ConvergenceError(f"Silverstein equation: residual {residual:.2e} at dps={dps}")
        density = _mp_shape(dens, shape) if any(real) else None
        return StieltjesResult(_mp_shape(values, shape), residual, iters, True, dps, density)

    @staticmethod
    def _newton_mp(z, v, atoms, ns, work, maxit=30):
        tol = mpmath.mpf(10) ** (_GUARD - work - 4)
        for it in range(1, maxit + 1):
            F, dF, _, _ = atoms.residual(z, v, ns)
            step = -F / dF
            new = v + step
            if not mpmath.im(new) < 0:
                new = v + step * (mpmath.mpf("0.9") * mpmath.im(v) / -mpmath.im(step))
            v = new
            if abs(step) <= tol * abs(v):
                return v, it, True
        return v, maxit, False

    def _continue_mp(self, z0, v0, zt, atoms, ns, work):
        """Polish the double solution v0 at z0, then continue to zt = Re z0 + i Im zt."""
        eta, eta_t = mpmath.im(z0), mpmath.im(zt)
        v, it, ok = self._newton_mp(z0, v0, atoms, ns, work)
        total = it
        if not ok:
            raise ConvergenceError(f"Silverstein equation (mpmath): Newton failed at z = {z0}")
        logstep = mpmath.log(eta / eta_t) if eta > eta_t else 0
        while eta > eta_t:
            eta_try = max(eta_t, eta * mpmath.exp(-logstep))
            new, it, ok = self._newton_mp(mpmath.mpc(mpmath.re(zt), eta_try), v, atoms, ns, work)
            total += it
            if ok and mpmath.im(new) < 0:
                eta, v, logstep = eta_try, new, 2 * logstep
            else:
                logstep /= 4
                if logstep < 1e-4:
                    raise ConvergenceError(f"Silverstein equation (mpmath): continuation stalled at {zt}")
        return v, total


class _MpAtoms:
    """The population in mpmath numbers (create inside ``mpmath.workdps``)."""

    def __init__(self, ratio, tp, wp, w0):
        self.c = mpmath.mpf(ratio)
        self.tau = [1 / mpmath.mpf(float(t)) for t in tp]
        self.wp = [mpmath.mpf(float(w)) for w in wp]
        self.w0 = mpmath.mpf(w0)

    def residual(self, z, v, ns):
        """(F, dF/dv, scale, Bt) of Silverstein's equation in v."""
        H2 = Bt = mpmath.mpf(0)
        for tk, w in zip(self.tau, self.wp):
            h = _g.silverstein_atom(tk, v, _f=ns)
            Bt += w * tk * h
            H2 += w * h * h
        F, dF, scale = _g.silverstein_residual(z, self.c, v, self.w0, Bt, H2, _f=ns)
        return F, dF, scale, Bt
