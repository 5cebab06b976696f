"""Linear diffusion models: exact law, deterministic equivalents, limits, input checks."""
from __future__ import annotations

import importlib
import math
import warnings

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from scipy import integrate
from scipy.special import digamma

from rmtsolve.errors import ParameterError
from rmtsolve.ldm import ldm
from rmtsolve.ldm_sim import exact_law, monte_carlo_sampler, simulate_ldm

L = importlib.import_module("rmtsolve.ldm")  # the package binds ``ldm`` to the function


# -- exact law of the sampler -------------------------------------------------------------
@pytest.mark.parametrize("lam, tau", [(0.05, None), (0.0, 30.0)])
def test_propagated_law_matches_monte_carlo_sampler(lam, tau):
    rng = np.random.default_rng(1)
    d, N, T, M = 4, 6, 200, 40000
    X = rng.standard_normal((N, d)) * np.array([2.0, 1.0, 0.5, 0.3]) + 1.0
    sch = L.Schedule.linear(T, 1e-3, 5e-2)
    m_g, log_v, c, U, _, _ = exact_law(X, sch, lam, math.inf if tau is None else tau)
    S_g = (U * np.exp(log_v)) @ U.T
    u = monte_carlo_sampler(X, lam=lam, tau=tau, T=T, beta_min=1e-3, beta_max=5e-2, samples=M)
    emp_cov = np.cov(u.T)
    scale = np.sqrt(np.outer(np.diag(S_g), np.diag(S_g)))
    # sampling error of a covariance entry is ~ sqrt(2/M) of the scale
    assert np.max(np.abs(emp_cov - S_g) / scale) < 6 * math.sqrt(2 / M)
    assert np.max(np.abs(u.mean(axis=0) - m_g) / np.sqrt(np.diag(S_g))) < 6 / math.sqrt(M)


# -- deterministic equivalents ------------------------------------------------------------
def _mp_integral(f, gamma):
    a, b = (1 - math.sqrt(gamma)) ** 2, (1 + math.sqrt(gamma)) ** 2
    dens = lambda x: math.sqrt(max((b - x) * (x - a), 0.0)) / (2 * math.pi * gamma * x)  # noqa: E731
    return integrate.quad(lambda x: f(x) * dens(x), a, b, limit=200, epsabs=1e-13)[0]


@pytest.mark.parametrize("gamma", [0.25, 0.8, 2.0])
def test_contour_quadrature_matches_marchenko_pastur_density(gamma):
    pop = L.population("isotropic", None)
    sp_ = L.spectral(pop, gamma, gamma - 1, 1.0)
    for f in (lambda x: np.log(x + 0.3), lambda x: 1 / (x + 0.1), np.sqrt):
        got = float(np.imag(sp_.wt[0] @ f(sp_.z)))
        assert got == pytest.approx(_mp_integral(f, gamma), abs=1e-9)
    assert sp_.kernel[0] == pytest.approx(max(0.0, 1 - 1 / gamma), abs=1e-13)


def test_log_moment_and_quarter_slope():
    # REFERENCES: int log x dMP = -1 - (1-c)/c log(1-c), c < 1; KL per dim ~ d/(4N)
    pop = L.population("isotropic", None)
    for c in (0.1, 0.5):
        sp_ = L.spectral(pop, c, c - 1, 1.0)
        got = float(np.imag(sp_.wt[0] @ np.log(sp_.z)))
        assert got == pytest.approx(-1 - (1 - c) / c * math.log1p(-c), abs=1e-10)
    r = ldm(n_over_d=np.array([32.0, 64.0]))
    slope = np.asarray(r.excess_kl_per_dim) * np.array([32.0, 64.0])
    assert np.all(np.abs(slope - 0.25) < 0.01)


def test_overlap_traces_against_large_sample():
    # tr(Sigma^{-1} f(C))/d and tr(Sigma f(C))/d for a two-level population, one draw at d = 1200
    rng = np.random.default_rng(3)
    d, n = 1200, 2400
    lam = np.where(np.arange(d) < d // 3, 4.0, 0.5)
    Z = rng.standard_normal((n, d)) * np.sqrt(lam)
    c, U = np.linalg.eigh(Z.T @ Z / n)
    pop = L.population(lam, d)
    sp_ = L.spectral(pop, d / n, d / n - 1, 1.0)
    f = lambda x: np.log1p(x)  # noqa: E731
    for row, A in ((0, np.ones(d)), (1, 1 / lam), (2, lam)):
        emp = (A @ U**2) @ f(c) / d
        assert float(np.imag(sp_.wt[row] @ f(sp_.z))) == pytest.approx(emp, rel=5e-3)


# -- finite-d corrections ------------------------------------------------------------------
def _bulk(sp_, f, row):
    return float(np.imag(sp_.wt[row] @ f(sp_.z)))


@pytest.mark.parametrize("spectrum", ["isotropic", "powerlaw:1", "powerlaw:2"])
@pytest.mark.parametrize("d, n", [(20, 40), (100, 400)])
def test_finite_d_correction_reproduces_exact_wishart_moments(spectrum, d, n):
    # exact for real Gaussian data: E log det(Z Z^T/n) = sum_i psi((n - i)/2) + log(2/n) and
    # E C'^{-1} = n/(n - d - 1) Sigma^{-1}; the correction must turn the O(1/n) error of the
    # continuum equivalent into O(1/n^2), for every overlap weight A
    pop = L.population(spectrum, d)
    lam = pop.lam * np.ones(d)
    base = L.spectral(pop, d / n, (d - n) / n, 1.0)
    corr = L.spectral(pop, d / n, (d - n) / n, 1.0, d)
    i = np.arange(d)
    exact = (np.log(lam).sum() + np.sum(digamma((n - i) / 2) + math.log(2 / n))) / d
    assert abs(_bulk(base, np.log, 0) - exact) > 1e-3
    assert abs(_bulk(corr, np.log, 0) - exact) < 3 / n**2
    # n/(n - d - 1) = (n/(n - d)) (1 + 1/(n - d) + 1/(n - d)^2 + ...)
    for row, A in ((0, np.ones(d)), (1, 1 / lam), (2, lam)):
        exact = n / (n - d - 1) * np.mean(A / lam)
        assert abs(_bulk(base, lambda z: 1 / z, row) / exact - 1) > 0.8 / (n - d)
        assert _bulk(corr, lambda z: 1 / z, row) == pytest.approx(exact, rel=1.2 / (n - d)**2)


@settings(max_examples=30, deadline=None)
@given(d=st.integers(8, 60), extra=st.integers(6, 120), seed=st.integers(0, 10**6),
       row=st.sampled_from([0, 1, 2]))
def test_finite_d_inverse_moment_property(d, extra, seed, row):
    # any population (log-uniform eigenvalues over two decades): E tr(A C'^{-1})/d is exactly
    # n/(n - d - 1) tr(A Sigma^{-1})/d; corrected equivalent within 1.2/(n - d)^2 of it
    n = d + extra
    lam = np.exp(np.random.default_rng(seed).uniform(-2.3, 2.3, d))
    pop = L.population(lam, d)
    corr = L.spectral(pop, d / n, (d - n) / n, 1.0, d)
    A = (np.ones(d), 1 / lam, lam)[row]
    exact = n / (n - d - 1) * np.mean(A / lam)
    assert _bulk(corr, lambda z: 1 / z, row) == pytest.approx(exact, rel=1.2 / (n - d) ** 2)


@pytest.mark.parametrize("spectrum, d, n, draws", [("powerlaw:1", 60, 30, 600),
                                                    ("powerlaw:2", 40, 10, 2000)])
def test_finite_d_kernel_overlaps_against_sampling(spectrum, d, n, draws):
    # tr(A P_0)/d, P_0 the kernel projector of C' (n < d): the corrected masses agree with
    # sampling within 4 se where the continuum equivalent is off by more than 4 se
    pop = L.population(spectrum, d)
    rng = np.random.default_rng(7)
    vals = []
    for _ in range(draws):
        Z = rng.standard_normal((n, d)) * np.sqrt(pop.lam)
        U = np.linalg.eigh(Z.T @ Z / n)[1][:, : d - n]
        vals.append([np.mean((U**2).sum(1) * a) for a in (1 / pop.lam, pop.lam)])
    mean, se = np.mean(vals, 0), np.std(vals, 0) / math.sqrt(draws)
    base = L.spectral(pop, d / n, (d - n) / n, 1.0).kernel
    corr = L.spectral(pop, d / n, (d - n) / n, 1.0, d).kernel
    assert corr[0] == base[0] == pytest.approx(1 - n / d, abs=1e-12)  # exact dimension
    assert np.all(np.abs(corr[1:] - mean) < 4 * se)
    assert np.all(np.abs(base[1:] - mean) > 4 * se)


def test_hard_edge_atom_at_gamma_one():
    # n = d: no kernel, but the correction keeps an atom (sum w A/lam)/(4 d sum w/lam) at 0
    d = 50
    pop = L.population("powerlaw:1", d)
    sp_ = L.spectral(pop, 1.0, 0.0, 1.0, d)
    assert sp_.null == 0.0
    assert sp_.kernel[0] == pytest.approx(1 / (4 * d), rel=1e-12)
    s_inv = np.mean(1 / pop.lam)
    assert sp_.kernel[1] == pytest.approx(np.mean(pop.lam**-2) / (4 * d * s_inv), rel=1e-12)
    # the contour stops at 1e-16 lam_min: the 1/sqrt(c) density below it holds ~ 1e-8
    assert float(np.imag(sp_.wt[0].sum())) + sp_.kernel[0] == pytest.approx(1.0, abs=2e-8)


def test_two_resolvent_trace_against_sampling():
    # tr(Sigma^{-1} f(C) Sigma f(C))/d with f(0) = 0: the leading-order two-resolvent
    # equivalent (it enters the KL divided by N) vs sampling, and far from tr(f(C)^2)/d
    d, n = 60, 30
    pop = L.population("powerlaw:2", d)
    f = lambda x: x / (x + 0.2)  # noqa: E731
    sp_ = L.spectral(pop, d / n, (d - n) / n, 1.0, d)
    got = L._two_resolvent(sp_, f(sp_.z))
    rng = np.random.default_rng(2)
    vals, sq = [], []
    for _ in range(300):
        Z = rng.standard_normal((n, d)) * np.sqrt(pop.lam)
        c, U = np.linalg.eigh(Z.T @ Z / n)
        fc = f(np.where(np.arange(d) < d - n, 0.0, c))
        F = (U * fc) @ U.T
        vals.append(np.trace((F / pop.lam[:, None]) @ (F * pop.lam[:, None])) / d)
        sq.append(np.mean(fc**2))
    assert got == pytest.approx(np.mean(vals), rel=0.02)
    assert abs(np.mean(sq) - np.mean(vals)) > 0.5 * np.mean(vals)


@pytest.mark.parametrize("spectrum, n_over_d, lam, tau, mean_norm", [
    ("isotropic", 0.5, 1e-2, None, 1.0),
    ("isotropic", 2.0, 0.0, None, 0.0),
    ("powerlaw:1", 1.0, 0.0, 100.0, 1.0),
    ("powerlaw:0.5", 4.0, 0.1, 10.0, 0.0),
    ("isotropic", 121 / 120, 0.1, None, 1.0),  # N - 1 = d: hard edge, gamma = 1 exactly
    ("powerlaw:1", 121 / 120, 0.0, 100.0, 0.0),
])
def test_theory_matches_simulation(spectrum, n_over_d, lam, tau, mean_norm):
    kw = dict(n_over_d=n_over_d, spectrum=spectrum, lam=lam, tau=tau, mean_norm=mean_norm, d=120)
    th = ldm(**kw)
    sim = simulate_ldm(seeds=12, **kw)
    for k in ("kl_gen_data_per_dim", "kl_data_gen_per_dim", "excess_kl_per_dim", "span_fraction"):
        t, s, e = float(getattr(th, k)), getattr(sim, k), sim.stderr[k]
        assert abs(t - s) <= max(0.02 * abs(s), 3 * e, 1e-9), (k, t, s, e)
    err = np.abs(th.train_error_t - sim.train_error_t)
    assert np.all(err <= np.maximum(0.02 * sim.train_error_t, 3 * sim.stderr["train_error_t"]))


def test_continuum_powerlaw_matches_its_quantile_discretisation():
    k = 0.3
    u = (np.arange(20000) + 0.5) / 20000
    disc = ldm(n_over_d=2.0, spectrum=(1 - k) * u**-k, lam=1e-2, mean_norm=1.0)
    cont = ldm(n_over_d=2.0, spectrum="powerlaw:0.3", lam=1e-2, mean_norm=1.0)
    for key in ("kl_gen_data_per_dim", "kl_data_gen_per_dim", "kl_oracle_per_dim"):
        # the midpoint quantiles converge slowly in the heavy tail (oracle: ~4e-5 at 20000)
        assert float(getattr(cont, key)) == pytest.approx(float(getattr(disc, key)), rel=2e-4)


def test_isotropic_string_equals_unit_eigenvalues():
    a = ldm(n_over_d=0.7, lam=1e-2, tau=50.0, mean_norm=1.0, d=80)
    b = ldm(n_over_d=0.7, lam=1e-2, tau=50.0, mean_norm=1.0, d=80, spectrum=np.ones(80))
    assert float(a.kl_gen_data_per_dim) == pytest.approx(float(b.kl_gen_data_per_dim), rel=1e-12)
    np.testing.assert_allclose(a.test_error_t, b.test_error_t, rtol=1e-12)


def test_finite_d_equivalent_approaches_limit():
    kw = dict(n_over_d=2.0, lam=1e-2, mean_norm=1.0)
    inf = float(ldm(**kw).kl_gen_data_per_dim)
    gaps = [abs(float(ldm(d=d, **kw).kl_gen_data_per_dim) - inf) for d in (100, 400, 1600)]
    assert gaps[0] > gaps[1] > gaps[2]
    assert gaps[2] < gaps[0] / 8  # O(1/d)


# -- limits -------------------------------------------------------------------------------
def test_oracle_kl_vanishes_with_fine_schedule():
    vals = [float(ldm(n_over_d=4.0, T=T).kl_oracle_per_dim) for T in (250, 1000, 4000)]
    assert vals[0] > vals[1] > vals[2]
    assert vals[2] < 1e-6


def test_long_training_equals_converged_denoiser():
    conv = ldm(n_over_d=[0.5, 2.0], lam=1e-2, mean_norm=1.0)
    long = ldm(n_over_d=[0.5, 2.0], lam=1e-2, mean_norm=1.0, tau=1e9)
    for k in ("kl_gen_data_per_dim", "kl_data_gen_per_dim", "span_fraction"):
        np.testing.assert_allclose(getattr(long, k), getattr(conv, k), rtol=1e-9)


def test_huge_ridge_returns_to_sampler_prior():
    T, bmin, bmax = 1000, 1e-4, 1e-2
    sch = L.Schedule.linear(T, bmin, bmax)
    v = 1.0  # the sampler with eps_theta = 0
    for t in range(T - 1, -1, -1):
        v = v / (1 - sch.beta[t]) + (sch.beta[t] if t > 0 else 0.0)
    expect = 0.5 * (v - 1 - math.log(v))
    r = ldm(n_over_d=0.5, lam=1e12)
    assert float(r.kl_gen_data_per_dim) == pytest.approx(expect, rel=1e-6)


def test_astronomical_kl_in_log_space():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        r = ldm(n_over_d=0.5, tau=1e8, d=200)
    # kernel variance ~ exp(-2 tau beta_1) (a_1(0) = exp(-tau beta_1)): log KL ~ 2 tau beta_1
    beta_1 = 1e-4 + (1e-2 - 1e-4) / 1000
    assert float(r.log_kl_data_gen_per_dim) == pytest.approx(2e8 * beta_1, rel=1e-3)
    assert math.isinf(float(r.kl_data_gen_per_dim))
    assert math.isfinite(float(r.kl_gen_data_per_dim))


@settings(max_examples=25, deadline=None)
@given(n_over_d=st.floats(0.2, 20), lam=st.floats(1e-4, 1.0),
       tau=st.one_of(st.none(), st.floats(0.5, 1e4)), mean_norm=st.floats(0, 2),
       d=st.one_of(st.none(), st.integers(50, 300)),
       spectrum=st.sampled_from(["isotropic", "powerlaw:0.5", "powerlaw:1.5"]))
def test_properties(n_over_d, lam, tau, mean_norm, d, spectrum):
    assume(d is not None or spectrum != "powerlaw:1.5")
    r = ldm(n_over_d=n_over_d, lam=lam, tau=tau, mean_norm=mean_norm, d=d, spectrum=spectrum)
    assert float(r.kl_gen_data_per_dim) >= 0
    assert float(r.kl_data_gen_per_dim) >= 0
    assert float(r.kl_oracle_per_dim) >= 0
    assert 0 <= float(r.span_fraction) <= 1
    assert np.all(r.test_error_t > 0) and np.all(r.train_error_t > 0)


def test_broadcasting_and_as_dict():
    r = ldm(n_over_d=[[0.5], [2.0]], lam=[1e-2, 1e-1], d=100)
    assert r.kl_gen_data_per_dim.shape == (2, 2)
    assert r.test_error_t.shape == (2, 2, 1000)
    out = r.as_dict()
    for k in ("kl_gen_data_per_dim", "kl_data_gen_per_dim", "kl_oracle_per_dim",
              "excess_kl_per_dim", "span_fraction", "params", "kl_gen_data", "excess_kl"):
        assert k in out
    np.testing.assert_allclose(out["kl_gen_data"], 100 * r.kl_gen_data_per_dim)


# -- input checks -------------------------------------------------------------------------
@pytest.mark.parametrize("kw", [
    dict(n_over_d=0.0), dict(n_over_d=1.0, lam=-1.0), dict(n_over_d=1.0, lam=0.1, tau=0.0),
    dict(n_over_d=1.0, lam=0.1, T=0), dict(n_over_d=1.0, lam=0.1, T=2.5),
    dict(n_over_d=1.0, lam=0.1, beta_min=0.0), dict(n_over_d=1.0, lam=0.1, beta_max=1.0),
    dict(n_over_d=1.0, lam=0.1, beta_min=0.02, beta_max=0.01),
    dict(n_over_d=1.0, lam=0.1, mean_norm=-1.0), dict(n_over_d=1.0, lam=0.1, d=0),
    dict(n_over_d=1.0, lam=0.1, spectrum="powerlaw:x"),
    dict(n_over_d=1.0, lam=0.1, spectrum="powerlaw:2"),  # K >= 1 needs d
    dict(n_over_d=1.0, lam=0.1, spectrum="foo"), dict(n_over_d=1.0, lam=0.1, spectrum=[1.0, -1.0]),
    dict(n_over_d=1.0, lam=0.1, spectrum="file:/nonexistent"),
    dict(n_over_d=1.0, lam=0.1, spectrum=[1.0, 2.0], d=3),
    dict(n_over_d=0.5), dict(n_over_d=1.0, d=50),  # divergent ridgeless points
    dict(n_over_d=0.01, lam=0.1, d=50),  # N < 2
    dict(n_over_d=1.0, lam=0.1, dps=30),
])
def test_bad_input(kw):
    with pytest.raises(ParameterError):
        ldm(**kw)


def test_spectrum_file(tmp_path):
    p = tmp_path / "eig.txt"
    vals = np.linspace(0.5, 1.5, 60)
    p.write_text(" ".join(map(str, vals)))
    a = ldm(n_over_d=2.0, lam=1e-2, spectrum=f"file:{p}", d=60)
    b = ldm(n_over_d=2.0, lam=1e-2, spectrum=vals, d=60)
    assert float(a.kl_gen_data_per_dim) == float(b.kl_gen_data_per_dim)
    with pytest.raises(ParameterError):
        simulate_ldm(n_over_d=0.5, d=20, seeds=2)  # divergent
