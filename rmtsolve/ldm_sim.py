"""Finite-size simulations of linear diffusion models (conventions section 2).

:func:`simulate_ldm` draws N Gaussian samples per seed, forms the centred sample covariance
and mean, builds the trained denoisers and propagates the DDPM sampler law exactly (the
derived per-eigenvalue maps in the eigenbasis of C, no sampling noise), then evaluates the
exact Gaussian KL divergences, errors and span fraction.  :func:`monte_carlo_sampler` runs
the actual stochastic sampler with the matrix denoisers of conventions section 2, as an independent
check of the propagated law.

Sigma is taken diagonal (the model is rotation equivariant); mu is a generic direction with
||mu||^2 = d mean_norm spread evenly over the eigenvectors of Sigma (components
+-sqrt(mean_norm), signs drawn per seed).
"""
from __future__ import annotations

import dataclasses
import importlib
import math

import numpy as np
from scipy.special import logsumexp

from ._parallel import check_scaleout, map_seeds, seed_stderr
from ._results import ShortRepr
from ._generated import ldm as _eq
from ._resources import check_memory
from .errors import ParameterError, check_integer, not_real_scalar

# the package binds the name ``ldm`` to the function: take the module itself
_ldm = importlib.import_module("rmtsolve.ldm")

_F = _ldm._F
_KEYS = _ldm._KEYS + ("log_kl_data_gen_per_dim",)


@dataclasses.dataclass(frozen=True, repr=False)
class LDMSimulation(ShortRepr):
    """Means over seeds and standard errors (``*_stderr``) of the LDM outputs at finite d.

    Attributes mirror :class:`rmtsolve.ldm.LDMResult` (per-dimension KLs, totals, span
    fraction, per-step errors); ``samples`` holds the per-seed values of the scalar keys.
    """

    kl_gen_data_per_dim: float
    kl_data_gen_per_dim: float
    kl_oracle_per_dim: float
    excess_kl_per_dim: float
    span_fraction: float
    log_kl_data_gen_per_dim: float
    test_error_t: np.ndarray
    train_error_t: np.ndarray
    stderr: dict
    samples: dict
    params: dict

    def __getattr__(self, name):
        if name.endswith("_stderr") and name[:-7] in self.stderr:
            return self.stderr[name[:-7]]
        raise AttributeError(name)

    def as_dict(self) -> dict:
        d = self.params["d"]
        out = {k: getattr(self, k) for k in _KEYS}
        out.update({k + "_stderr": self.stderr[k] for k in _KEYS})
        for k in _ldm._TOTALS:
            out[k] = d * out[k + "_per_dim"]
            out[k + "_stderr"] = d * out[k + "_per_dim_stderr"]
        out["test_error_t"] = self.test_error_t
        out["train_error_t"] = self.train_error_t
        out["test_error_t_stderr"] = self.stderr["test_error_t"]
        out["train_error_t_stderr"] = self.stderr["train_error_t"]
        out["params"] = self.params
        return out


def _draw(rng, pop_lam, N, mean_norm):
    d = pop_lam.size
    # equal weight mean_norm on every eigenvector of Sigma, random signs: mu^T B mu / d is
    # then exactly mean_norm tr(B)/d for every B diagonal in that basis (the oracle) and on
    # average for B = f(C); a uniform direction gives the same mean with chi-square noise
    # that is heavy when B is (power-law spectra, 1/lambda weights)
    mu = rng.choice([-1.0, 1.0], size=d) * math.sqrt(mean_norm)
    return mu, rng.standard_normal((N, d)) * np.sqrt(pop_lam)  # the samples are mu + these


def _sample_stats(X, mean=None):
    N, d = X.shape
    # with ``mean`` the samples are mean + X, centred without forming them: fluctuations many
    # orders below the mean (tiny eigenvalues) would round away in mean + X
    xbar = X.mean(axis=0)
    Xc = X - xbar
    if mean is not None:
        xbar = mean + xbar
    c, U = np.linalg.eigh(Xc.T @ Xc / N)
    # the centred sample spans N - 1 directions: the rest is the exact kernel
    nzero = max(0, d - (N - 1))
    c[:nzero] = 0.0
    return xbar, np.maximum(c, 0.0), U


def exact_law(X, sch, lam: float, tau: float, mean=None):
    """Generated law N(m_g, U diag(v) U^T) of the sampler trained on X (rows are samples).

    With ``mean`` the samples are ``mean + X`` (kept apart so that nothing rounds away when the
    mean is far larger than the fluctuations).  Returns (m_g, log_v, c, U, maps, xbar) with
    maps the per-eigenvalue :class:`rmtsolve.ldm.Maps`.
    """
    xbar, c, U = _sample_stats(X, mean)
    mp = _ldm.maps(c, sch, lam, tau)
    k = -np.expm1(mp.log_r)
    m_g = U @ (k * (U.T @ xbar))
    return m_g, mp.log_v, c, U, mp, xbar


def _seed_task(seed_seq, *args):
    """One seed as a task of :func:`rmtsolve._parallel.map_seeds` (module level: workers unpickle it)."""
    with np.errstate(all="ignore"):  # overflow shows as inf/NaN, refused by simulate_ldm with a message
        return _one_seed(np.random.default_rng(seed_seq), *args)


def _one_seed(rng, pop_lam, N, sch, lam, tau, mean_norm, oracle, zero, oracle_delta):
    d = pop_lam.size
    mu, E = _draw(rng, pop_lam, N, mean_norm)
    _, log_v, c, U, mp, _ = exact_law(E, sch, lam, tau, mean=mu)
    U2 = U**2
    inv_l = 1.0 / pop_lam
    # mu - m_g = U ((1 - k) U^T mu - k U^T e) with e = xbar - mu the sample-mean fluctuation,
    # formed without subtracting mu from xbar (e may lie far below mu)
    e = E.mean(axis=0)
    k = -np.expm1(mp.log_r)
    mu_c, e_c = U.T @ mu, U.T @ e
    dm = U @ (np.exp(mp.log_r) * mu_c - k * e_c)
    tr_sinv_v = (inv_l @ U2) @ np.exp(log_v) / d
    kl_gd = _eq.gaussian_kl(tr_sinv_v, log_v.mean(), np.log(pop_lam).mean(),
                            dm @ (inv_l * dm) / d, _f=_F)
    # KL(data || gen) = (tr(Sigma S^-1) + dm^T S^-1 dm)/(2d) + rest, the first part in log space
    proj = U.T @ dm
    with np.errstate(divide="ignore"):
        log_terms = np.concatenate([np.log(pop_lam @ U2) - log_v, 2 * np.log(np.abs(proj)) - log_v])
    log_big = logsumexp(log_terms) - math.log(2 * d)
    rest = _eq.gaussian_kl(0.0, np.log(pop_lam).mean(), log_v.mean(), 0.0, _f=_F)
    log_kl_dg = _ldm._log_add(log_big, rest)
    kl_dg = math.exp(log_kl_dg) if log_kl_dg < 709 else math.inf
    v = np.exp(log_v)
    span = v[c > 0].sum() / v.sum()
    # errors: fresh data see Sigma + (mu - xbar)(mu - xbar)^T, the training set sees C
    sig_diag = pop_lam @ U2 + e_c**2
    iq2 = mp.q2.mean(axis=1)
    test, train = _eq.errors(iq2, mp.w2 @ sig_diag / d, mp.cw2.mean(axis=1), 0.0, sch.abar, _f=_F)
    # oracle: population denoiser (C = Sigma, xbar = mu) with this seed's mu
    r2 = np.exp(2 * oracle.log_r)
    kl_o = _eq.gaussian_kl(np.mean(np.exp(oracle.log_v) * inv_l), np.mean(oracle.log_v),
                           np.log(pop_lam).mean(), (mu**2 * r2 * inv_l).sum() / d, _f=_F)
    excess = _excess(zero, oracle_delta, c, U, inv_l, mu, (mu_c, k * e_c), log_v, sch, lam, tau)
    return dict(kl_gen_data_per_dim=kl_gd, kl_data_gen_per_dim=kl_dg, kl_oracle_per_dim=kl_o,
                excess_kl_per_dim=excess, span_fraction=span,
                log_kl_data_gen_per_dim=log_kl_dg, test_error_t=test, train_error_t=train)


def _excess(zero, oracle, c, U, inv_l, mu, proj, log_v, sch, lam, tau):
    """kl_gen_data - kl_oracle of one seed without subtracting the two KLs.

    Both Sigma^{-1} traces are dominated by v_0(0) and r(0)^2 when Sigma has eigenvalues
    far below the noise scale (the KLs then reach 1e100 and more while their difference is
    O(1)); with v_0 = v_0(0) + dv and r = r(0) + dr (:func:`rmtsolve.ldm._delta_maps`, exact
    differences) the v_0(0) parts cancel exactly (the rows of U^2 sum to one) and
    mu - m_g = r(0) mu + X, mu - m_oracle = r(0) mu + Y leave
    2 r(0) mu^T Sigma^-1 (X - Y) + X^T Sigma^-1 X - Y^T Sigma^-1 Y for the mean terms.
    ``proj`` = (U^T mu, k_0(c) U^T e), e = xbar - mu.
    """
    d = c.size
    (m0, a0), (o_maps, dvo, dro) = zero, oracle
    r0 = math.exp(m0.log_r[0])
    dv, dr, _ = _ldm._delta_maps(_ldm._DOUBLE, c, sch, lam, tau, a0)
    trace = inv_l @ ((U**2) @ dv - dvo) / d
    mu_c, ke_c = proj
    X = U @ (dr * mu_c - ke_c)
    Y = dro * mu
    means = (2 * r0 * mu @ (inv_l * (X - Y)) + X @ (inv_l * X) - Y @ (inv_l * Y)) / d
    return _eq.gaussian_kl(trace + 1, log_v.mean(), o_maps.log_v.mean(), means, _f=_F)


def simulate_ldm(*, n_over_d: float, d: int, seeds: int, spectrum="isotropic", lam: float = 0.0,
                 tau: float | None = None, T: int = 1000, beta_min: float = 1e-4,
                 beta_max: float = 1e-2, mean_norm: float = 0.0, seed: int = 0, jobs: int | None = None,
                 scheduler: str | None = None, backend="numpy") -> LDMSimulation:
    """Exact sampler law on ``seeds`` independent training sets of N = round(n_over_d d) samples.

    Parameters are scalars with the meaning of :func:`rmtsolve.ldm.ldm` (``d`` required).
    Seed i draws from child i of ``numpy.random.SeedSequence(seed).spawn(seeds)``, so the
    seeds are independent tasks: ``jobs`` runs them on a local Dask cluster of that many
    worker processes, ``scheduler`` on an existing one (the ``distributed`` extra), with the
    numbers of the serial run (None or 1, the default) bit for bit.  ``backend`` must be
    "numpy": this simulator has no GPU path.  Returns means and standard errors over seeds.
    """
    for name, v in (("n_over_d", n_over_d), ("lam", lam), ("tau", tau), ("beta_min", beta_min),
                    ("beta_max", beta_max), ("mean_norm", mean_norm)):
        if v is not None and not_real_scalar(v):
            raise _ldm.ParameterError(name, "one real number (simulations take scalars)", v)
    tau_arr, T, d = _ldm.check_common(n_over_d=n_over_d, lam=lam, tau=tau, T=T,
                                      beta_min=beta_min, beta_max=beta_max,
                                      mean_norm=mean_norm, d=d)
    if d is None:
        raise _ldm.ParameterError("d", "an integer >= 1 for a simulation", d)
    seeds = check_integer("seeds", seeds, low=1)
    seed = check_integer("seed", seed, low=0)
    jobs = check_scaleout(jobs, scheduler)
    if backend is not np and not (isinstance(backend, str) and backend.strip().lower() == "numpy"):
        raise ParameterError("backend", "numpy (the LDM simulator runs on numpy only)", backend)
    tau = float(tau_arr)
    # validated real scalars (mpmath numbers included) as floats: the simulation is numpy's
    n_over_d, lam, beta_min, beta_max, mean_norm = (float(v) for v in (n_over_d, lam, beta_min, beta_max,
                                                                       mean_norm))
    N = _ldm.sample_size(n_over_d, d)
    _ldm.check_degenerate(N - 1, d, lam, tau, "N <= d + 1")
    # the data (N x d, twice), the d x d covariance and its eigenvectors, and per-step maps
    check_memory("n_over_d, d, T", 8.0 * (2.0 * N * d + 4.0 * d * d + 6.0 * T * d),
                 f"a simulation with N = {N:.3g} samples in d = {d}")
    pop = _ldm.population(spectrum, d)
    pop_lam = np.broadcast_to(pop.lam, (d,)).astype(float)
    sch = _ldm.Schedule.linear(T, beta_min, beta_max)
    with np.errstate(all="ignore"):  # overflow shows as inf/NaN in the outputs, refused below
        oracle = _ldm.maps(pop_lam, sch, lam, tau, errors=False)
        zero = _ldm._zero_maps(_ldm._DOUBLE, sch, lam, tau)
        dvo, dro, _ = _ldm._delta_maps(_ldm._DOUBLE, pop_lam, sch, lam, tau, zero[1])
    runs = map_seeds(_seed_task, [(ss, pop_lam, N, sch, lam, tau, mean_norm, oracle, zero, (oracle, dvo, dro))
                                  for ss in np.random.SeedSequence(seed).spawn(seeds)], jobs, scheduler)
    mean, err, samples = {}, {}, {}
    for k in runs[0]:
        vals = np.array([r[k] for r in runs], dtype=float)
        samples[k] = vals
        # scaled by the largest finite magnitude: KLs near 1e200 would overflow their squares
        scale = np.max(np.abs(np.where(np.isfinite(vals), vals, 0.0)), axis=0)
        scale = np.where(scale > 0, scale, 1.0)
        mean[k] = (vals / scale).mean(axis=0) * scale
        err[k] = seed_stderr(vals)
    params = dict(n_over_d=n_over_d, d=d, N=N, seeds=int(seeds), spectrum=pop.label, lam=lam,
                  tau=tau, T=T, beta_min=beta_min, beta_max=beta_max, mean_norm=mean_norm,
                  seed=seed)
    scal = {k: float(mean[k]) for k in _KEYS}
    bad = [k for k in _KEYS if not math.isfinite(scal[k])
           and not (k == "kl_data_gen_per_dim" and math.isfinite(scal["log_kl_data_gen_per_dim"]))]
    bad += [k for k in ("test_error_t", "train_error_t") if not np.all(np.isfinite(mean[k]))]
    if bad:  # never a silent inf or NaN: the exact law overflowed somewhere in double precision
        raise _ldm.ConvergenceError(
            f"simulate ldm: {', '.join(bad)} not finite in double precision (population eigenvalues from "
            f"{float(np.min(pop_lam)):.3g} to {float(np.max(pop_lam)):.3g})")
    return LDMSimulation(**scal, test_error_t=mean["test_error_t"],
                         train_error_t=mean["train_error_t"], stderr=err,
                         samples={k: samples[k] for k in _KEYS}, params=params)


def monte_carlo_sampler(X, *, lam: float = 0.0, tau: float | None = None, T: int = 1000,
                        beta_min: float = 1e-4, beta_max: float = 1e-2, samples: int = 10000,
                        seed: int = 0):
    """Run the stochastic DDPM sampler with the matrix denoisers (conventions 2.2) trained on ``X``.

    W_t = sqrt(1-abar_t) (M_t + lam)^{-1} (I - exp(-tau (M_t + lam))), b_t = -sqrt(abar_t) W_t xbar,
    built from M_t directly (no per-eigenvalue maps).  Returns the generated samples
    (``samples x d``), to compare with :func:`exact_law`.
    """
    N, d = X.shape
    xbar = X.mean(axis=0)
    C = (X - xbar).T @ (X - xbar) / N
    sch = _ldm.Schedule.linear(T, beta_min, beta_max)
    tau = math.inf if tau is None else float(tau)
    rng = np.random.default_rng(seed)
    u = rng.standard_normal((samples, d))
    eye = np.eye(d)
    for t in range(T - 1, -1, -1):
        beta, abar = sch.beta[t], sch.abar[t]
        ev, V = np.linalg.eigh(abar * C + (1 - abar) * eye + lam * eye)
        gain = (1 - np.exp(-tau * ev)) / ev if math.isfinite(tau) else 1 / ev
        W = math.sqrt(1 - abar) * (V * gain) @ V.T
        b = -math.sqrt(abar) * W @ xbar
        eps = u @ W.T + b
        u = (u - beta / math.sqrt(1 - abar) * eps) / math.sqrt(1 - beta)
        if t > 0:
            u += math.sqrt(beta) * rng.standard_normal((samples, d))
    return u
