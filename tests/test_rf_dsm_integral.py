"""Diffusion-time integral of the RF-DSM score error."""
import numpy as np
import pytest

from rmtsolve import ParameterError, rf_dsm, score_error_integral

KW = dict(psi_n=1.0, psi_p=2.0, m=4, lam=1e-3)


def _dense_trapezoid(weight, t0, T, n=20001):
    t = np.geomspace(t0, T, n)
    y = weight(t) * rf_dsm(**KW, t=t).score_error
    return np.trapezoid(y, t)


@pytest.mark.parametrize("weight", [None, lambda t: np.ones_like(t), lambda t: np.exp(-t)])
def test_matches_an_independent_dense_quadrature(weight):
    r = score_error_integral(**KW, t0=0.02, T=3.0, weight=weight)
    w = (lambda t: 1 / (1 - np.exp(-2 * t))) if weight is None else weight
    assert r.value == pytest.approx(_dense_trapezoid(w, 0.02, 3.0), rel=1e-6)
    assert r.error < 1e-7 * abs(r.value)


def test_additive_over_intervals():
    a = score_error_integral(**KW, t0=0.05, T=0.5).value
    b = score_error_integral(**KW, t0=0.5, T=2.0).value
    assert a + b == pytest.approx(score_error_integral(**KW, t0=0.05, T=2.0).value, rel=1e-8)


@pytest.mark.parametrize("kw,name", [(dict(t0=0.0, T=1.0), "t0"), (dict(t0=1.0, T=0.5), "T"),
                                     (dict(t0=0.1, T=1.0, weight=3.0), "weight")])
def test_bad_input(kw, name):
    with pytest.raises(ParameterError) as e:
        score_error_integral(**KW, **kw)
    assert e.value.name == name


@pytest.mark.parametrize("spectrum", [[0.0, 2.0], [0.25, 1.75, 1.0], "powerlaw:0.5"])
def test_anisotropic_matches_dense_quadrature_of_the_score_error(spectrum):
    # score_error = test - test_error_floor with the floor of Sigma (not e^{-2t})
    r = score_error_integral(**KW, t0=0.05, T=2.0, spectrum=spectrum)
    t = np.geomspace(0.05, 2.0, 2001)
    res = rf_dsm(**KW, t=t, spectrum=spectrum)
    assert np.allclose(res.score_error, res.test_error - res.test_error_floor)
    dense = np.trapezoid(res.score_error / (1 - np.exp(-2 * t)), t)
    assert r.value == pytest.approx(dense, rel=2e-6)
    assert r.params["spectrum"] == res.params["spectrum"]
