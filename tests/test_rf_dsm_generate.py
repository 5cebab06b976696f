"""Generated samples and the empirical score (simulation side of the memorisation quantities)."""
import json
import math

import numpy as np
import pytest
from scipy import integrate, stats
from scipy.special import logsumexp

from rmtsolve import ParameterError, cli, rf_dsm, simulate_rf_dsm
from rmtsolve.rf_dsm.generate import gaussian_fit_kl, generate_rf_dsm, memorized_fraction
from rmtsolve.rf_dsm.sim import empirical_score


def test_empirical_score_is_the_gradient_of_the_log_mixture():
    rng = np.random.default_rng(0)
    X, y, t = rng.standard_normal((7, 5)), rng.standard_normal((3, 5)), 0.3
    a, D = math.exp(-t), -math.expm1(-2 * t)

    def logp(v):
        return logsumexp(-np.sum((v - a * X) ** 2, axis=1) / (2 * D))

    h = 1e-6
    for i in range(3):
        grad = [(logp(y[i] + h * e) - logp(y[i] - h * e)) / (2 * h) for e in np.eye(5)]
        assert np.allclose(empirical_score(y[i:i + 1], X, t)[0], grad, atol=1e-6)


def test_memorized_fraction_and_gaussian_fit():
    rng = np.random.default_rng(1)
    X = rng.standard_normal((10, 20))
    copies = X[rng.integers(0, 10, 40)] + 1e-3 * rng.standard_normal((40, 20))
    assert memorized_fraction(copies, X) == 1.0
    assert memorized_fraction(rng.standard_normal((200, 20)), X) < 0.05
    ell = np.linspace(0.5, 2, 20)
    K = 40000
    x = rng.standard_normal((K, 20)) * np.sqrt(ell)
    # the estimated covariance biases the KL per dimension up by about (d + 1)/(4 K)
    assert gaussian_fit_kl(x, ell) == pytest.approx(21 / (4 * K), abs=3e-4)
    assert gaussian_fit_kl(x[:10], ell) == math.inf and gaussian_fit_kl(x, np.r_[0.0, ell[1:]]) == math.inf


def test_generation_runs_and_reports_both_samplers():
    g = generate_rf_dsm(psi_n=0.2, psi_p=3.0, m=10, lam=1e-3, K=60, d=40, steps=12, n_test=200, seeds=2)
    assert set(g.memorized_fraction) == {"sde", "ode"}
    assert all(0 <= v <= 1 for v in g.memorized_fraction.values())
    assert g.times.size == 12 and np.all(np.isfinite(g.score_error)) and np.isfinite(g.score_error_integral)
    assert g.score_error_integral_theory == pytest.approx(
        __import__("rmtsolve").score_error_integral(psi_n=0.2, psi_p=3.0, m=10, lam=1e-3, t0=0.01, T=5.0).value)


def test_memorisation_turns_on_beyond_p_equal_n_m():
    # n = 5 points, m = 50 draws each: no memorised sample below p = n m, many far above
    kw = dict(psi_n=0.05, m=50, lam=1e-4, d=100, K=200, steps=30, n_test=100, seed=3, theory=False)
    below, above = generate_rf_dsm(psi_p=2.0, **kw), generate_rf_dsm(psi_p=12.0, **kw)
    assert below.memorized_fraction["sde"] == 0 and above.memorized_fraction["sde"] > 0.1


@pytest.mark.parametrize("kw,name", [(dict(T=0.005), "T"), (dict(K=1), "K"), (dict(m=math.inf), "m"),
                                     (dict(lam=0.0), "lam"), (dict(steps=1), "steps")])
def test_generation_bad_input(kw, name):
    with pytest.raises(ParameterError) as e:
        generate_rf_dsm(**(dict(psi_n=0.2, psi_p=3.0, m=10, lam=1e-3, d=20, K=10) | kw))
    assert e.value.name == name


def test_simulated_empirical_score_error_approaches_the_theory():
    # the d -> inf theory plus the extreme-value correction -2 e(n) sigma_S/(D d) (the mean
    # maximum of n Gaussian log-weights) predicts the finite-d value
    kw = dict(psi_n=1.0, psi_p=2.0, m=1, t=0.5, lam=1e-3)
    th = float(rf_dsm(**kw).empirical_score_error)
    d = 200
    s = simulate_rf_dsm(**kw, d=d, seeds=4, seed=2)
    e_n = integrate.quad(lambda x: x * d * stats.norm.pdf(x) * stats.norm.cdf(x) ** (d - 1), -12, 12, limit=400)[0]
    rho, D = math.exp(-1), -math.expm1(-1)
    corr = -2 * e_n * math.sqrt(rho * (rho + D) + rho**2 / 2) / (D * math.sqrt(d))
    assert s.empirical_score_error < th  # below the limit, and approaching it
    assert abs(s.empirical_score_error - th - corr) < 0.05 * th


def test_independent_point_empirical_error_matches_the_limit_and_the_selection_is_the_gap():
    # with the softmax's point replaced by one independent of y the error is the theory's limit
    # already at d = 400 (to its test error's finite-d accuracy); the softmax's selection sits
    # below it by an amount of order sqrt(log n / d)
    for kw in (dict(psi_n=1.0, psi_p=2.0, m=1, t=0.5, lam=1e-3),
               dict(psi_n=1.0, psi_p=0.5, m=1, t=0.5, lam=1e-3, spectrum=[0.25, 1.75])):
        th = rf_dsm(**kw)
        s = simulate_rf_dsm(**kw, d=400, seeds=2, seed=7)
        assert abs(s.empirical_score_error_independent / float(th.empirical_score_error) - 1) < 0.015
        assert abs(s.test_error / float(th.test_error) - 1) < 0.015
        assert s.empirical_score_error < 0.9 * s.empirical_score_error_independent


def test_with_one_training_point_the_softmax_and_the_independent_point_coincide():
    s = simulate_rf_dsm(psi_n=0.01, psi_p=1.0, m=4, t=0.3, lam=1e-2, d=60, seeds=2, seed=3)
    assert s.params["n"] == 1
    assert s.empirical_score_error == pytest.approx(s.empirical_score_error_independent, rel=1e-12)


def test_cli_generate(capsys):
    assert cli.main(["simulate", "rf-dsm", "--psi-n", "0.2", "--psi-p", "3", "--m", "5", "--d", "30",
                     "--seeds", "1", "--generate", "30", "--steps", "8", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert {"memorized_fraction", "generated_kl_gaussian_fit", "score_error_integral",
            "score_error_integral_theory"} <= set(out)
    assert set(out["memorized_fraction"]) == {"sde", "ode"}
