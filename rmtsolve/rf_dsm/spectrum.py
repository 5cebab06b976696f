"""Spectral law of the RF-DSM feature matrix U = Phi^T Phi / (n m) (conventions section 1.4).

U sets the time scales of gradient-flow training.  Its resolvent (U - z)^{-1} is the ridge
resolvent at the complex ridge lam = -z, so its Stieltjes transform
s_U(z) = tr((U - z)^{-1}) / p is the derived RF-DSM fixed point evaluated at lam = -z
(``derivations/rf_dsm.py``, step 8): no new equation is typed here.

The physical branch is reached by continuation from large Im z (where s_U ~ -1/z, i.e.
k0 = k1 = G = 1) down to the target; every point keeps Im s_U > 0 and Im(z s_U) > 0.  For real
x the boundary value s_U(x + i0) is evaluated at height ``eta = 1e-9 * scale`` and ``density``
is the continuous part, (Im s_U - atom eta/(x^2 + eta^2))/pi: for finite m and p > n m, U has
an atom of mass 1 - n m / p at 0, whose tail at height eta is removed.
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np

from .._results import ShortRepr
from .._backend import NUMPY
from ..errors import ConvergenceError, ParameterError, check_scalar
from .equations import rf_dsm_spectrum, system_for
from .numerics import continue_complex_point, descend, newton_complex
from .solver import PSI_MAX, PSI_MIN, T_MAX, coefficient_arrays, iota_of


_SCALAR_MAX = 16  # up to this many points, one scalar continuation each (less overhead)


@dataclasses.dataclass(frozen=True, repr=False)
class FeatureSpectrum(ShortRepr):
    """Stieltjes transform and density of the spectral law of U = Phi^T Phi/(n m).

    Attributes
    ----------
    stieltjes : complex ndarray
        s_U(z) = int dmu_U(x) / (x - z) (Im s_U > 0 for Im z > 0; s(x + i0) for real x).
    density : ndarray
        Density of the continuous part at real points, Im s_U / pi less the atom's tail at the
        evaluation height (nan where z is not real).
    atom : float
        Mass of mu_U at 0: max(0, 1 - psi_n m / psi_p) for finite m, 0 for m = inf.
    residual : float
        Largest absolute residual of the fixed-point equations.
    """

    stieltjes: np.ndarray
    density: np.ndarray
    atom: float
    residual: float
    params: dict

    def as_dict(self) -> dict:
        return {"stieltjes": self.stieltjes, "density": self.density, "atom": self.atom,
                "params": self.params}


def feature_spectrum(z, *, psi_n: float, psi_p: float, m, t: float, activation="relu",
                     spectrum="isotropic") -> FeatureSpectrum:
    """Spectral law of U = Phi^T Phi / (n m) at points z (complex, Im z >= 0; or real).

    Parameters are those of :func:`rmtsolve.rf_dsm` (scalars here, ``spectrum`` included);
    z broadcasts.
    """
    for name, v in (("psi_n", psi_n), ("psi_p", psi_p), ("t", t)):
        if name == "t":
            check_scalar(name, v, low=0, low_open=True, high=T_MAX)
        else:
            check_scalar(name, v, low=PSI_MIN, high=PSI_MAX)
    check_scalar("m", m, low=1, allow_inf=True, allowed="an integer >= 1 or inf")
    iota = float(iota_of(m))
    try:
        zz = np.asarray(z, dtype=complex)
    except (TypeError, ValueError, OverflowError):  # strings, ragged lists
        raise ParameterError("z", "complex numbers (an array of one shape) with Im z >= 0", z) from None
    if not np.all(np.isfinite(zz)) or np.any(zz.imag < 0):
        raise ParameterError("z", "finite with Im z >= 0", None)
    spec = rf_dsm_spectrum(spectrum)
    system = system_for(spec)
    co, (mu1, mus2, mue2) = coefficient_arrays(activation, np.asarray(float(t)), spec.s2, None)
    c = co[0].c
    mu1, mus2, mue2 = float(mu1), float(mus2), float(mue2)
    v_t = math.exp(-2 * t) * spec.s2 - math.expm1(-2 * t)
    scale = float(c.mu0) ** 2 + mu1**2 * v_t + mus2 + mue2  # E sigma(h)^2 = mean diagonal of U
    scale *= (1 + np.sqrt(psi_p / psi_n * max(iota, 1e-300))) ** 2 * (1 + psi_p)
    params = dict(psi_n=psi_n, psi_p=psi_p, m=m, t=t, activation=c.activation, spectrum=spec.label)
    if scale == 0:  # sigma = 0 almost surely: U = 0, all its mass at 0, s(z) = -1/z exactly
        if np.any(zz == 0):
            raise ParameterError("z", "nonzero for an activation that vanishes (U = 0: all its mass at 0)", 0.0)
        s0 = -1 / zz
        density = np.where(zz.imag == 0, 0.0, np.nan)
        return FeatureSpectrum(s0 if s0.ndim else s0[()], density if density.ndim else float(density), 1.0, 0.0,
                               params)
    real = zz.imag == 0
    eta_target = np.where(real, 1e-9 * scale, zz.imag)
    pars = (psi_n, psi_p, iota, float(t))
    coef = (mu1, mus2, mue2)
    x, eta = zz.real.ravel(), eta_target.ravel()
    if x.size <= _SCALAR_MAX:
        sols = [continue_complex_point(system, float(xi), float(ei), pars + coef, scale) for xi, ei in zip(x, eta)]
        u = [np.array([sol[0][i] for sol in sols]) for i in range(3)]
        res = max((sol[1] for sol in sols), default=0.0)
    else:
        u, res = continue_complex(system, x, eta, pars, coef, scale)
    s = system.stieltjes(u, pars + (-(x + 1j * eta),) + coef, NUMPY).reshape(zz.shape)
    atom = 0.0 if iota * psi_p == 0 else max(0.0, 1 - psi_n / (iota * psi_p))  # p << n m: no atom
    # the continuous part: at height eta the atom at 0 adds atom eta/(x^2 + eta^2) to Im s_U
    e2 = eta_target.reshape(zz.shape)
    density = np.where(real, (s.imag - atom * e2 / (zz.real**2 + e2**2)) / np.pi, np.nan)
    # and its exact boundary value -atom/x in place of -atom/(x + i eta): eta, relative to the
    # spectrum's scale, is not small against x when the atom sits far below the bulk (p >> n m)
    fix = real & (zz.real != 0) & (atom > 0)
    fixed = s + atom * (1 / (zz.real + 1j * e2) - 1 / np.where(fix, zz.real, 1.0))
    s = np.where(fix, fixed.real + 1j * np.maximum(fixed.imag, 0.0), s)  # Im s >= 0: drop the rounding
    return FeatureSpectrum(s if s.ndim else s[()], density if density.ndim else float(density), atom,
                           float(res), params)


def continue_complex(system, x, eta_target, pars, coef, scale):
    """Fixed point (k0, k1, G) at lam = -(x + i eta), eta > 0, on the physical branch.

    Adaptive geometric continuation of eta from 1e3 scale down to the target at fixed x;
    returns the unknowns and the largest residual.
    """
    log_target = np.log10(eta_target)
    log_start = np.maximum(np.log10(1e3 * scale), log_target + 1)

    def solve(idx, log_eta, u_sub):
        lam = -(x[idx] + 1j * 10.0 ** log_eta)
        u_new, r, ok = newton_complex(system, u_sub, lam, pars + coef)
        return u_new, r, ok, 0

    def stall(i, log_eta, res):
        raise ConvergenceError(f"feature spectrum: continuation stalled at z = {x[i]:g} + "
                               f"{10.0 ** log_eta:.3g}i (residual {res:.3g})")

    u, res, _ = descend(log_start, log_target, [np.ones(x.size, complex) for _ in range(3)], solve, stall,
                        step=0.5, max_step=1.0, grow=1.5, min_step=1e-5)
    return u, float(res.max(initial=0.0))
