"""Shared helpers of the validation scripts: finite-size extrapolation and the optional plotting back end."""
import math

import numpy as np


def extrapolate(ds, ys, ses):
    """Weighted least-squares fit ``y = a + b/d``; returns ``a`` (the d -> inf value) and its standard error.

    Callers with another finite-size scale x pass ``1/x`` as ``ds``.
    """
    X = np.column_stack([np.ones(len(ds)), 1.0 / np.asarray(ds, float)])
    w = 1.0 / np.asarray(ses, float) ** 2
    cov = np.linalg.inv(X.T @ (X * w[:, None]))
    a, _ = cov @ (X.T @ (w * np.asarray(ys)))
    return float(a), float(math.sqrt(cov[0, 0]))


def pyplot():
    """matplotlib.pyplot on the Agg back end, or None (with a note) when the plot extra is missing."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib missing (pip install '.[plot]'): figure skipped")
        return None
    return plt
