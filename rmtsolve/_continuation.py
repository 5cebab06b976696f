"""Adaptive per-point continuation of a log-scale parameter (ridge, or Im z) down to a target."""
from __future__ import annotations

import numpy as np


def descend(log_start, log_target, u, solve, on_stall, *, step=1.0, max_step=2.0, grow=2.0,
            min_step=1e-4):
    """Move each point's log10-parameter from ``log_start`` to ``log_target``.

    ``solve(idx, values, u_sub) -> (u_new, res, ok, iterations)`` solves the points ``idx`` at
    parameter ``10**values`` from the unknowns ``u_sub``.  A point whose solve fails keeps its
    last solution and divides its step by 4; success multiplies it by ``grow`` (at most
    ``max_step``).  ``on_stall(index, log_value, res)`` is called (and must raise) when a
    step falls below ``min_step``.  Returns (u, residuals, total iterations).
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
        if np.any(steps < min_step):
            bad = int(np.flatnonzero(steps < min_step)[0])
            on_stall(bad, log_value[bad], res[bad])
