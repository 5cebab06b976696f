"""RF-DSM errors after a finite gradient-flow time tau (SPEC section 1.4).

Time convention: B(tau) = B_ridge (I - exp(-tau (U + lam))) with U = Phi^T Phi/(n m), i.e.
the flow dB/dtau = -grad L/2 of SPEC 1.4 with time in units of d (tau_SPEC = d tau), so that
tau stays O(1) as d -> inf (the same convention as for the linear diffusion model);
tau -> inf gives the ridge solution.

b(tau) = f(U) yhat is the inverse Laplace transform at tau of xi -> R(lam + xi) yhat / xi,
evaluated with the fixed Talbot contour (Abate & Valko 2004) on ``_NODES`` symmetric nodes.
Each node needs the RF-DSM fixed point at a complex ridge (one vectorised continuation);
the errors then combine one-point terms and the derived two-point term
(``derivations/rf_dsm_flow.py``) over all pairs of nodes.
"""
from __future__ import annotations

import numpy as np

from ._backend import NUMPY
from ._generated import rf_dsm_flow as _eq
from .errors import ConvergenceError
from .rf_dsm import MATH, _continue_point, _loss_derivatives, _solve3
from .rf_dsm_spectrum import continue_complex

_ORDERS = (12, 16)  # Talbot parameters M (2M - 1 nodes): ~0.6 M digits, rounding ~ e^{2M/5}
_AGREE = 1e-6  # the two orders must agree to this (relative)


def talbot(tau: float, M: int = _ORDERS[-1]):
    """Nodes xi_k and weights W_k with sum_k W_k F(xi_k) ~ (1/2 pi i) int e^{tau xi} F(xi) dxi."""
    k = np.arange(-(M - 1), M)
    theta = k * np.pi / M
    r = 2 * M / (5 * tau)
    with np.errstate(divide="ignore", invalid="ignore"):
        cot = np.cos(theta) / np.sin(theta)
        xi = np.where(k == 0, r, r * theta * (cot + 1j))
        dxi = np.where(k == 0, 1j * r, r * (cot - theta / np.sin(theta) ** 2 + 1j))
    return xi, np.exp(tau * xi) * dxi * (np.pi / M) / (2j * np.pi)


def flow_errors(tau: float, args: tuple) -> tuple[float, float, float]:
    """(test_error, train_error, residual) at one point; args as in rf_dsm's solver.

    Evaluated at two Talbot orders; disagreement (rounding amplified by e^{2M/5} and, for
    lam = 0 with p > n m at large tau, by cancellations of the kernel of U in the
    deterministic equivalents) raises ConvergenceError instead of returning a number.
    """
    (te1, tr1, r1), (te2, tr2, r2) = (_flow_errors(tau, args, M) for M in _ORDERS)
    floor = float(np.exp(-2 * args[3]))
    if (abs(te1 - te2) > _AGREE * max(1.0, abs(te2)) or abs(tr1 - tr2) > _AGREE * max(1.0, abs(tr2))
            or te2 < floor * (1 - 1e-9) or tr2 < -1e-9):
        raise ConvergenceError(
            f"rf-dsm flow at tau={tau:g}, lam={args[4]:.3g}: the Talbot evaluation is not accurate here "
            f"(orders {_ORDERS} give test {te1:.6g} vs {te2:.6g}); use a smaller tau or a ridge lam > 0")
    return te2, tr2, max(r1, r2)


def _flow_errors(tau: float, args: tuple, M: int) -> tuple[float, float, float]:
    psi_n, psi_p, iota, t, lam, mu1, mus2, mue2 = args
    xi, w = talbot(tau, M)
    W = w / xi  # F(xi) = R(lam + xi) yhat / xi
    zeta = lam + xi
    # Fixed points at the complex ridges: zeta_{-k} = conj(zeta_k); solve at lam = -(x + i eta)
    # with eta > 0 (Im zeta < 0) and conjugate for the other half; the k = 0 ridge is real.
    neg = zeta[: M - 1]
    pars, coef = (psi_n, psi_p, iota, t), (mu1, mus2, mue2)
    scale = (1 + mu1**2 + mus2 + mue2) * (1 + psi_p) * (1 + psi_p / psi_n)
    u_neg, res = continue_complex(-neg.real, -neg.imag, pars, coef, scale)
    u0, res0, _, ok = _continue_point(args[:4] + (float(zeta[M - 1].real),) + args[5:], MATH, 1e-13)
    if not ok:
        raise ConvergenceError(f"rf-dsm flow: real Talbot node did not converge (residual {res0:.3g})")
    u = [np.concatenate([un, [complex(v)], np.conj(un[::-1])]) for un, v in zip(u_neg, u0)]
    a = (psi_n, psi_p, iota, t, zeta, mu1, mus2, mue2)
    L, dLl, dLg = _loss_derivatives(u, a, NUMPY, _solve3)
    y = 1 - L  # yhat^T R yhat
    c = _eq.test_cross(*u, zeta, *pars, *coef, _f=NUMPY)  # c_t^T R yhat
    # Two-point terms for all pairs; the diagonal from the one-point derivatives.
    ua = [v[:, None] for v in u]
    ub = [v[None, :] for v in u]
    with np.errstate(divide="ignore", invalid="ignore"):
        T = _eq.two_point(*ua, zeta[:, None], *ub, zeta[None, :], *pars, *coef, _f=NUMPY)
        Y = (zeta[None, :] * y[None, :] - zeta[:, None] * y[:, None]) / (zeta[None, :] - zeta[:, None])
    diag = np.arange(zeta.size)
    T[diag, diag] = dLg - 1 + 2 * c  # yhat^T R Sigma_t R yhat at equal ridges
    Y[diag, diag] = y - zeta * dLl  # yhat^T R U R yhat = y - zeta yhat^T R^2 yhat
    test = 1 - 2 * np.sum(W * c) + W @ T @ W
    train = 1 - 2 * np.sum(W * y) + W @ Y @ W
    for name, v in (("test", test), ("train", train)):
        if not np.isfinite(v) or abs(v.imag) > 1e-6 * max(1.0, abs(v.real)):
            raise ConvergenceError(f"rf-dsm flow: {name} error not real/finite ({v:.3g}); tau too small or large?")
    return float(test.real), float(train.real), max(res, res0)
