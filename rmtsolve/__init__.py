"""rmtsolve: precise high-dimensional learning curves of diffusion models.

Conventions (every normalisation, the definition of every output, the spectrum syntax, the
command-line contract): docs/conventions.md; "conventions section N" in docstrings refers to it.

Public entry points (imported lazily so that ``import rmtsolve`` stays fast):

- :func:`rf_dsm` -- random-features denoising score matching (conventions section 1);
- :func:`ldm` -- linear diffusion models (conventions section 2);
- :func:`feature_spectrum` -- spectral law of the RF-DSM feature matrix U;
- :func:`score_error_integral` -- diffusion-time integral of the score error (KL bound);
- :func:`optimize_rf_dsm` -- the ridge or training time minimising the RF-DSM test error;
- :func:`coefficients` -- Gaussian-equivalence coefficients of an activation;
- :func:`parse_spectrum`, :class:`Spectrum` -- population spectra of the data covariance;
- :class:`MarchenkoPastur`, :class:`GeneralizedMarchenkoPastur` -- spectral laws;
- :class:`ParameterError`, :class:`ConvergenceError`.
"""
from __future__ import annotations

import importlib

from .errors import ConvergenceError, ParameterError

# Eager: these functions share their module's name, which a submodule import would
# otherwise bind on the package instead of the function.
from .ldm import ldm
from .rf_dsm.solver import rf_dsm

__version__ = "0.1.0"

_LAZY = {
    "simulate_rf_dsm": "rmtsolve.rf_dsm.sim",
    "feature_spectrum": "rmtsolve.rf_dsm.spectrum",
    "score_error_integral": "rmtsolve.rf_dsm.integral",
    "optimize_rf_dsm": "rmtsolve.rf_dsm.optimize",
    "parse_spectrum": "rmtsolve.population",
    "Spectrum": "rmtsolve.population",
    "simulate_ldm": "rmtsolve.ldm_sim",
    "coefficients": "rmtsolve.coeffs",
    "resolve_activation": "rmtsolve.activations",
    "MarchenkoPastur": "rmtsolve.spectral",
    "GeneralizedMarchenkoPastur": "rmtsolve.spectral",
}

__all__ = ["ConvergenceError", "ParameterError", "ldm", "rf_dsm", *_LAZY]


def __dir__():
    return sorted(set(globals()) | set(_LAZY))


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'rmtsolve' has no attribute {name!r}")
