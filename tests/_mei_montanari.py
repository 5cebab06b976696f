"""Mei & Montanari (arXiv 1908.05355) random-features ridge risk, transcribed independently
of rmtsolve's derivation (from the paper's formulas) for the m = 1 cross-check."""
import warnings

import numpy as np
from scipy.optimize import fsolve


def nu_solve(psi1, psi2, zeta, xi):
    """nu1, nu2 at imaginary xi, continued from large Im xi down to the target."""
    def eqs(v, x):
        n1, n2 = v[0] + 1j * v[1], v[2] + 1j * v[3]
        r1 = n1 - psi1 / (-x - n2 - zeta**2 * n2 / (1 - zeta**2 * n1 * n2))
        r2 = n2 - psi2 / (-x - n1 - zeta**2 * n1 / (1 - zeta**2 * n1 * n2))
        return [r1.real, r1.imag, r2.real, r2.imag]

    ims = np.geomspace(100.0, xi.imag, 200)
    v = np.array([0, psi1 / 100, 0, psi2 / 100])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # xtol below attainable: harmless here
        for y in ims:
            v = fsolve(eqs, v, args=(1j * y,), xtol=1e-14)
    return v[0] + 1j * v[1], v[2] + 1j * v[3]


def risk(psi1, psi2, lam_bar, zeta, F1sq, Fstar_sq, tau_sq):
    xi = 1j * np.sqrt(psi1 * psi2 * lam_bar)
    n1, n2 = nu_solve(psi1, psi2, zeta, xi)
    chi = (n1 * n2).real
    z2, z4, z6 = zeta**2, zeta**4, zeta**6
    E0 = (-chi**5 * z6 + 3 * chi**4 * z4 + (psi1 * psi2 - psi1 - psi2 + 1) * chi**3 * z6
          - 2 * chi**3 * z4 - 3 * chi**3 * z2 + (psi1 + psi2 - 3 * psi1 * psi2 + 1) * chi**2 * z4
          + 2 * chi**2 * z2 + chi**2 + 3 * psi1 * psi2 * chi * z2 - psi1 * psi2)
    E1 = psi2 * chi**3 * z4 - psi2 * chi**2 * z2 + psi1 * psi2 * chi * z2 - psi1 * psi2
    E2 = (chi**5 * z6 - 3 * chi**4 * z4 + (psi1 - 1) * chi**3 * z6 + 2 * chi**3 * z4
          + 3 * chi**3 * z2 - (psi1 + 1) * chi**2 * z4 - 2 * chi**2 * z2 - chi**2)
    return F1sq * E1 / E0 + (tau_sq + Fstar_sq) * E2 / E0 + Fstar_sq


def rf_dsm_m1_test_error(psi_n, psi_p, t, lam, mu1, mustar):
    """RF-DSM (m = 1) test error through the REFERENCES mapping to Mei-Montanari."""
    D = 1 - np.exp(-2 * t)
    zeta = mu1 / mustar
    lam_mm = lam / psi_p
    return risk(psi_p, psi_n, lam_mm / mustar**2, zeta, D, 0.0, np.exp(-2 * t)) + np.exp(-2 * t)
