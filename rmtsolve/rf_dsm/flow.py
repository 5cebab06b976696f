"""RF-DSM errors after a finite gradient-flow time tau (conventions section 1.4).

Time convention: B(tau) = B_ridge (I - exp(-tau (U + lam))) with U = Phi^T Phi/(n m), i.e.
the flow dB/dtau = -grad L/2 of conventions 1.4 with time in units of d (tau' = d tau), so that
tau stays O(1) as d -> inf (the same convention as for the linear diffusion model);
tau -> inf gives the ridge solution.

b(tau) = f(U) yhat is the inverse Laplace transform at tau of xi -> R(lam + xi) yhat / xi,
evaluated with the fixed Talbot contour (Abate & Valko 2004) on ``_NODES`` symmetric nodes.
Each node needs the RF-DSM fixed point at a complex ridge (one vectorised continuation);
the errors then combine one-point terms and the derived two-point term
(``derivations/rf_dsm_flow.py``) over all pairs of nodes.
"""
from __future__ import annotations

import math

import mpmath
import numpy as np

from .._backend import MATH, NUMPY, mp_namespace
from .._generated import rf_dsm_flow as _eq
from ..errors import ConvergenceError, ParameterError
from .equations import AnisotropicSystem
from .numerics import (TOL, continue_point, errors, lam_start, loss_derivatives, newton_complex, raise_unconverged,
                       solve3)

_ORDERS = (12, 16)  # Talbot parameters M (2M - 1 nodes): ~0.6 M digits, rounding ~ e^{2M/5}
_AGREE = 1e-6  # the two orders must agree to this (relative)
_MP_DPS = 40  # fallback precision where double precision loses the cancellations
# the fallback's orders: truncation ~10^-12 and ~10^-14 (measured: a train error of 4.6e-4 off by
# 3.9e-10, 2.3e-13, 3.2e-15 relative at M = 16, 20, 24), rounding at _MP_DPS digits far below
_MP_ORDERS = (20, 24)
# relative truncation error allowed in double precision: the outputs must agree with 30 digits
# to 1e-10, and the estimate is rough (allowing 1e-11, a point it passed was off by 6e-11)
_REL = 3e-12
_MP_PAIR_SECONDS = 1.3e-3  # one two-point term per population node at 50 digits (the README's machine)
_MP_MAX_SECONDS = 900
_FALLBACK_SECONDS = 5.0  # the most the accuracy fallback may cost (estimated as for dps)


def talbot(tau: float, M: int = _ORDERS[-1]):
    """Nodes xi_k and weights W_k with sum_k W_k F(xi_k) ~ (1/2 pi i) int e^{tau xi} F(xi) dxi.

    Double-precision copy of :func:`talbot_mp` (one formula for both precisions).
    """
    with mpmath.workdps(20):
        xi, w = talbot_mp(mpmath.mpf(tau), M)
        return xi.astype(complex), w.astype(complex)


def talbot_mp(tau, M: int):
    """:func:`talbot` in mpmath (object arrays) at the current working precision."""
    nodes, weights = [], []
    r = mpmath.mpf(2 * M) / (5 * tau)
    for k in range(-(M - 1), M):
        th = mpmath.mpf(k) * mpmath.pi / M
        if k == 0:
            xi, dxi = r, mpmath.mpc(0, r)
        else:
            cot = mpmath.cot(th)
            xi = r * th * mpmath.mpc(cot, 1)
            dxi = r * mpmath.mpc(cot - th / mpmath.sin(th) ** 2, 1)
        nodes.append(xi)
        weights.append(mpmath.exp(tau * xi) * dxi / (2 * mpmath.mpc(0, 1) * M))
    return np.array(nodes, dtype=object), np.array(weights, dtype=object)


def solve_flow(system, tau, args, nan_policy=False):
    """Errors after gradient-flow time tau at every point of the broadcast arrays ``args``.

    Returns (test_error, train_error, largest residual, failed, empirical-score cross term,
    test_error_by_eigenvalue) with arrays of the points' shape (the last with a trailing axis of
    the distinct eigenvalues, or None where :func:`reports_by_eigenvalue` is false); a point that
    does not converge raises ConvergenceError, or with ``nan_policy`` is marked failed (NaN errors).
    """
    shape = args[0].shape
    test, train, cross = np.full(shape, np.nan), np.full(shape, np.nan), np.full(shape, np.nan)
    by = np.full(shape + (len(system.nodes),), np.nan) if reports_by_eigenvalue(system) else None
    failed = np.zeros(shape, bool)
    worst = 0.0
    for idx in np.ndindex(shape):
        a = tuple(float(x[idx]) for x in args)
        try:
            test[idx], train[idx], res, cross[idx], per = _flow_point(system, float(tau[idx]), a)
        except ConvergenceError:
            if not nan_policy:
                raise
            failed[idx] = True
            continue
        if by is not None:
            by[idx] = per
        worst = max(worst, res)
    return test, train, worst, failed, cross, by


def reports_by_eigenvalue(system) -> bool:
    """A discrete anisotropic spectrum: the flow also gives the test error per eigenvalue."""
    return isinstance(system, AnisotropicSystem) and system.discrete


def flow_is_untrained(system, tau, a, digits: int = 17) -> bool:
    """tau (s + lam) < 10^-digits for every eigenvalue s of U (``lam_start`` bounds them from
    above): B(tau) = 0 to that precision, so test = train = 1.  The Talbot contour would need
    ridges of order 1/tau there (beyond double range for tau ~ 1e-300)."""
    psi_n, psi_p, _, _, lam, mu1, mus2, mue2 = (float(x) for x in a)
    return tau * (lam + lam_start(psi_n, psi_p, mu1, mus2, mue2, system.s2)) < 10.0 ** -digits


def _untrained(system, one):
    """(test, train, residual, cross, by eigenvalue) of B = 0: the target's variance, 1."""
    by = [one] * len(system.nodes) if reports_by_eigenvalue(system) else None
    return one, one, 0.0, 0 * one, by


def _flow_point(system, tau, a):
    """One flow point; the ridge solution once e^{-tau (s + lam)} is below double precision,
    B = 0 once tau (s + lam) is."""
    if flow_is_untrained(system, tau, a):
        return _untrained(system, 1.0)
    if tau * a[4] > 40:  # e^{-tau (s + lam)} < 1e-17 (or tau = inf): the ridge solution
        u, res, _, ok = continue_point(system, a, MATH, TOL)
        if not ok:
            raise_unconverged(a, res, a[4])
        per = reports_by_eigenvalue(system)
        test, train, by = errors(system, u, a, MATH, solve3, per)
        return test, train, res, system.empirical_cross(u, a, MATH), (by[0] if per else None)
    return flow_errors(system, tau, a)


def flow_errors(system, tau: float, args: tuple) -> tuple:
    """(test_error, train_error, residual, cross term, test error per eigenvalue or None) at one
    point; args as in rf_dsm's solver.

    Evaluated at two Talbot orders in double precision.  Disagreement (rounding amplified by
    e^{2M/5} and, for p > n m at small |lam + xi|, by cancelling kernel-of-U terms in the
    deterministic equivalents), or an estimated truncation error above ``_REL`` of an output
    (small train errors), switches to mpmath at ``_MP_DPS`` digits and the orders
    ``_MP_ORDERS``; if those still disagree, ConvergenceError is raised instead of returning a
    number.
    """
    results = [_flow_errors(system, tau, args, M) for M in _ORDERS]
    consistent = _consistent(system, results, args)
    if not (consistent and _accurate(results, _ORDERS)):
        # the higher orders where they cost seconds (isotropic and few-atom spectra); a continuum
        # law's hundreds of population nodes would take minutes, so there a consistent double
        # result stands and an inconsistent one is recomputed at the double orders
        nodes = len(getattr(system, "nodes", [1]))
        high = _MP_PAIR_SECONDS * nodes * sum((2 * M - 1) ** 2 / 4 for M in _MP_ORDERS) <= _FALLBACK_SECONDS
        if high or not consistent:
            orders = _MP_ORDERS if high else _ORDERS
            results = [_flow_errors_mp(system, tau, args, M) for M in orders]
            if not _consistent(system, results, args):
                (te1, *_), (te2, *_) = results
                raise ConvergenceError(
                    f"rf-dsm flow at tau={tau:g}, lam={args[4]:.3g}: the Talbot evaluation is not accurate "
                    f"here (orders {orders} give test {te1:.6g} vs {te2:.6g}); use a smaller tau or a larger lam")
    (_, _, r1, _, _), (te, tr, r2, cross, by) = results
    if by is not None:
        # the total as the weighted mean of its parts: summed the other way round, through the
        # Talbot weights (up to e^{2M/5}), the two assemblies differ by ~1e-13 of rounding
        terms = [w * b for w, b in zip(system.weights, by)]
        te = mpmath.fsum(terms) if any(isinstance(b, mpmath.mpf) for b in by) else math.fsum(terms)
    return te, tr, max(r1, r2), cross, by


def _consistent(system, results, args) -> bool:
    (te1, tr1, *_, by1), (te2, tr2, *_, by2) = results
    floor = float(system.floor(args[3], MATH))
    pairs = [(te1, te2), (tr1, tr2)] + (list(zip(by1, by2)) if by2 is not None else [])
    return bool(all(np.isfinite(b) and abs(a - b) <= _AGREE * max(1.0, abs(b)) for a, b in pairs)
                and te2 >= floor * (1 - 1e-9) and tr2 >= -1e-9)


def _accurate(results, orders) -> bool:
    """Whether the finer order's truncation error, estimated as the orders' difference over
    10^{0.6 (M2 - M1)}, is below _REL of every output (small train errors sit on cancellations:
    4.6e-4 off by 2.5e-10 relative at M = 16 while the test error was right to 7e-13)."""
    (te1, tr1, *_, by1), (te2, tr2, *_, by2) = results
    gain = 10 ** (0.6 * (orders[1] - orders[0]))
    pairs = [(te1, te2), (tr1, tr2)] + (list(zip(by1, by2)) if by2 is not None else [])
    return all(abs(a - b) <= _REL * gain * abs(b) for a, b in pairs)


def _node_solutions(system, zeta, args, M):
    """Fixed points at the complex ridges zeta_k (double precision), on the physical branch.

    The real node (k = 0) comes from the real-ridge continuation; from there the solution is
    continued node by node along the contour (substeps where Newton fails), so every node
    stays on the branch connected to the real axis (a check of Im g alone admits spurious
    roots).  zeta_{-k} = conj(zeta_k) gives the other half by conjugation.
    """
    a_rest = args[:4] + args[5:]
    u0, res0, _, ok = continue_point(system, args[:4] + (float(zeta[M - 1].real),) + args[5:], MATH, TOL)
    if not ok:
        raise ConvergenceError(f"rf-dsm flow: real Talbot node did not converge (residual {res0:.3g})")
    cur, cur_z = [np.array([complex(v)]) for v in u0], complex(zeta[M - 1])
    lower = [None] * (M - 1)
    worst = res0
    for j in range(M - 2, -1, -1):  # Im zeta_j < 0, moving away from the real axis
        target, n_sub = complex(zeta[j]), 1
        while True:
            u, ok = cur, True
            for i in range(1, n_sub + 1):
                zi = cur_z + (target - cur_z) * i / n_sub
                u, r, good = newton_complex(system, u, np.array([zi]), a_rest)
                if not good.all():
                    ok = False
                    break
                worst = max(worst, float(r.max()))
            if ok:
                break
            n_sub *= 2
            if n_sub > 256:
                raise ConvergenceError(f"rf-dsm flow: continuation along the Talbot contour failed at zeta={target:.3g}")
        cur, cur_z = u, target
        lower[j] = [v[0] for v in u]
    u = [np.array([lower[j][i] for j in range(M - 1)] + [complex(u0[i])] +
                  [np.conj(lower[j][i]) for j in range(M - 2, -1, -1)]) for i in range(3)]
    # Polish to the rounding floor: the Talbot sum amplifies node errors by up to e^{2M/5}.
    u, r, _ = newton_complex(system, u, np.asarray(zeta, dtype=complex), a_rest, tol=0.0, max_iter=3)
    return u, max(worst, float(r.max()))


def _flow_errors(system, tau: float, args: tuple, M: int) -> tuple:
    xi, w = talbot(tau, M)
    zeta = args[4] + xi
    u, res = _node_solutions(system, zeta, args, M)
    with np.errstate(all="ignore"):
        test, train, cross, by = _assemble(system, u, zeta, w / xi, args, NUMPY)
    return float(test.real), float(train.real), res, float(cross.real), _real(by, float)


def _real(by, cast):
    return None if by is None else [cast(x.real) for x in by]


def _flow_errors_mp(system, tau: float, args: tuple, M: int) -> tuple[float, float, float]:
    """The double-precision fallback: order M at ``_MP_DPS`` digits, as floats."""
    with mpmath.workdps(_MP_DPS):
        a = tuple(mpmath.mpf(repr(float(v))) for v in args[:4]) + (mpmath.mpf(args[4]),) + tuple(
            mpmath.mpf(v) for v in args[5:])
        te, tr, res, cross, by = _flow_terms_mp(system, mpmath.mpf(repr(tau)), a, args, M, _MP_DPS)
        return float(te.real), float(tr.real), float(res), float(cross.real), _real(by, float)


def flow_errors_mp(system, tau, a: tuple, a_double: tuple, dps: int):
    """(test_error, train_error, residual, cross term, test error per eigenvalue or None) at
    ``dps`` digits after flow time tau.

    ``a`` are the parameters as mpmath numbers, ``a_double`` the same in double precision (for the
    starting node solutions).  The Talbot order M is chosen so that its truncation error,
    about 10^{-0.6 M}, is below 10^{-dps}; the working precision covers the rounding amplified by
    the products of two weights (up to e^{4M/5}).  Two orders must agree to 10^{-dps} (relative to max(1, |value|)),
    else ConvergenceError.
    """
    if flow_is_untrained(system, float(tau), a_double, dps + 5):
        return _untrained(system, mpmath.mpf(1))
    orders = _mp_orders(dps)
    wp = _mp_working_dps(dps)
    results = [_flow_terms_mp(system, tau, a, a_double, M, wp) for M in orders]
    with mpmath.workdps(wp):
        (te1, tr1, _, _, by1), (te2, tr2, res, cross, by2) = results
        te1, tr1, te2, tr2 = (x.real for x in (te1, tr1, te2, tr2))
        by1, by2 = _real(by1, lambda v: v), _real(by2, lambda v: v)
        tol = mpmath.mpf(10) ** (-dps)
        floor = system.with_precision(wp).floor(a[3], mp_namespace(wp))
        pairs = [(te1, te2), (tr1, tr2)] + (list(zip(by1, by2)) if by2 is not None else [])
        if not (all(abs(x - y) <= tol * max(1, abs(y)) for x, y in pairs)
                and te2 >= floor * (1 - tol) and tr2 >= -tol):
            raise ConvergenceError(
                f"rf-dsm flow at tau={float(tau):g}, dps={dps}: the Talbot orders {orders} disagree "
                f"(test {mpmath.nstr(te1, 12)} vs {mpmath.nstr(te2, 12)}); use a smaller tau or a larger lam")
        return te2, tr2, res, cross.real, by2


def check_flow_mp_cost(system, dps: int) -> None:
    """Refuse a dps gradient-flow solve that would run for more than ``_MP_MAX_SECONDS``.

    Its cost is one two-point term per population node for about a quarter of the (2M - 1)^2
    node pairs of each Talbot order: seconds for isotropic and few-atom spectra, hours for the
    thousands of quadrature nodes of a continuum law at high precision.
    """
    wp = _mp_working_dps(dps)
    with mpmath.workdps(wp):
        nodes = len(getattr(system.with_precision(wp), "nodes", [1]))
    seconds = _MP_PAIR_SECONDS * nodes * sum((2 * M - 1) ** 2 / 4 for M in _mp_orders(dps))
    if seconds > _MP_MAX_SECONDS:
        raise ParameterError(
            "dps", f"None (double precision) with a finite tau for this spectrum: its {nodes}-node population "
            f"law makes the {dps}-digit gradient-flow solve take about {seconds / 3600:.1f} h per point", dps)


def _mp_orders(dps: int) -> tuple[int, int]:
    low = int(math.ceil((dps + 2) / 0.6))
    return low, low + 4


def _mp_working_dps(dps: int) -> int:
    # the double sums W^T Y W carry |W|^2 up to e^{4M/5} ~ 10^{0.35 M}
    return dps + int(math.ceil(0.35 * _mp_orders(dps)[1])) + 10


def flow_mp_is_ridge(tau, lam, dps: int) -> bool:
    """e^{-tau (s + lam)} <= e^{-tau lam} is below 10^{-dps - 5}: the ridge solution is exact."""
    return bool(tau * lam > (dps + 5) * math.log(10))


def _flow_terms_mp(system, tau, a, a_double, M, wp):
    """(test, train, residual, cross, by eigenvalue or None) of order M at wp digits (mpmath numbers).

    The double node solutions start Newton in mpmath at the nodes with Im zeta <= 0; the others
    are their conjugates (zeta_{-k} = conj(zeta_k) for a real ridge).
    """
    u_d, _ = _node_solutions(system, a_double[4] + talbot(float(tau), M)[0], a_double, M)
    with mpmath.workdps(wp):
        f = mp_namespace(wp)
        sys_mp = system.with_precision(wp)
        xi, w = talbot_mp(tau, M)
        zeta = a[4] + xi
        tol = mpmath.mpf(10) ** (5 - wp)
        n = zeta.size
        u = [np.empty(n, dtype=object) for _ in range(3)]
        worst = mpmath.mpf(0)
        for j in range(M):
            x = [mpmath.mpc(v[j]) for v in u_d]
            aj = a[:4] + (zeta[j],) + a[5:]
            for _ in range(60):
                T = sys_mp.terms(x, aj, f)
                fn = max(abs(v) for v in T[:3])
                if fn <= tol:
                    break
                x = [v - dv for v, dv in zip(x, solve3(T[3:], T[:3]))]
            else:
                raise ConvergenceError(f"rf-dsm flow: mpmath refinement of a Talbot node failed ({float(fn):.3g})")
            worst = max(worst, fn)
            for v, xv in zip(u, x):
                v[j], v[n - 1 - j] = xv, mpmath.conj(xv)
        test, train, cross, by = _assemble(sys_mp, u, zeta, w / xi, a, f)
        return test, train, float(worst), cross, by


def _assemble(system, u, zeta, W, args, f):
    """Test and train errors, the cross term and the test error per eigenvalue (None unless
    :func:`reports_by_eigenvalue`) from the node solutions (numpy arrays or object arrays of mpc).

    The per-eigenvalue errors use the node functions (c_t^T R yhat and the two-point term
    "along ell", derivations/rf_dsm_flow.py) at each distinct eigenvalue, unaveraged.
    """
    psi_n, psi_p, iota, t, lam, mu1, mus2, mue2 = args
    pars, coef = (psi_n, psi_p, iota, t), (mu1, mus2, mue2)
    per = reports_by_eigenvalue(system)
    if f.name == "mpmath":
        # node by node: numpy object arrays mixed with mpmath scalars take mpmath's slow
        # conversion path (it formats the whole array into an error message per operation)
        rows = [_one_point(system, [v[k] for v in u], zeta[k], pars, coef, f, per) for k in range(zeta.size)]
        y, dLl, c, cr, cn = (np.array(col, dtype=object) for col in zip(*rows))
        cn = cn.T if per else None
        T, Tn = _two_point_mp(system, u, zeta, pars, coef, f, per)
    else:
        y, dLl, c, cr, cn = _one_point(system, u, zeta, pars, coef, f, per)
        T, Tn = two_point(system, u, zeta, pars, coef, f, per)
    n = zeta.size
    off = ~np.eye(n, dtype=bool)
    ia, ib = np.nonzero(off)
    Y = np.empty((n, n), dtype=zeta.dtype)
    Y[ia, ib] = (zeta[ib] * y[ib] - zeta[ia] * y[ia]) / (zeta[ib] - zeta[ia])
    diag = np.arange(n)
    Y[diag, diag] = y - zeta * dLl  # yhat^T R U R yhat = y - zeta yhat^T R^2 yhat
    test = 1 - 2 * np.sum(W * c) + W @ T @ W
    train = 1 - 2 * np.sum(W * y) + W @ Y @ W
    # the empirical-score cross term is linear in b: its Talbot sum (derivation step 14)
    cross = np.sum(W * cr)
    by = None if not per else [1 - 2 * np.sum(W * cn[k]) + W @ Tn[k] @ W for k in range(len(cn))]
    return test, train, cross, by


def _node_expect(system, fun, *rest, f, per):
    """(E_H[fun], fun at every node or None): the average, and with ``per`` its summands."""
    if not per:
        return system.expect(fun, *rest, f=f), None
    values = system.node_values(fun, *rest, f=f)
    return system.weigh(values), values


def _one_point(system, u, zeta, pars, coef, f, per=False):
    """yhat^T R yhat, yhat^T R^2 yhat (as dL/dlam), c_t^T R yhat, the empirical cross term and
    (with ``per``) c_t^T R yhat along each eigenvalue."""
    a = (*pars, zeta, *coef)
    L, dLl, _ = loss_derivatives(system, u, a, f, solve3)
    c, cn = _node_expect(system, _eq.node_test_cross, *u, zeta, *pars, *coef, f=f, per=per)
    return 1 - L, dLl, c, system.empirical_cross(u, a, f), cn


def _two_point_mp(system, u, zeta, pars, coef, f, per=False):
    """:func:`two_point` in mpmath, pair by pair, using T_ij = T_ji and T at the conjugate pair
    = conj(T_ij) (a real ridge): about a quarter of the n^2 pairs are evaluated."""
    n = zeta.size
    T = np.empty((n, n), dtype=object)
    Tn = np.empty((len(system.nodes), n, n), dtype=object) if per else None
    for i in range(n):
        for j in range(i, n):
            ci, cj = n - 1 - j, n - 1 - i  # the conjugate pair, ordered
            if (ci, cj) < (i, j):
                v = mpmath.conj(T[ci, cj])
                vn = [mpmath.conj(x) for x in Tn[:, ci, cj]] if per else None
            else:
                pair = (*(x[i] for x in u), zeta[i], *(x[j] for x in u), zeta[j], *pars, *coef)
                moments = system.expect(_eq.node_moments, *pair, f=f)
                v, vn = _node_expect(system, _eq.node_two_point, *moments, *pair, f=f, per=per)
            T[i, j] = T[j, i] = v
            if per:
                Tn[:, i, j] = Tn[:, j, i] = vn
    return T, Tn


def two_point(system, u, zeta, pars, coef, f, per=False):
    """yhat^T R(zeta_i) Sigma_t R(zeta_j) yhat for all pairs (i, j) of nodes.

    The moments m_j = E_H[ell^j s_i s_j] first, then the two-point term of every eigenvalue
    averaged over H (for isotropic data H = delta_1).  The formula has no singularity at i = j,
    so the diagonal comes from it too (tests check it against the one-point identity
    dL/dgam - 1 + 2 c_t^T R yhat, and against the Marchenko-Pastur form of
    ``derivations/rf_dsm_flow.py``, which is far more sensitive to rounding in the node
    solutions: 1e-9 against 1e-16 here).
    """
    n = zeta.size
    ia, ib = (x.ravel() for x in np.meshgrid(np.arange(n), np.arange(n), indexing="ij"))
    ua, ub = [v[ia] for v in u], [v[ib] for v in u]
    pair = (*ua, zeta[ia], *ub, zeta[ib], *pars, *coef)
    moments = system.expect(_eq.node_moments, *pair, f=f)
    vals, per_node = _node_expect(system, _eq.node_two_point, *moments, *pair, f=f, per=per)
    return np.asarray(vals).reshape(n, n), None if per_node is None else np.asarray(per_node).reshape(-1, n, n)
