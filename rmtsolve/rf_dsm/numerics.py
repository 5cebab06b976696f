"""Shared numerics of the RF-DSM solvers: Newton steps, continuation, error assembly.

Every routine takes a *system* (:mod:`rmtsolve.rf_dsm.equations`) and the parameter tuple
``a = (psi_n, psi_p, iota, t, lam, mu1, mu_s2, mu_e2)``; the unknowns u = (k0, k1, G) are
k_tau = 1/(1 + delta_tau) and G = a_I g, all in (0, 1] for a real ridge.

- :func:`solve3`: Cramer's rule for 3 x 3 systems (floats, arrays or mpmath numbers);
- :func:`newton_grid`, :func:`newton_point`, :func:`newton_complex`: damped Newton with the
  generated Jacobian (vectorised over points / one point / complex ridges with the branch
  condition Im s_U > 0);
- :func:`descend`, :func:`continue_point`, :func:`solve_grid`: adaptive continuation in
  log10 of the ridge (or of Im z) from a value where the physical branch is known
  (k = G = 1 at a large ridge);
- :func:`loss_derivatives`, :func:`errors`: test_error = dL/dgam and
  train_error = L - lam dL/dlam through the fixed point (implicit function theorem), total
  and per eigenvalue of Sigma.
"""
from __future__ import annotations

import math

import mpmath
import numpy as np

from .._generated import rf_dsm as _eq
from .._backend import MATH, NUMPY
from ..errors import ConvergenceError

TOL = 1e-13  # residual tolerance of the double-precision Newton solves (residuals are O(1))


def solve3(J, b):
    """Cramer's rule for one 3 x 3 system (floats, arrays or mpmath numbers); J row-major."""
    a, b_, c, d, e, f, g, h, i = J
    det = a * (e * i - f * h) - b_ * (d * i - f * g) + c * (d * h - e * g)
    x = (b[0] * (e * i - f * h) - b_ * (b[1] * i - f * b[2]) + c * (b[1] * h - e * b[2])) / det
    y = (a * (b[1] * i - f * b[2]) - b[0] * (d * i - f * g) + c * (d * b[2] - b[1] * g)) / det
    z = (a * (e * b[2] - b[1] * h) - b_ * (d * b[2] - b[1] * g) + b[0] * (d * h - e * g)) / det
    return [x, y, z]


def lam_floor(scale, dps):
    """Smallest ridge used: lam = 0 is evaluated at this ridge, whose O(lam) effect on the
    errors is below the working precision (the ridgeless limit is approached linearly)."""
    if dps is None:
        return scale * 1e-15
    return scale * mpmath.mpf(10) ** (-(dps + 4))


def lam_start(psi_n, psi_p, mu1, mus2, mue2, s2=1.0):
    """A ridge large enough that delta_tau << 1 and psi_p g M << 1, i.e. k, G ~ 1."""
    return 1e3 * (1 + mu1**2 * max(s2, 1.0) + mus2 + mue2) * (1 + psi_p) * (1 + psi_p / psi_n)


def descend(log_start, log_target, u, solve, on_stall, *, step=1.0, max_step=2.0, grow=2.0,
            min_step=1e-4):
    """Move each point's log10-parameter from ``log_start`` to ``log_target``.

    ``solve(idx, values, u_sub) -> (u_new, res, ok, iterations)`` solves the points ``idx`` at
    parameter ``10**values`` from the unknowns ``u_sub``.  A point whose solve fails keeps its
    last solution and divides its step by 4; success multiplies it by ``grow`` (at most
    ``max_step``).  ``on_stall(index, log_value, res)`` is called when a step falls below
    ``min_step``: it raises, or returns to drop the point (its residual is then set to inf).
    Returns (u, residuals, total iterations).
    """
    log_value = np.array(log_start, dtype=float)
    steps = np.full(log_value.shape, float(step))
    res = np.zeros(log_value.shape)
    total = 0
    while True:
        idx = np.flatnonzero(log_value > log_target)
        if idx.size == 0:
            return u, res, total
        trial = np.maximum(log_value[idx] - steps[idx], log_target[idx])
        u_new, r, ok, its = solve(idx, trial, [x[idx] for x in u])
        total += its
        for x, xn in zip(u, u_new):
            x[idx] = np.where(ok, xn, x[idx])
        res[idx] = np.where(ok, r, res[idx])
        log_value[idx] = np.where(ok, trial, log_value[idx])
        steps[idx] = np.where(ok, np.minimum(steps[idx] * grow, max_step), steps[idx] / 4)
        for bad in np.flatnonzero(steps < min_step):
            on_stall(int(bad), log_value[bad], res[bad])
            log_value[bad], steps[bad], res[bad] = log_target[bad], max_step, np.inf


def newton_grid(system, u, args, max_iter=30):
    """Vectorised damped Newton (real ridge); each iteration works on the points still moving.

    Backtracking keeps the physical branch (k_tau, G in (0, 1]) and lowers the residual.
    Returns (u, residuals, converged, iterations).
    """
    u = [x.copy() for x in u]
    n = u[0].size
    fnorm = np.full(n, np.inf)
    live = np.arange(n)
    its = 0
    for its in range(max_iter + 1):
        a = tuple(x[live] if np.ndim(x) else x for x in args)
        ul = [x[live] for x in u]
        T = [np.broadcast_to(x, live.shape) for x in system.terms(ul, a, NUMPY)]
        f0 = np.max(np.abs(T[:3]), axis=0)
        fnorm[live] = f0
        keep = f0 > TOL
        if not keep.any() or its == max_iter:
            break
        live, ul, a, T, f0 = live[keep], [x[keep] for x in ul], tuple(
            x[keep] if np.ndim(x) else x for x in a), [x[keep] for x in T], f0[keep]
        step = solve3(T[3:], [-x for x in T[:3]])
        step = [np.where(np.isfinite(x), x, 0.0) for x in step]
        s = np.ones(live.shape)
        pending = np.ones(live.shape, bool)
        for _ in range(30):
            trial = [np.minimum(x + s * dx, 1.0) for x, dx in zip(ul, step)]
            feasible = np.all([(x + s * dx > 0) & (x + s * dx <= 1 + 1e-12) for x, dx in zip(ul, step)], axis=0)
            f_new = np.max(np.abs(np.broadcast_arrays(*system.residuals(trial, a, NUMPY))), axis=0)
            good = pending & feasible & (f_new < f0 * (1 - 1e-4 * s))
            for x, tx in zip(ul, trial):
                x[good] = tx[good]
            pending &= ~good
            if not pending.any():
                break
            s = np.where(pending, s / 2, s)
        for x, xl in zip(u, ul):
            x[live] = xl
    return u, fnorm, fnorm <= 1e2 * TOL, its


def solve_grid(system, args, drop_failed=False):
    """Real-ridge continuation for a grid of points (flat arrays), from a large ridge to a[4].

    Each point moves down in log10(ridge) by an adaptive step (at most two decades); a point
    whose Newton solve fails goes back to its last solution and shrinks its step.  Only the
    points still on their way are solved in each round.  A point whose step falls below 1e-4
    decades raises ConvergenceError, or with ``drop_failed`` is dropped (residual inf).
    Returns (u, residuals per point, iterations).
    """
    flat = [np.ravel(x) for x in args]
    log_target = np.log10(flat[4])
    log_start = np.maximum(np.log10(lam_start(*flat[:2], *flat[5:], system.s2)), log_target + 1)

    def solve(idx, log_lam, u_sub):
        sub = [x[idx] for x in flat]
        sub[4] = 10.0 ** log_lam
        return newton_grid(system, u_sub, tuple(sub), max_iter=30)

    def stall(i, log_lam, res):
        if not drop_failed:
            raise_unconverged(tuple(x[i] for x in flat), res, 10.0 ** log_lam)

    u, res, total = descend(log_start, log_target, [np.ones(log_target.shape) for _ in range(3)], solve, stall)
    return u, res, total


def raise_unconverged(a, res, lam_k):
    psi_n, psi_p, iota, t, lam = (float(x) for x in a[:5])
    m = math.inf if iota == 0 else 1 / iota
    raise ConvergenceError(f"rf-dsm Newton solve did not converge at psi_n={psi_n:g}, psi_p={psi_p:g}, "
                           f"m={m:g}, t={t:g}, lam={lam:g} (residual {float(res):.3g} at ridge {float(lam_k):.3g})")


def newton_point(system, u, a, f, tol, max_iter):
    """Damped Newton for one point; returns (u, residual, iterations, converged)."""
    T = system.terms(u, a, f)
    fn = max(abs(x) for x in T[:3])
    for it in range(max_iter):
        if fn <= tol:
            return u, fn, it, True
        step = solve3(T[3:], [-x for x in T[:3]])
        s = 1
        for _ in range(40):
            trial = [x + s * dx for x, dx in zip(u, step)]
            if all(0 < x <= 1 + 1e-12 for x in trial):
                trial = [min(x, 1) for x in trial]
                T_new = system.terms(trial, a, f)
                fn_new = max(abs(x) for x in T_new[:3])
                if fn_new < fn * (1 - s / 10000):
                    break
            s = s / 2
        else:  # no decrease possible: converged only if already at the rounding floor
            return u, fn, it, fn <= 1e2 * tol
        u, T, fn = trial, T_new, fn_new
    return u, fn, max_iter, fn <= tol


def continue_point(system, a, f=MATH, tol=TOL):
    """Adaptive continuation in log10(ridge) from a large ridge down to a[4] (one point)."""
    target = math.log10(a[4])
    log_lam = math.log10(lam_start(*a[:2], *a[5:], system.s2))
    if target >= log_lam:  # already a large ridge (k, G ~ 1): Newton starts in its basin there
        return newton_point(system, [1.0, 1.0, 1.0], a, f, tol, 30)
    u, step, total, res = [1.0, 1.0, 1.0], 1.0, 0, 0.0
    while log_lam > target:
        trial = max(log_lam - step, target)
        new, res, its, ok = newton_point(system, u, a[:4] + (10.0 ** trial,) + a[5:], f, tol, 30)
        total += its
        if ok:
            u, log_lam, step = new, trial, min(2 * step, 2.0)
        else:
            step /= 4
            if step < 1e-4:
                return u, res, total, False
    return u, res, total, True


def newton_complex(system, u, lam, a_rest, tol=1e-12, max_iter=30):
    """Vectorised Newton at complex ridges ``lam`` (the other parameters in ``a_rest``).

    ``a_rest = (psi_n, psi_p, iota, t, mu1, mu_s2, mu_e2)``.  Steps are accepted only where
    they lower the residual and keep both Herglotz conditions of s_U = g(lam = -z) (the
    physical branch; none for a real ridge).  Each iteration works on the points not yet
    converged.  Returns (u, residuals, converged).
    """
    def args(sel):
        return tuple(a_rest[:4]) + (lam[sel],) + tuple(a_rest[4:])

    u = [np.array(v, dtype=complex) for v in u]
    fn = np.full(lam.shape, np.inf)
    live = np.arange(lam.size)
    for it in range(max_iter + 1):
        ul = [v[live] for v in u]
        T = system.terms(ul, args(live), NUMPY)
        f0 = np.max(np.abs(np.broadcast_arrays(*T[:3])), axis=0)
        fn[live] = f0
        keep = f0 > tol
        if not keep.any() or it == max_iter:
            break
        live, ul, f0 = live[keep], [v[keep] for v in ul], f0[keep]
        T = [np.broadcast_to(x, keep.shape)[keep] for x in T]
        step = solve3(T[3:], [-x for x in T[:3]])
        s = np.ones(live.shape)
        pending = np.ones(live.shape, bool)
        sg = -np.sign(lam[live].imag)
        for _ in range(30):
            trial = [v + s * dv for v, dv in zip(ul, step)]
            fn_new = np.max(np.abs(np.broadcast_arrays(*system.residuals(trial, args(live), NUMPY))), axis=0)
            st = system.stieltjes(trial, args(live), NUMPY)
            branch = ((st.imag * sg > 0) & ((-lam[live] * st).imag * sg > 0)) | (sg == 0)
            good = pending & branch & (fn_new < f0)
            for v, tv in zip(ul, trial):
                v[good] = tv[good]
            pending &= ~good
            if not pending.any():
                break
            s = np.where(pending, s / 2, s)
        for v, vl in zip(u, ul):
            v[live] = vl
    return u, fn, fn <= 1e2 * tol


def newton_complex_point(system, u, a, tol=1e-12, max_iter=12, halvings=8):
    """:func:`newton_complex` for one point on Python complex numbers (``a`` with lam = a[4]).

    Few iterations and halvings: a continuation step that needs more is cheaper to shorten.
    Returns (u, residual, converged)."""
    sgn = -1.0 if a[4].imag > 0 else 1.0  # Im s_U > 0 for Im z = -Im lam > 0
    T = system.terms(u, a, MATH)
    fn = max(abs(x) for x in T[:3])
    for _ in range(max_iter):
        if fn <= tol:
            return u, fn, True
        step = solve3(T[3:], [-x for x in T[:3]])
        s = 1.0
        for _ in range(halvings):
            trial = [x + s * dx for x, dx in zip(u, step)]
            T_new = system.terms(trial, a, MATH)
            fn_new = max(abs(x) for x in T_new[:3])
            if fn_new < fn and (a[4].imag == 0 or _herglotz(system.stieltjes(trial, a, MATH), -a[4], sgn)):
                break
            s /= 2
        else:
            return u, fn, fn <= 1e2 * tol
        u, T, fn = trial, T_new, fn_new
    return u, fn, fn <= 1e2 * tol


def _herglotz(s, z, sgn):
    """Both branch conditions of a Stieltjes transform of a law on [0, inf): Im s and Im(z s)
    have the sign of Im z (``sgn``)."""
    return sgn * s.imag > 0 and sgn * (z * s).imag > 0


def continue_complex_point(system, x, eta_target, a_rest, scale):
    """Fixed point at lam = -(x + i eta_target) for one point, on the physical branch.

    Continuation in log10(eta) from 1e3 scale down to the target, each Newton solve started
    from the secant extrapolation of the last two solutions (steps of at most one decade: longer
    ones can land on spurious roots that still have Im s_U > 0).
    ``a_rest = (psi_n, psi_p, iota, t, mu1, mu_s2, mu_e2)``.  Returns (u, residual).
    """
    def args(log_eta):
        return tuple(a_rest[:4]) + (-(x + 1j * 10.0 ** log_eta),) + tuple(a_rest[4:])

    log_eta, target = math.log10(1e3 * scale), math.log10(eta_target)
    log_eta = max(log_eta, target + 1)
    u, prev, step, res = [1 + 0j, 1 + 0j, 1 + 0j], None, 1.0, 0.0
    while log_eta > target:
        trial = max(log_eta - step, target)
        guess = u if prev is None else [
            ui + (ui - pi) * (trial - log_eta) / (log_eta - prev[0]) for ui, pi in zip(u, prev[1])]
        new, r, ok = newton_complex_point(system, guess, args(trial))
        if ok:
            prev, u, log_eta, res = (log_eta, u), new, trial, r
            step = min(2 * step, 1.0)
        else:
            step /= 4
            if step < 1e-5:
                raise ConvergenceError(f"feature spectrum: continuation stalled at z = {x:g} + "
                                       f"{10.0 ** log_eta:.3g}i (residual {r:.3g})")
    return u, res


def implicit_derivatives(system, u, a, f, solve):
    """(du/dgam, du/dlam) through the fixed point, and the loss tuple at gam = 0."""
    T = system.terms(u, a, f)
    Lt = system.loss(u, a, f)
    Fg, Fl = Lt[6:9], Lt[9:12]
    return solve(T[3:], Fg), solve(T[3:], Fl), Lt


def loss_derivatives(system, u, a, f, solve):
    """L and its total derivatives dL/dlam, dL/dgam at gam = 0 (implicit function theorem)."""
    dug, dul, Lt = implicit_derivatives(system, u, a, f, solve)
    L, Lu, Lg, Ll = Lt[0], Lt[1:4], Lt[4], Lt[5]
    dLl = Ll - sum(x * y for x, y in zip(Lu, dul))
    dLg = Lg - sum(x * y for x, y in zip(Lu, dug))
    return L, dLl, dLg


def errors(system, u, a, f, solve, by_eigenvalue=False):
    """test_error = dL/dgam and train_error = L - lam dL/dlam (and per eigenvalue).

    With ``by_eigenvalue``, also the lists (test, train) per node of a discrete spectrum: the
    same total derivatives of the coordinate-wise losses l(ell).
    """
    dug, dul, Lt = implicit_derivatives(system, u, a, f, solve)
    lam = a[4]

    def total(L):
        dLl = L[5] - sum(x * y for x, y in zip(L[1:4], dul))
        dLg = L[4] - sum(x * y for x, y in zip(L[1:4], dug))
        return dLg, L[0] - lam * dLl

    test, train = total(Lt)
    if not by_eigenvalue:
        return test, train, None
    per = [total(L) for L in system.node_loss(u, a, f)]
    return test, train, ([p[0] for p in per], [p[1] for p in per])


def solve_grid_linear(shape):
    """A ``solve(J, rhs)`` for :func:`errors` on arrays of ``shape`` (numpy linear solves)."""
    def solve(Jflat, rhs):
        J = np.stack(np.broadcast_arrays(*Jflat), -1).reshape(shape + (3, 3))
        b = np.stack([np.broadcast_to(r, shape) for r in rhs], -1)
        x = np.linalg.solve(J, b[..., None])[..., 0]
        return [x[..., i] for i in range(3)]
    return solve


def physical(test, train, floor, tol=1e-10):
    """Errors at their physical bounds: train_error >= 0 and test_error >= test_error_floor.

    Values below a bound by less than ``tol`` (rounding in the fixed point or the Talbot sum)
    are reported at the bound; anything further below is a solver failure.
    """
    test, train, floor = (np.asarray(x, dtype=float) for x in (test, train, floor))
    if np.any(train < -tol) or np.any(test < floor - tol * np.maximum(1, floor)):
        raise ConvergenceError(f"rf-dsm: an error below its physical bound beyond rounding "
                               f"(train {float(np.min(train)):.3g}, test - floor {float(np.min(test - floor)):.3g})")
    return np.maximum(test, floor), np.maximum(train, 0.0)


def solve2(J, b):
    """Cramer's rule for one 2 x 2 system; J row-major."""
    a, b_, c, d = J
    det = a * d - b_ * c
    return [(b[0] * d - b_ * b[1]) / det, (a * b[1] - c * b[0]) / det]


def kernel_point(ksys, a, f, tol, max_iter=100):
    """The psi_p = inf fixed point y = (1/K_0, 1/K_1) for one point (finite m).

    Each y_tau = c_tau(y) with c_tau increasing and concave in y, so Newton started at the
    upper bounds c_tau(inf) decreases monotonically to the root; halving keeps y > 0 and the
    residual decreasing.  Returns (y, residual, iterations, converged); residuals are relative
    to the size of y.
    """
    y = list(ksys.upper(a, f))
    T = ksys.terms(y, a, f)
    fn = max(abs(T[0]), abs(T[1])) / max(abs(y[0]), abs(y[1]))
    for it in range(max_iter):
        if fn <= tol:
            return y, fn, it, True
        step = solve2(T[2:], [-T[0], -T[1]])
        s = 1
        for _ in range(40):
            trial = [v + s * dv for v, dv in zip(y, step)]
            if all(v > 0 for v in trial):
                T_new = ksys.terms(trial, a, f)
                fn_new = max(abs(T_new[0]), abs(T_new[1])) / max(abs(trial[0]), abs(trial[1]))
                if fn_new < fn:
                    break
            s = s / 2
        else:
            return y, fn, it, fn <= 1e2 * tol
        y, T, fn = trial, T_new, fn_new
    return y, fn, max_iter, fn <= tol


def kernel_errors(ksys, y, a, f, by_eigenvalue=False):
    """Test error dLtilde/dGamma through the fixed point (and per eigenvalue); train is 0."""
    J = ksys.terms(y, a, f)[2:]
    L = ksys.loss(y, a, f)
    dy = solve2(J, [-L[4], -L[5]])

    def total(Lt):
        return Lt[3] + Lt[1] * dy[0] + Lt[2] * dy[1]

    per = [total(Lt) for Lt in ksys.node_loss(y, a, f)] if by_eigenvalue else None
    return total(L), per


def empirical_shift(s2, t, f):
    """2 e^{-2t} s2/D = 2 s2/expm1(2t): the term the d -> inf empirical-score error adds besides
    the cross term (linear in the eigenvalue, so taken with the exact mean s2 rather than a
    quadrature); of order s2/t as t -> 0, so +inf in double precision once that passes 1.8e308."""
    return _eq.empirical_shift(s2, t, _f=f)
