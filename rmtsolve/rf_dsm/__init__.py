"""Random-features denoising score matching (conventions sections 1, 1.4, 1.5).

The flow of the subpackage, from the mathematics to the interfaces:

- :mod:`.equations`: the derived system (``derivations/rf_dsm.py``) for isotropic data and
  in node form over a population law of Sigma (:mod:`rmtsolve.population`);
- :mod:`.numerics`: Newton steps, continuation and the error assembly shared by all solvers;
- :mod:`.solver`: :func:`rf_dsm`, the converged ridge solution (double and mpmath);
- :mod:`.flow`: errors after a gradient-flow time tau (``derivations/rf_dsm_flow.py``);
- :mod:`.spectrum`: :func:`feature_spectrum`, the spectral law of U = Phi^T Phi/(n m);
- :mod:`.integral`: :func:`score_error_integral`, diffusion-time integrals of the score error;
- :mod:`.optimize`: :func:`optimize_rf_dsm`, the optimal ridge or stopping time;
- :mod:`.sim`: :func:`simulate_rf_dsm`, finite-d simulations with the real nonlinear features.
"""
from .solver import RFDSMResult, rf_dsm

__all__ = ["RFDSMResult", "rf_dsm", "feature_spectrum", "score_error_integral", "simulate_rf_dsm",
           "optimize_rf_dsm"]


def __getattr__(name: str):
    if name == "feature_spectrum":
        from .spectrum import feature_spectrum
        return feature_spectrum
    if name == "score_error_integral":
        from .integral import score_error_integral
        return score_error_integral
    if name == "optimize_rf_dsm":
        from .optimize import optimize_rf_dsm
        return optimize_rf_dsm
    if name == "simulate_rf_dsm":
        from .sim import simulate_rf_dsm
        return simulate_rf_dsm
    raise AttributeError(f"module 'rmtsolve.rf_dsm' has no attribute {name!r}")
