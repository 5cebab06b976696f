"""RF-DSM theory: cross-checks against independent formulas, limits and properties."""
import math

import mpmath
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import integrate

from rmtsolve import ParameterError, coefficients, rf_dsm

from _mei_montanari import rf_dsm_m1_test_error


@pytest.mark.parametrize("act", ["relu", "tanh", "erf"])
@pytest.mark.parametrize("psi_n,psi_p,t,lam", [(1, 0.5, 0.5, 1e-2), (1, 2, 0.5, 1e-2),
                                               (2, 1, 1.0, 1e-1), (0.5, 3, 0.2, 1e-3)])
def test_m1_equals_mei_montanari(act, psi_n, psi_p, t, lam):
    c = coefficients(act, t)
    expected = rf_dsm_m1_test_error(psi_n, psi_p, t, lam, c.mu1, c.mustar)
    got = rf_dsm(psi_n=psi_n, psi_p=psi_p, m=1, t=t, lam=lam, activation=act).test_error
    assert got == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize("psi_n,t", [(2.0, 0.5), (4.0, 1.2)])
def test_linear_ridgeless_is_ordinary_least_squares(psi_n, t):
    # Linear features W y/sqrt(d) with p > d span y: ridgeless = OLS in d dimensions with
    # noise variance e^{-2t}: test = e^{-2t} psi_n/(psi_n - 1), train = e^{-2t} (1 - 1/psi_n).
    r = rf_dsm(psi_n=psi_n, psi_p=3.0, m=1, t=t, lam=0.0, activation="linear")
    noise = math.exp(-2 * t)
    assert float(r.test_error) == pytest.approx(noise * psi_n / (psi_n - 1), rel=1e-8)
    assert float(r.train_error) == pytest.approx(noise * (1 - 1 / psi_n), rel=1e-8)


def test_large_ridge_gives_unit_test_error():
    r = rf_dsm(psi_n=1, psi_p=2, m=3, t=0.5, lam=np.array([1e4, 1e6, 1e8]))
    assert np.all(np.diff(np.abs(r.test_error - 1)) < 0)
    assert abs(r.test_error[-1] - 1) < 1e-7


def _population_optimum(act, psi_p, t, lam):
    # n -> inf: B = population ridge solution; with s = mu1^2 x + mustar^2 over the MP law of
    # W W^T/d, test = 1 - D mu1^2 psi_p int x (2/(s + lam) - s/(s + lam)^2) dMP(x).
    c = coefficients(act, t)
    a, b = (1 - math.sqrt(psi_p)) ** 2, (1 + math.sqrt(psi_p)) ** 2
    dens = lambda x: math.sqrt((b - x) * (x - a)) / (2 * math.pi * psi_p * x)

    def integrand(x):
        s = c.mu1**2 * x + c.mustar**2
        return x * (2 / (s + lam) - s / (s + lam) ** 2) * dens(x)

    val, _ = integrate.quad(integrand, a, b, epsabs=1e-13, epsrel=1e-12)
    return 1 - (1 - math.exp(-2 * t)) * c.mu1**2 * psi_p * val


@pytest.mark.parametrize("m", [1, 4, math.inf])
def test_infinite_data_approaches_population_optimum(m):
    target = _population_optimum("tanh", 0.7, 0.4, 1e-2)
    errs = [abs(float(rf_dsm(psi_n=pn, psi_p=0.7, m=m, t=0.4, lam=1e-2, activation="tanh").test_error) - target)
            for pn in (1e2, 1e3, 1e4)]
    assert errs[0] > errs[1] > errs[2]
    assert errs[2] < 1e-4


def test_large_m_approaches_m_infinity():
    kw = dict(psi_n=0.8, psi_p=2.5, t=0.3, lam=1e-2)
    inf = rf_dsm(m=math.inf, **kw)
    gaps = [abs(float(rf_dsm(m=m, **kw).test_error - inf.test_error)) for m in (10, 1000, 10**5)]
    assert gaps[0] > 50 * gaps[1] > 2500 * gaps[2] and gaps[2] < 1e-4  # O(1/m)
    assert float(rf_dsm(m=10**6, **kw).train_error) == pytest.approx(float(inf.train_error), abs=1e-5)


@pytest.mark.parametrize("m", [1, 3, math.inf])
def test_double_and_mpmath_agree(m):
    kw = dict(psi_n=1.3, psi_p=2.2, m=m, t=0.7, lam=3e-3, activation="erf")
    lo = rf_dsm(**kw)
    hi = rf_dsm(dps=30, **kw)
    assert isinstance(hi.test_error, mpmath.mpf)
    for k in ("test_error", "train_error", "score_error"):
        assert abs(float(getattr(lo, k)) - float(getattr(hi, k))) < 1e-10 * max(1, abs(float(getattr(hi, k))))
    assert hi.residual < 1e-30


def test_fifty_digits_are_self_consistent():
    # Two precisions agree to (nearly) all digits of the lower one.
    kw = dict(psi_n=1, psi_p=2, m=2, t=0.5, lam=1e-2, activation="relu")
    a, b = rf_dsm(dps=30, **kw), rf_dsm(dps=50, **kw)
    with mpmath.workdps(50):
        assert abs(a.test_error - b.test_error) < mpmath.mpf(10) ** -27


def test_ridgeless_overparameterised_limit_is_approached_linearly():
    kw = dict(psi_n=1, psi_p=2.5, m=2, t=0.5)
    r0 = float(rf_dsm(lam=0.0, **kw).test_error)
    d1, d2 = (float(rf_dsm(lam=lam, **kw).test_error) - r0 for lam in (1e-7, 1e-8))
    assert d1 / d2 == pytest.approx(10, rel=1e-2)  # O(lam): lam = 0 is the limit itself


def test_grid_broadcasts_in_one_call():
    pn, pp = np.meshgrid([0.5, 1, 2], [0.5, 1.5, 3, 6])
    r = rf_dsm(psi_n=pn, psi_p=pp, m=2, t=0.5, lam=1e-2)
    assert r.test_error.shape == (4, 3)
    single = rf_dsm(psi_n=2, psi_p=3, m=2, t=0.5, lam=1e-2)
    assert r.test_error[2, 2] == pytest.approx(float(single.test_error), rel=1e-12)


@settings(max_examples=40, deadline=None)
@given(psi_n=st.floats(0.05, 20), psi_p=st.floats(0.05, 20), m=st.sampled_from([1, 2, 5, 50, math.inf]),
       t=st.floats(0.02, 3), lam=st.floats(1e-4, 10), act=st.sampled_from(["relu", "tanh", "erf"]))
def test_errors_respect_their_bounds(psi_n, psi_p, m, t, lam, act):
    r = rf_dsm(psi_n=psi_n, psi_p=psi_p, m=m, t=t, lam=lam, activation=act)
    floor = math.exp(-2 * t)
    assert np.isfinite(r.test_error) and np.isfinite(r.train_error)
    assert r.test_error >= floor * (1 - 1e-9)
    assert r.train_error >= -1e-12
    assert r.residual < 1e-10
    assert float(r.gap) == pytest.approx(float(r.test_error - r.train_error))


@pytest.mark.parametrize("kw,name", [
    (dict(psi_n=0), "psi_n"), (dict(psi_p=-1), "psi_p"), (dict(t=0), "t"), (dict(lam=-1e-3), "lam"),
    (dict(m=0), "m"), (dict(m=2.5), "m"), (dict(psi_n=math.nan), "psi_n"), (dict(t=math.inf), "t"),
    (dict(activation="nope"), "activation"), (dict(psi_n=1, psi_p=3, m=3, lam=0.0), "lam"),
])
def test_bad_input_names_the_parameter(kw, name):
    base = dict(psi_n=1.0, psi_p=2.0, m=2, t=0.5, lam=1e-2)
    with pytest.raises(ParameterError) as e:
        rf_dsm(**(base | kw))
    assert e.value.name == name
