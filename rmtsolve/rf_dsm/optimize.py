"""Optimal ridge and optimal stopping time of RF-DSM: minimise the theory's test error.

The test error is a smooth function of log(lam) (converged ridge) or of log(tau) (gradient
flow at a fixed ridge).  Each point is minimised in two stages: a scan of a logarithmic grid
(one vectorised solve for lam; point by point for tau), then bounded Brent's method on the
bracket around the best grid value.  A minimum at an end of the range is a boundary optimum,
reported as such: lam -> 0 (the ridgeless solution, lam = 0, is compared too) or lam -> inf
(test error -> 1, predicting 0), tau -> inf (the converged solution at that ridge is best) or
tau -> 0.  Points that fail become NaN rows (``converged`` False), as in sweeps.
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np
from scipy import optimize

from .._results import ShortRepr
from ..errors import ConvergenceError, ParameterError, check_range
from .solver import rf_dsm

LAM_RANGE = (1e-10, 1e4)  # scanned range of the ridge (log grid)
TAU_RANGE = (1e-3, 1e4)  # scanned range of the gradient-flow time
_SCAN = {"lam": 57, "tau": 36}  # grid points of the first stage
_XTOL = 1e-6  # Brent's tolerance in log10 of the minimiser


@dataclasses.dataclass(frozen=True, repr=False)
class Optimum(ShortRepr):
    """Minimum of the test error over ``over`` at each point (arrays of the points' shape).

    Attributes
    ----------
    argmin : ndarray
        The minimising lam or tau (0 for lam -> 0, inf for lam -> inf or tau -> inf).
    test_error, train_error : ndarray
        The errors there.
    boundary : ndarray of str
        "" for an interior minimum, else "lam -> 0", "lam -> inf", "tau -> 0" or "tau -> inf".
    converged : ndarray of bool
        False where the solver failed (NaN entries).
    params : dict
        The inputs (the optimised parameter excluded).
    """

    argmin: np.ndarray
    test_error: np.ndarray
    train_error: np.ndarray
    boundary: np.ndarray
    converged: np.ndarray
    over: str
    params: dict

    def as_dict(self) -> dict:
        return {"over": self.over, "argmin": self.argmin, "test_error": self.test_error,
                "train_error": self.train_error, "boundary": self.boundary, "converged": self.converged,
                "params": self.params}


def optimize_rf_dsm(*, over: str = "lam", psi_n, psi_p, m, t, lam=None, activation="relu",
                    spectrum="isotropic") -> Optimum:
    """Minimise the RF-DSM test error over the ridge (``over="lam"``) or the training time.

    Parameters
    ----------
    over : {"lam", "tau"}
        "lam": the converged ridge solution, lam scanned on [1e-10, 1e4] (and lam = 0); "tau":
        the gradient-flow time on [1e-3, 1e4] at the given ``lam`` (and tau = inf).
    psi_n, psi_p, m, t, activation, spectrum
        As in :func:`rmtsolve.rf_dsm` (arrays broadcast; psi_p finite: at psi_p = inf the
        errors depend on neither lam nor tau).
    lam : float or array
        The ridge for over="tau" (required there; not used for over="lam").

    Returns
    -------
    Optimum
    """
    if over not in ("lam", "tau"):
        raise ParameterError("over", '"lam" or "tau"', over)
    if over == "tau" and lam is None:
        raise ParameterError("lam", "given (>= 0) when optimising over tau", None)
    if over == "lam" and lam is not None:
        raise ParameterError("lam", "omitted when optimising over lam", lam)
    for name, v in (("psi_n", psi_n), ("psi_p", psi_p), ("m", m), ("t", t)) + ((("lam", lam),) if lam is not None else ()):
        check_range(name, v, low=0, allow_inf=name in ("psi_p", "m"))  # types and shapes; ranges below
    try:
        np.broadcast_shapes(*(np.shape(v) for v in (psi_n, psi_p, m, t, lam) if v is not None))
    except ValueError:
        raise ParameterError("psi_n, psi_p, m, t, lam", "arrays of shapes that broadcast", None) from None
    if np.any(np.isinf(np.asarray(psi_p, dtype=float))):
        raise ParameterError("psi_p", "finite for an optimisation (at psi_p = inf the errors depend on "
                             "neither lam nor tau)", float("inf"))
    base = dict(psi_n=psi_n, psi_p=psi_p, m=m, t=t) | ({} if lam is None else {"lam": lam})
    arrays = np.broadcast_arrays(*(np.asarray(v, dtype=float) for v in base.values()))
    shape = arrays[0].shape
    cols = {k: a.ravel() for k, a in zip(base, arrays)}
    rf_dsm(**{k: v[:1] for k, v in cols.items()} | ({"lam": 1.0} if over == "lam" else {}),
           activation=activation, spectrum=spectrum)  # validates every input once
    n = cols["psi_n"].size
    out = {k: np.full(n, np.nan) for k in ("argmin", "test_error", "train_error")}
    boundary = np.full(n, "", dtype=object)
    converged = np.zeros(n, bool)
    kw = dict(activation=activation, spectrum=spectrum)
    if over == "lam":
        _over_lam(cols, kw, out, boundary, converged)
    else:
        _over_tau(cols, kw, out, boundary, converged)
    params = {k: (v.reshape(shape) if shape else v[0]) for k, v in cols.items()}
    params |= {"activation": str(activation), "spectrum": spectrum if isinstance(spectrum, str) else "array"}

    def back(x):
        return x.reshape(shape) if shape else x[0]

    return Optimum(back(out["argmin"]), back(out["test_error"]), back(out["train_error"]), back(boundary),
                   back(converged), over, params)


def _over_lam(cols, kw, out, boundary, converged):
    n = cols["psi_n"].size
    grid = np.geomspace(*LAM_RANGE, _SCAN["lam"])
    pts = {k: np.repeat(v, grid.size) for k, v in cols.items()}
    scan = rf_dsm(**pts, lam=np.tile(grid, n), on_error="nan", **kw)
    te = np.asarray(scan.test_error, dtype=float).reshape(n, grid.size)
    for i in range(n):
        pt = {k: float(v[i]) for k, v in cols.items()}
        row = te[i]
        if not np.any(np.isfinite(row)):
            continue
        j = int(np.nanargmin(row))
        if j == grid.size - 1:
            # still falling at lam = 1e4: the test error tends to 1 from below as lam -> inf
            out["argmin"][i], boundary[i] = math.inf, "lam -> inf"
            out["test_error"][i], out["train_error"][i] = 1.0, 1.0
            converged[i] = True
            continue
        if j == 0:
            try:
                r0 = rf_dsm(**pt, lam=0.0, **kw)
                if float(r0.test_error) <= row[0]:
                    out["argmin"][i], boundary[i] = 0.0, "lam -> 0"
                    out["test_error"][i], out["train_error"][i] = float(r0.test_error), float(r0.train_error)
                    converged[i] = True
                    continue
            except (ParameterError, ConvergenceError):  # ridgeless divergent at p = n m
                pass
        lo, hi = math.log10(grid[max(j - 1, 0)]), math.log10(grid[min(j + 1, grid.size - 1)])
        _brent(lambda x: rf_dsm(**pt, lam=10.0 ** x, **kw), lo, hi, i, out, converged, "lam")


def _over_tau(cols, kw, out, boundary, converged):
    n = cols["psi_n"].size
    grid = np.geomspace(*TAU_RANGE, _SCAN["tau"])
    for i in range(n):
        pt = {k: float(v[i]) for k, v in cols.items()}
        try:
            scan = rf_dsm(**pt, tau=grid, on_error="nan", **kw)
            conv = rf_dsm(**pt, **kw)
        except (ParameterError, ConvergenceError):
            continue
        row = np.asarray(scan.test_error, dtype=float)
        if not np.any(np.isfinite(row)):
            continue
        j = int(np.nanargmin(row))
        if float(conv.test_error) <= np.nanmin(row) or j == grid.size - 1:
            out["argmin"][i], boundary[i] = math.inf, "tau -> inf"
            out["test_error"][i], out["train_error"][i] = float(conv.test_error), float(conv.train_error)
            converged[i] = True
            continue
        if j == 0:
            boundary[i] = "tau -> 0"
        lo, hi = math.log10(grid[max(j - 1, 0)]), math.log10(grid[min(j + 1, grid.size - 1)])
        _brent(lambda x: rf_dsm(**pt, tau=10.0 ** x, **kw), lo, hi, i, out, converged, "tau")


def _brent(solve, lo, hi, i, out, converged, name):
    """Bounded Brent on [lo, hi] in log10 of the parameter; records the minimum of point i."""
    cache = {}

    def f(x):
        if x not in cache:
            cache[x] = solve(x)
        return float(cache[x].test_error)

    try:
        res = optimize.minimize_scalar(f, bounds=(lo, hi), method="bounded", options={"xatol": _XTOL})
    except (ParameterError, ConvergenceError):
        return
    best = cache[res.x]
    out["argmin"][i] = 10.0 ** res.x
    out["test_error"][i], out["train_error"][i] = float(best.test_error), float(best.train_error)
    converged[i] = bool(np.isfinite(out["test_error"][i]))
