"""RF-DSM after a finite gradient-flow time tau (Talbot contour + two-point equivalent)."""
import math

import numpy as np
import pytest

from rmtsolve import ParameterError, rf_dsm, simulate_rf_dsm
from rmtsolve.rf_dsm.flow import talbot

KW = dict(psi_n=1.0, psi_p=2.0, m=3, t=0.5, lam=1e-2, activation="relu")


@pytest.mark.parametrize("tau", [0.01, 1.0, 100.0, 1e4])
@pytest.mark.parametrize("s_lam", [0.0, 1e-3, 0.5, 40.0])
def test_talbot_reproduces_the_flow_filter(tau, s_lam):
    xi, w = talbot(tau)
    got = np.sum(w / xi / (s_lam + xi))
    expected = -math.expm1(-tau * s_lam) / s_lam if s_lam > 0 else tau
    assert got.real == pytest.approx(expected, rel=1e-9, abs=1e-12)
    assert abs(got.imag) < 1e-9 * max(1, expected)


@pytest.mark.parametrize("kw", [KW, dict(KW, m=math.inf, activation="tanh"), dict(KW, m=1, psi_p=0.5, lam=1e-3)])
def test_long_training_reaches_the_ridge_solution(kw):
    ridge = rf_dsm(**kw)
    flow = rf_dsm(**kw, tau=2000.0 / kw["lam"] / 100)  # tau lam = 20: e^{-20} below 1e-8
    assert float(flow.test_error) == pytest.approx(float(ridge.test_error), rel=1e-6)
    assert float(flow.train_error) == pytest.approx(float(ridge.train_error), rel=1e-6)


def test_ridgeless_flow_converges_to_the_min_norm_solution():
    kw = dict(psi_n=1.0, psi_p=0.5, m=2, t=0.5, lam=0.0)  # p < n m: finite ridgeless limit
    ridge = float(rf_dsm(**kw).test_error)
    errs = [abs(float(rf_dsm(**kw, tau=tau).test_error) - ridge) for tau in (10.0, 100.0, 1000.0)]
    assert errs[0] > errs[1] > errs[2] and errs[2] < 1e-3


def test_short_training_learns_nothing():
    r = rf_dsm(**KW, tau=1e-4)
    assert float(r.test_error) == pytest.approx(1.0, abs=1e-3)
    assert float(r.train_error) == pytest.approx(1.0, abs=1e-3)


def test_tau_broadcasts_and_inf_means_converged():
    taus = np.array([0.5, 5.0, np.inf])
    r = rf_dsm(**KW, tau=taus)
    assert r.test_error.shape == (3,)
    assert r.test_error[2] == pytest.approx(float(rf_dsm(**KW).test_error), rel=1e-12)
    assert r.test_error[1] == pytest.approx(float(rf_dsm(**KW, tau=5.0).test_error), rel=1e-12)


@pytest.mark.parametrize("kw,tau", [(KW, 0.5), (KW, 5.0), (dict(psi_n=0.5, psi_p=1.0, m=1, t=0.5, lam=0.0,
                                                              activation="tanh"), 5.0)])
def test_flow_matches_real_features_at_d200(kw, tau):
    sim = simulate_rf_dsm(**kw, tau=tau, d=200, seeds=4, seed=5)
    th = rf_dsm(**kw, tau=tau)
    for q in ("test_error", "train_error"):
        theory, s, se = float(getattr(th, q)), getattr(sim, q), getattr(sim, q + "_stderr")
        assert abs(s - theory) <= max(0.05 * abs(theory), 3 * se), (q, theory, s, se)


SUBSPACE_FLOW = dict(KW, psi_n=1.2, psi_p=1.5, t=0.3, activation="tanh", spectrum=[0, 0, 1, 3])


def test_flow_errors_per_eigenvalue_average_to_the_test_error_and_reach_the_ridge_ones():
    ridge = rf_dsm(**SUBSPACE_FLOW)
    r = rf_dsm(**SUBSPACE_FLOW, tau=np.array([1.0, 10.0, 1000.0]))
    by, w = r.test_error_by_eigenvalue, r.eigenvalue_weights
    assert by.shape == (3, 3) and list(r.eigenvalues) == [0.0, 1.0, 3.0]
    np.testing.assert_allclose(by @ w, r.test_error, rtol=1e-12)
    # tau lam = 10 still takes the contour path; e^{-10} of the slowest directions is left
    np.testing.assert_allclose(by[2], ridge.test_error_by_eigenvalue, rtol=1e-6)
    assert np.all(by >= r.as_dict()["test_error_by_eigenvalue"]["test_error_floor"] - 1e-12)
    # early stopping: at tau = 1 the directions off the data (eigenvalue 0) are far from trained
    assert by[0, 0] > 2 * by[2, 0]


def test_flow_errors_per_eigenvalue_match_real_features_at_d200():
    kw = dict(SUBSPACE_FLOW, tau=2.0)
    sim = simulate_rf_dsm(**kw, d=200, seeds=4, seed=5)
    th = rf_dsm(**kw)
    for j in range(3):
        theory, s, se = th.test_error_by_eigenvalue[j], sim.test_error_by_eigenvalue[j], \
            sim.test_error_by_eigenvalue_stderr[j]
        assert abs(s - theory) <= max(0.05 * abs(theory), 3 * se), (j, theory, s, se)


@pytest.mark.parametrize("tau", [0.0, -1.0, math.nan])
def test_bad_tau(tau):
    with pytest.raises(ParameterError) as e:
        rf_dsm(**KW, tau=tau)
    assert e.value.name == "tau"


FLOW_MP = [dict(KW, psi_p=2.0, m=3, tau=1.5), dict(KW, psi_n=2.0, psi_p=3.0, m=1, lam=1e-3, tau=4.0, spectrum=[0.2, 5.0])]


@pytest.fixture(scope="module")
def flow_30_digits():
    return [rf_dsm(**kw, dps=30) for kw in FLOW_MP]


@pytest.mark.slow
@pytest.mark.parametrize("i", range(len(FLOW_MP)))
def test_flow_at_30_digits_agrees_with_double(flow_30_digits, i):
    mp, dbl = flow_30_digits[i], rf_dsm(**FLOW_MP[i])
    for name in ("test_error", "train_error", "empirical_score_error"):
        assert float(getattr(mp, name)) == pytest.approx(float(getattr(dbl, name)), rel=1e-10), name
    assert mp.dps == 30 and bool(mp.converged)
    if dbl.test_error_by_eigenvalue is not None:
        got = [float(x) for x in mp.test_error_by_eigenvalue]
        assert got == pytest.approx(list(dbl.test_error_by_eigenvalue), rel=1e-10)


@pytest.mark.slow
def test_flow_at_50_digits_agrees_with_30_digits(flow_30_digits):
    import mpmath

    hi = rf_dsm(**FLOW_MP[0], dps=50)
    with mpmath.workdps(60):
        for name in ("test_error", "train_error"):
            a, b = getattr(hi, name), getattr(flow_30_digits[0], name)
            assert abs(a - b) <= mpmath.mpf(10) ** -29 * abs(a), name


def test_long_flow_at_high_precision_is_the_ridge_solution():
    # tau lam = 1e3: e^{-tau lam} is far below 10^-30, so the ridge solve is exact at 30 digits
    flow, ridge = rf_dsm(**KW, tau=1e5, dps=30), rf_dsm(**KW, dps=30)
    assert flow.test_error == ridge.test_error and flow.train_error == ridge.train_error


def test_high_precision_flow_on_a_continuum_law_is_refused_up_front():
    with pytest.raises(ParameterError) as e:
        rf_dsm(**KW, tau=1.0, dps=30, spectrum="powerlaw:0.5")
    assert e.value.name == "dps" and "h per point" in str(e.value)


@pytest.mark.parametrize("tau", [50.0, 1e3, 1e4, 1e6])
def test_ridgeless_long_flow_is_the_limit_or_an_error(tau):
    # lam = 0 with p > n m: the kernel of U makes large-tau evaluations delicate; the result
    # must be the converged min-norm value (to 1e-6) or a ConvergenceError, never garbage.
    from rmtsolve import ConvergenceError

    kw = dict(psi_n=0.5, psi_p=4.0, m=1, t=0.5, lam=0.0)
    limit = float(rf_dsm(**kw).test_error)
    try:
        got = float(rf_dsm(**kw, tau=tau).test_error)
    except ConvergenceError:
        return
    assert got == pytest.approx(limit, rel=1e-6)


def test_high_precision_fallback_agrees(monkeypatch):
    # Force the mpmath path (the double-precision orders are declared inconsistent) and check
    # that it reproduces the double-precision values.
    from rmtsolve.rf_dsm import flow

    expected = rf_dsm(**KW, tau=3.0)
    calls = []
    real = flow._flow_errors_mp

    def spy(*a):
        calls.append(a)
        return real(*a)

    monkeypatch.setattr(flow, "_consistent", lambda *a: bool(calls))
    monkeypatch.setattr(flow, "_flow_errors_mp", spy)
    got = rf_dsm(**KW, tau=3.0)
    assert len(calls) == 2
    assert float(got.test_error) == pytest.approx(float(expected.test_error), rel=1e-7)
    assert float(got.train_error) == pytest.approx(float(expected.train_error), rel=1e-7)
