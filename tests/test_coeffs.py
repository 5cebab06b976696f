"""Tests of rmtsolve.activations and rmtsolve.coeffs (Gaussian-equivalence coefficients).

The reference values are computed here by an independent route: 25-digit mpmath, the
kernel written as K(rho) = E sigma_t(g)^2 with the smoothed activation sigma_t (in closed
form for relu and erf, by an inner trapezoid rule for tanh) and a trapezoid rule over g,
whereas the package integrates E (sigmā(u) - sigmā(v))^2 / 2 or sums a Hermite series.
"""
from __future__ import annotations

import math

import mpmath
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from rmtsolve.activations import ACTIVATIONS, Activation, resolve_activation
from rmtsolve.coeffs import KEYS, coefficients, coefficients_array, kernel
from rmtsolve.errors import ConvergenceError, ParameterError

T_VALUES = ("0.05", "0.5", "1.5")


def _trapezoid(f, step, half_width):
    n = int(half_width / step)
    return step * mpmath.fsum(f(i * step) for i in range(-n, n + 1))


def _smoothed(name, t):
    """sigma_t(y) = E_w sigma(e^-t y + sqrt(D) w) at the current mpmath precision."""
    m, s = mpmath.exp(-t), mpmath.sqrt(-mpmath.expm1(-2 * t))
    if name == "relu":      # E (a + s w)_+ = a Phi(a/s) + s phi(a/s)
        return lambda y: m * y * mpmath.ncdf(m * y / s) + s * mpmath.npdf(m * y / s)
    if name == "erf":       # E erf(a + s w) = erf(a / sqrt(1 + 2 s^2))
        return lambda y: mpmath.erf(m * y / mpmath.sqrt(1 + 2 * s * s))
    return lambda y: _trapezoid(lambda w: mpmath.npdf(w) * mpmath.tanh(m * y + s * w),
                                mpmath.mpf(1) / 8, 11)


_MP_SIGMA = {"relu": lambda x: max(x, 0), "tanh": mpmath.tanh, "erf": mpmath.erf}


def _reference(name, t):
    """(mu0, mu1, mustar, mu_s, mu_e) to ~24 digits, independently of rmtsolve."""
    with mpmath.workdps(25):
        t = mpmath.mpf(t)
        sig = _MP_SIGMA[name]
        pts = [-mpmath.inf, 0, mpmath.inf]
        mu0 = mpmath.quad(lambda x: mpmath.npdf(x) * sig(x), pts)
        mu1 = mpmath.quad(lambda x: mpmath.npdf(x) * x * sig(x), pts)
        second = mpmath.quad(lambda x: mpmath.npdf(x) * sig(x) ** 2, pts)
        sig_t = _smoothed(name, t)
        # sigma_t is analytic in a strip, so the trapezoid rule converges geometrically
        k = _trapezoid(lambda y: mpmath.npdf(y) * sig_t(y) ** 2, mpmath.mpf(1) / 8, 11)
        rho = mpmath.exp(-2 * t)
        mustar2 = second - mu0 ** 2 - mu1 ** 2
        mu_s2 = k - mu0 ** 2 - rho * mu1 ** 2
        return (mu0, mu1, mpmath.sqrt(mustar2), mpmath.sqrt(mu_s2),
                mpmath.sqrt(mustar2 - mu_s2))


_REFERENCES = {}


def reference(name, t):
    if (name, t) not in _REFERENCES:
        _REFERENCES[name, t] = _reference(name, t)
    return _REFERENCES[name, t]


def _close(value, ref, rtol, floor):
    with mpmath.workdps(40):
        return abs(mpmath.mpf(value) - ref) <= rtol * abs(ref) + floor


# ---------------------------------------------------------------- accuracy

@pytest.mark.parametrize("name", ["relu", "tanh", "erf"])
@pytest.mark.parametrize("t", T_VALUES)
def test_double_matches_independent_reference(name, t):
    got = coefficients(name, float(t))
    for key, ref in zip(KEYS, reference(name, t)):
        assert _close(getattr(got, key), ref, 1e-8, 1e-15), (key, getattr(got, key), ref)


@pytest.mark.parametrize("name", ["relu", "erf"])
@pytest.mark.parametrize("t", T_VALUES)
def test_mp_closed_forms_match_reference(name, t):
    got = coefficients(name, t, dps=30)
    assert got.dps == 30 and isinstance(got.mu_s, mpmath.mpf)
    for key, ref in zip(KEYS, reference(name, t)):
        # the reference carries 25 digits, less what mu_s^2 = K - mu0^2 - rho mu1^2 cancels
        assert _close(getattr(got, key), ref, 1e-20, 1e-24), key


@pytest.mark.parametrize("expr,name,t", [
    ("erf(x)", "erf", "0.05"),     # no kinks: trapezoid rule in (u, w)
    ("erf(x)", "erf", "1.5"),      # Hermite series
    ("Max(x, 0)", "relu", "0.3"),  # kink: split Gauss-Legendre
    ("Max(x, 0)", "relu", "1.5"),
])
def test_mp_quadrature_matches_closed_form_to_25_digits(expr, name, t):
    quad, closed = coefficients(expr, t, dps=30), coefficients(name, t, dps=30)
    for key in KEYS:
        assert _close(getattr(quad, key), getattr(closed, key), 1e-25, 1e-29), key


@pytest.mark.parametrize("expr,name", [("Max(x, 0)", "relu"), ("erf(x)", "erf")])
@pytest.mark.parametrize("t", [1e-7, 1e-3, 0.05, 0.34, 0.35, 0.5, 1.5, 8.0, 40.0])
def test_double_quadrature_matches_closed_form(expr, name, t):
    quad, closed = coefficients(expr, t), coefficients(name, t)
    for key in KEYS:
        a, b = getattr(quad, key), getattr(closed, key)
        assert abs(a - b) <= 1e-11 * abs(b) + 1e-15, (key, a, b)


def test_closed_forms_are_stable_in_both_limits():
    # relu: mu_e^2 ~ (1 - rho)(1/4 - ...) -> 2t * 1/4 at small t (E sigma'^2 - mu1^2 = 1/4);
    # mu_s^2 ~ rho^2 / (4 pi) at large t (c_2^2 = 1/(4 pi))
    small = coefficients("relu", 1e-12)
    assert small.mu_e ** 2 == pytest.approx(2e-12 / 4, rel=1e-5)
    big = coefficients("relu", 30.0)
    assert big.mu_s ** 2 == pytest.approx(math.exp(-120) / (4 * math.pi), rel=1e-12)
    # erf: mu_s^2 = (2/pi)(asin(2rho/3) - 2rho/3) ~ (2/pi)(2 rho/3)^3 / 6
    big = coefficients("erf", 30.0)
    assert big.mu_s ** 2 == pytest.approx(2 / math.pi * (2 * math.exp(-60) / 3) ** 3 / 6,
                                          rel=1e-12)


# ---------------------------------------------------------------- other activations

def _callable(z):
    return np.sin(z) + 0.5 * z * np.exp(-z * z)


CONSISTENCY = ["sigmoid", "softplus", "gelu", "tanh", "x**3/3 + tanh(x)",
               "Max(x, 0) - Max(x - 1, 0)", _callable]


@pytest.mark.parametrize("spec", CONSISTENCY)
def test_consistency_and_limits(spec):
    for t in (1e-6, 0.01, 0.3, 0.4, 2.0):
        c = coefficients(spec, t)
        assert c.mu_s ** 2 + c.mu_e ** 2 == pytest.approx(c.mustar ** 2, rel=1e-12)
        assert 0 <= c.mu_s <= c.mustar and 0 <= c.mu_e <= c.mustar
    tiny, huge = coefficients(spec, 1e-10), coefficients(spec, 25.0)
    assert tiny.mu_e <= 1e-3 * tiny.mustar and tiny.mu_s == pytest.approx(tiny.mustar, rel=1e-9)
    assert huge.mu_s <= 1e-20 * huge.mustar and huge.mu_e == pytest.approx(huge.mustar)


@pytest.mark.parametrize("spec", CONSISTENCY)
def test_monte_carlo(spec):
    t = 0.4
    c = coefficients(spec, t)
    sig = resolve_activation(spec)
    rng = np.random.default_rng(20260101)
    n = 10 ** 6
    rho = math.exp(-2 * t)
    u, w = rng.standard_normal(n), rng.standard_normal(n)
    v = rho * u + math.sqrt(1 - rho * rho) * w
    su, sv = sig(u), sig(v)
    cu, cv = su - c.mu0 - c.mu1 * u, sv - c.mu0 - c.mu1 * v
    samples = {
        "mu0": (su, c.mu0),
        "mu1": (u * su, c.mu1),
        "mustar": (cu * cu, c.mustar ** 2),
        "mu_s": (cu * cv, c.mu_s ** 2),
        "mu_e": (0.5 * (cu - cv) ** 2, c.mu_e ** 2),
    }
    for key, (x, exact) in samples.items():
        assert abs(x.mean() - exact) <= 5 * x.std() / math.sqrt(n), key


@settings(max_examples=40, deadline=None)
@given(t=st.floats(min_value=1e-8, max_value=60.0))
def test_mu_s_decreases_with_t(t):
    a, b = coefficients("softplus", t), coefficients("softplus", t * 1.5)
    assert b.mu_s <= a.mu_s * (1 + 1e-12)
    assert a.mu_s ** 2 + a.mu_e ** 2 == pytest.approx(a.mustar ** 2, rel=1e-12)


# ---------------------------------------------------------------- kernel and arrays

def test_kernel_closed_forms_match_quadrature():
    rho = np.array([-1.0, -0.8, -0.3, 0.0, 0.45, 0.6, 0.99, 1.0])
    for expr, name in [("Max(x, 0)", "relu"), ("erf(x)", "erf")]:
        np.testing.assert_allclose(kernel(expr, rho), kernel(name, rho), rtol=1e-11, atol=1e-14)
    assert kernel("linear", 0.3) == pytest.approx(0.3)
    assert kernel("relu", 1.0) == pytest.approx(0.5)
    assert kernel("relu", 0.0) == pytest.approx(1 / (2 * math.pi))


def test_kernel_mp():
    k = kernel("erf", "0.7", dps=40)
    with mpmath.workdps(40):
        assert abs(k - 2 / mpmath.pi * mpmath.asin(mpmath.mpf("1.4") / 3)) < mpmath.mpf("1e-39")
    k = kernel("tanh", "0.2", dps=20)
    with mpmath.workdps(20):
        t = -mpmath.log(mpmath.mpf("0.2")) / 2
    c = coefficients("tanh", t, dps=20)
    with mpmath.workdps(30):
        assert abs(k - c.mu1 ** 2 * mpmath.mpf("0.2") - c.mu_s ** 2) < mpmath.mpf("1e-19")


def test_coefficients_array():
    t = np.array([[0.1, 2.0], [0.1, 0.7]])
    out = coefficients_array("tanh", t)
    assert set(out) == set(KEYS)
    for key in KEYS:
        assert out[key].shape == t.shape
        assert out[key][1, 1] == getattr(coefficients("tanh", 0.7), key)
    assert out["mu_s"][0, 0] == out["mu_s"][1, 0]


def test_as_dict():
    c = coefficients("gelu", 0.5)
    assert list(c.as_dict()) == list(KEYS) and c.activation == "gelu" and c.dps is None


# ---------------------------------------------------------------- activations

def test_named_activations():
    x = np.array([-800.0, -3.0, -0.5, 0.0, 0.5, 3.0, 800.0])
    with np.errstate(over="raise", invalid="raise"):
        for name in ACTIVATIONS:
            act = resolve_activation(name.upper())
            y = act(x)
            assert y.shape == x.shape and np.all(np.isfinite(y)) and y is not x
            for xi, yi in zip(x[1:-1], y[1:-1]):
                assert float(act.mp_func(mpmath.mpf(xi))) == pytest.approx(yi, rel=1e-14,
                                                                            abs=1e-300)
    assert resolve_activation("softplus")(x)[-1] == 800.0
    assert resolve_activation("gelu")(np.array([1.0]))[0] == pytest.approx(0.8413447460685429)
    assert resolve_activation("relu") == resolve_activation("ReLU")


def test_expression_parsing_and_kinks():
    act = resolve_activation("abs(x - 1/3) + Heaviside(x - 2)")
    assert act.kinks == pytest.approx((1 / 3, 2.0))
    with mpmath.workdps(50):
        assert abs(act.mp_kinks()[0] - mpmath.mpf(1) / 3) < mpmath.mpf("1e-49")
    assert resolve_activation("Max(x**2 - 2, 0)").kinks == pytest.approx((-2 ** 0.5, 2 ** 0.5))
    assert resolve_activation("x^2").name == "x**2"
    assert resolve_activation("x**3/3 + tanh(x)")(np.array([3.0]))[0] == pytest.approx(
        9 + math.tanh(3))


def test_callable_and_dps():
    act = resolve_activation(_callable)
    assert isinstance(act, Activation) and act.mp_func is None
    with pytest.raises(ParameterError, match="activation"):
        coefficients(_callable, 0.5, dps=20)
    mp_ok = resolve_activation(lambda z: mpmath.tanh(z) if isinstance(z, mpmath.mpf)
                               else np.tanh(z))
    c = coefficients(mp_ok, "1.5", dps=20)
    assert _close(c.mu_s, coefficients("tanh", "1.5", dps=20).mu_s, 1e-19, 0)


def test_undetected_jump_raises_convergence_error():
    with pytest.raises(ConvergenceError):
        coefficients(lambda z: np.sign(z - 0.3), 0.5)


def test_tiny_t():
    # closed forms hold to any t; quadrature in double stops where rounding would dominate
    assert coefficients("relu", 1e-300).mu_e == pytest.approx(math.sqrt(1e-300 / 2), rel=1e-6)
    tanh = coefficients("tanh", 1e-18)
    assert tanh.mu_e == pytest.approx(coefficients("tanh", 1e-18, dps=20).mu_e, rel=1e-8)
    with pytest.raises(ConvergenceError, match="dps"):
        coefficients("tanh", 1e-25)


@pytest.mark.parametrize("spec", ["foo", "x**", "y", "x + y", "x.real", "__import__('os')",
                                  "log(x)", "1/x", "exp(x**2)", "(x, 1)", "x > 0", "9**9**9**9",
                                  3.5])
def test_bad_activation(spec):
    with pytest.raises(ParameterError, match="activation"):
        coefficients(spec, 0.5)


@pytest.mark.parametrize("t", [0.0, -1.0, float("nan"), float("inf")])
def test_bad_t(t):
    with pytest.raises(ParameterError, match="^t "):
        coefficients("relu", t)
    with pytest.raises(ParameterError, match="^t "):
        coefficients_array("relu", [0.5, t])


def test_bad_rho_and_dps():
    with pytest.raises(ParameterError, match="rho"):
        kernel("relu", 1.5)
    with pytest.raises(ParameterError, match="dps"):
        coefficients("relu", 0.5, dps=3)
