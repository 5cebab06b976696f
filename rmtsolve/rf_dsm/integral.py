"""Diffusion-time integrals of the RF-DSM score error (conventions section 1.4).

int_{t0}^{T} w(t) score_error(t) dt with one random-features score trained at every t (as
in conventions section 1).  score_error(t) = D_t E||s_A(y) - s*(y)||^2 / d, so the default weight
w(t) = 1/D_t = 1/(1 - e^{-2t}) gives int E||s_A - s*||^2/d dt, the per-dimension bound on
KL(data || generated) of the reverse OU SDE with the learned score (Girsanov, diffusion
coefficient sqrt(2)).  Gauss-Legendre in log t (the integrand varies on the scale t near
t0); two orders must agree, else ConvergenceError.
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np

from .._results import ShortRepr
from ..errors import ConvergenceError, ParameterError, check_integer, check_scalar
from ..population import parse_spectrum
from .solver import T_MAX, rf_dsm


@dataclasses.dataclass(frozen=True, repr=False)
class ScoreIntegral(ShortRepr):
    """value = int_{t0}^{T} w(t) score_error(t) dt; error = |difference of two quadrature orders|."""

    value: float
    error: float
    params: dict

    def as_dict(self) -> dict:
        return {"score_error_integral": self.value, "quadrature_error": self.error, "params": self.params}


def kl_weight(t):
    """w(t) = 1/(1 - e^{-2t}): turns score_error into E||s_A - s*||^2/d."""
    return 1.0 / -np.expm1(-2 * np.asarray(t, dtype=float))


def score_error_integral(*, psi_n: float, psi_p: float, m, lam: float, t0: float, T: float,
                         activation="relu", weight=None, nodes: int = 24, rtol: float = 1e-7,
                         spectrum="isotropic") -> ScoreIntegral:
    """int_{t0}^{T} w(t) score_error(t) dt (default w = :func:`kl_weight`); scalars only.

    ``spectrum`` as in :func:`rmtsolve.rf_dsm`; score_error = test_error - test_error_floor
    = D E||s_A - s*||^2/d with s*(y) = -Sigma_t^{-1} y (conventions 1.5), so the default weight still
    gives int E||s_A - s*||^2/d dt.
    """
    for name, v in (("psi_n", psi_n), ("psi_p", psi_p), ("lam", lam)):
        check_scalar(name, v, low=0, low_open=name != "lam", allow_inf=name == "psi_p")
    check_scalar("m", m, low=1, allow_inf=True, allowed="an integer >= 1 or inf")
    t0 = check_scalar("t0", t0, low=0, low_open=True)
    T = check_scalar("T", T, low=0, high=T_MAX, low_open=True)
    nodes = check_integer("nodes", nodes, low=2, high=10_000)
    check_scalar("rtol", rtol, low=0, high=1, low_open=True)
    if not T > t0:
        raise ParameterError("T", f"> t0 = {t0:g}", T)
    w = kl_weight if weight is None else weight
    if not callable(w):
        raise ParameterError("weight", "a callable w(t) (numpy-vectorised) or None", weight)
    lo, hi = math.log(t0), math.log(T)

    def quad(n):
        u, q = np.polynomial.legendre.leggauss(n)
        t = np.exp(lo + (hi - lo) * (u + 1) / 2)
        s = rf_dsm(psi_n=psi_n, psi_p=psi_p, m=m, t=t, lam=lam, activation=activation,
                   spectrum=spectrum).score_error
        vals = np.asarray(w(t), dtype=float) * s * t  # dt = t d(log t)
        if not np.all(np.isfinite(vals)):
            raise ParameterError("weight", "finite on [t0, T]", None)
        return float(np.sum(q * vals) * (hi - lo) / 2)

    a, b = quad(nodes), quad(2 * nodes)
    if abs(a - b) > rtol * max(abs(b), 1e-300):
        raise ConvergenceError(f"score-error integral: quadrature orders {nodes} and {2 * nodes} differ by "
                               f"{abs(a - b):.3g} (value {b:.6g}); increase nodes or t0")
    params = dict(psi_n=psi_n, psi_p=psi_p, m=m, lam=lam, t0=t0, T=T, activation=str(activation),
                  spectrum=parse_spectrum(spectrum).label,
                  weight="1/(1 - exp(-2 t))" if weight is None else getattr(weight, "__name__", "callable"))
    return ScoreIntegral(b, abs(a - b), params)
