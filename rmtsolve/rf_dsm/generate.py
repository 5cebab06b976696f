"""Generated samples of a diffusion model whose score is an RF-DSM model (simulation only).

One training set x_1..x_n (x = Sigma^{1/2} g, the spectrum discretised as in
:mod:`rmtsolve.rf_dsm.sim`) and one feature matrix W serve every diffusion time of the grid
t_1 < ... < t_S, geometric from ``t0`` to ``T``.  At each t_k a score s_k(y) = B_k phi(y)/sqrt(D_k)
is ridge-trained on m fresh noise draws per training point (the converged ridge solution of the
conventions, section 1).  K samples start from N(0, I) at T (the forward law there is
N(0, e^{-2T} Sigma + D_T I)) and are integrated back to t0 with the exponential integrator of the
OU part, the score frozen over each step:

- reverse SDE: y <- e^h y + 2 (e^h - 1) s_k(y) + sqrt(e^{2h} - 1) xi;
- probability-flow ODE: y <- e^h y + (e^h - 1) s_k(y);

with h = t_k - t_{k-1} and s_k the score of the step's upper end.  The samples are finally
denoised by Tweedie's formula x = e^{t0} (y + D_{t0} s(y)).  Reported, for each sampler:

- ``memorized_fraction``: share of samples whose nearest training point is closer than a third
  of the second nearest (the criterion of Yoon et al. used by the memorisation works);
- ``generated_kl_gaussian_fit``: KL(N(mean, cov) || N(0, Sigma))/d for the Gaussian fit of the K
  samples (biased up by about d/(4K) per dimension from the estimated covariance; inf for
  singular Sigma or K <= d);
and ``score_error_integral``: the trapezoid in t of score_error(t)/D_t over the grid, the
simulated per-dimension bound on KL(data || generated) of the reverse SDE, next to the
theory's d -> inf value (:func:`rmtsolve.score_error_integral` on [t0, T]).
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np

from .._parallel import seed_stderr
from .._results import ShortRepr
from .._resources import check_memory
from ..errors import ParameterError, check_integer, check_scalar
from .equations import rf_dsm_spectrum
from .sim import empirical_score, ridge_solve
from .solver import PSI_MAX, T_MAX


@dataclasses.dataclass(frozen=True, repr=False)
class Generation(ShortRepr):
    """Memorisation and fit of the generated samples (means and standard errors over seeds).

    ``memorized_fraction`` and ``generated_kl_gaussian_fit`` are dicts keyed "sde" and "ode";
    ``score_error_integral`` is the simulated time integral of score_error/D, and
    ``score_error_integral_theory`` its d -> inf theory; ``times`` and the per-time
    ``score_error`` / ``empirical_score_error`` curves are the first seed's.
    """

    memorized_fraction: dict
    memorized_fraction_stderr: dict
    generated_kl_gaussian_fit: dict
    generated_kl_gaussian_fit_stderr: dict
    score_error_integral: float
    score_error_integral_stderr: float
    score_error_integral_theory: float
    times: np.ndarray
    score_error: np.ndarray
    empirical_score_error: np.ndarray
    params: dict

    def as_dict(self) -> dict:
        return {k: getattr(self, k) for k in (
            "memorized_fraction", "memorized_fraction_stderr", "generated_kl_gaussian_fit",
            "generated_kl_gaussian_fit_stderr", "score_error_integral", "score_error_integral_stderr",
            "score_error_integral_theory", "times", "score_error", "empirical_score_error", "params")}


def generate_rf_dsm(*, psi_n: float, psi_p: float, m, lam: float, K: int = 500, activation="relu",
                    spectrum="isotropic", d: int = 100, seeds: int = 1, seed: int = 0, t0: float = 0.01,
                    T: float = 5.0, steps: int = 60, n_test: int = 1000, theory: bool = True) -> Generation:
    """Train RF-DSM scores on a time grid, generate K samples, measure memorisation.

    Parameters are those of :func:`rmtsolve.simulate_rf_dsm` (lam > 0: one ridge solve per time),
    plus K (samples), t0 < T (the time grid, ``steps`` points, geometric) and ``n_test`` (fresh
    points per time for the score errors).  ``theory=False`` skips the theory's integral.
    """
    from ..activations import resolve_activation

    for name, v in (("psi_n", psi_n), ("psi_p", psi_p), ("lam", lam), ("t0", t0), ("T", T)):
        check_scalar(name, v, low=0, low_open=True, high={"t0": T_MAX, "T": T_MAX, "psi_n": PSI_MAX,
                                                          "psi_p": PSI_MAX}.get(name))
    if not T > t0:
        raise ParameterError("T", f"> t0 = {t0:g}", T)
    m = check_integer("m", m, low=1, allowed="a finite integer >= 1 for simulations")
    d, K, seeds, steps, n_test = (check_integer(name, v, low=low) for name, v, low in (
        ("d", d, 2), ("K", K, 2), ("seeds", seeds, 1), ("steps", steps, 2), ("n_test", n_test, 1)))
    act = resolve_activation(activation)
    spec = rf_dsm_spectrum(spectrum)
    n, p = max(1, round(psi_n * d)), max(1, round(psi_p * d))
    if n < 2:  # the memorised fraction compares each sample's two nearest training points
        raise ParameterError("psi_n, d", "such that n = round(psi_n d) >= 2 for generation", psi_n * d)
    check_memory("d, psi_p", 8.0 * (3 * p * d + 2 * p * p + (n * int(m) + K + n_test) * (p + d) + K * n),
                 f"generation at d = {d} with p = {p}")
    ell = spec.rf_dsm_eigenvalues(int(d))
    times = np.geomspace(t0, T, int(steps))
    runs = [_one_seed(np.random.default_rng(ss), act, int(d), n, p, int(m), lam, int(K), ell, times, int(n_test),
                      empirical_score) for ss in np.random.SeedSequence(seed).spawn(int(seeds))]

    def stat(key, sub=None):
        vals = np.array([r[key] if sub is None else r[key][sub] for r in runs], dtype=float)
        return float(vals.mean()), float(seed_stderr(vals))

    mem = {s: stat("memorized", s) for s in ("sde", "ode")}
    kl = {s: stat("kl", s) for s in ("sde", "ode")}
    sei, sei_se = stat("integral")
    th = math.nan
    if theory:
        from .integral import score_error_integral

        th = score_error_integral(psi_n=psi_n, psi_p=psi_p, m=m, lam=lam, t0=t0, T=T, activation=activation,
                                  spectrum=spec).value
    params = dict(psi_n=psi_n, psi_p=psi_p, m=m, lam=lam, K=K, activation=act.name, spectrum=spec.label, d=d,
                  n=n, p=p, seeds=seeds, seed=seed, t0=t0, T=T, steps=steps, n_test=n_test)
    return Generation({k: v[0] for k, v in mem.items()}, {k: v[1] for k, v in mem.items()},
                      {k: v[0] for k, v in kl.items()}, {k: v[1] for k, v in kl.items()}, sei, sei_se, th,
                      times, runs[0]["score_error"], runs[0]["empirical"], params)


def _one_seed(rng, act, d, n, p, m, lam, K, ell, times, n_test, empirical_score):
    sq = np.sqrt(ell)
    X = rng.standard_normal((n, d)) * sq
    W = rng.standard_normal((p, d))

    def phi(y):
        return act(y @ W.T * (1.0 / math.sqrt(d)))

    rho = np.exp(-2 * times)
    floors = np.array([float(np.mean(r * ell / (r * ell + 1 - r))) for r in rho])
    B, score_err, emp = [], np.empty(times.size), np.empty(times.size)
    for k, t in enumerate(times):
        a, sD = math.exp(-t), math.sqrt(-math.expm1(-2 * t))
        Z = rng.standard_normal((n, m, d))
        Y = (a * X[:, None, :] + sD * Z).reshape(n * m, d)
        F = phi(Y)
        N = n * m
        Zf = Z.reshape(N, d)
        if N < p:  # push-through: (F^T F/N + lam)^{-1} F^T = F^T (F F^T/N + lam)^{-1}, an N x N solve
            Bt = -F.T @ ridge_solve(F @ F.T / N, Zf / N, lam, terms=p)
        else:
            Bt = -ridge_solve(F.T @ F / N, F.T @ Zf / N, lam, terms=N)
        B.append(Bt)
        z = rng.standard_normal((n_test, d))
        y = a * rng.standard_normal((n_test, d)) * sq + sD * z
        pred = phi(y) @ Bt
        score_err[k] = float(np.mean(np.sum((pred + z) ** 2, axis=1))) / d - floors[k]
        emp[k] = float(np.mean(np.sum((pred - sD * empirical_score(y, X, t)) ** 2, axis=1))) / d
    D = -np.expm1(-2 * times)
    integral = float(np.trapezoid(score_err / D, times))
    out = {"score_error": score_err, "empirical": emp, "integral": integral, "memorized": {}, "kl": {}}
    for sampler in ("sde", "ode"):
        y = rng.standard_normal((K, d))
        for k in range(times.size - 1, 0, -1):
            h = times[k] - times[k - 1]
            s = phi(y) @ B[k] / math.sqrt(D[k])
            eh = math.exp(h)
            if sampler == "sde":
                y = eh * y + 2 * (eh - 1) * s + math.sqrt(math.expm1(2 * h)) * rng.standard_normal((K, d))
            else:
                y = eh * y + (eh - 1) * s
        x = math.exp(times[0]) * (y + D[0] * (phi(y) @ B[0] / math.sqrt(D[0])))  # Tweedie at t0
        out["memorized"][sampler] = memorized_fraction(x, X)
        out["kl"][sampler] = gaussian_fit_kl(x, ell)
    return out


def memorized_fraction(samples, X) -> float:
    """Share of samples with (distance to the nearest row of X)/(to the second nearest) < 1/3."""
    d2 = np.sum(samples**2, axis=1)[:, None] - 2 * samples @ X.T + np.sum(X**2, axis=1)[None, :]
    two = np.sqrt(np.maximum(np.partition(d2, 1, axis=1)[:, :2], 0.0))
    return float(np.mean(two[:, 0] < two[:, 1] / 3))


def gaussian_fit_kl(samples, ell) -> float:
    """KL(N(mean, cov) || N(0, diag(ell)))/d of the Gaussian fit of the samples (inf if singular)."""
    K, d = samples.shape
    if np.any(ell <= 0) or K <= d:
        return math.inf
    mu = samples.mean(axis=0)
    C = np.cov(samples.T)
    sign, logdet = np.linalg.slogdet(C)
    if sign <= 0:
        return math.inf
    kl = 0.5 * (np.sum(np.diag(C) / ell) + np.sum(mu**2 / ell) - d + np.sum(np.log(ell)) - logdet)
    return float(kl / d)
