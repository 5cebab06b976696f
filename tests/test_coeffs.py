"""Tests of rmtsolve.activations and rmtsolve.coeffs (Gaussian-equivalence coefficients).

The reference values are computed here by an independent route: 25-digit mpmath, the
kernel written as K(rho) = E sigma_t(g)^2 with the smoothed activation sigma_t (in closed
form for relu and erf, by an inner trapezoid rule for tanh) and a trapezoid rule over g,
whereas the package integrates E (sigmā(u) - sigmā(v))^2 / 2 or sums a Hermite series.
The high-precision tests at the end compare the 30- and 50-digit paths with mpmath.quad,
with closed forms of entire activations, and with 60-digit values of the previous
implementation.
"""
from __future__ import annotations

import math
import time

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


# ---------------------------------------------------------------- high precision, smooth

# mu_s^2 and mu_e^2 at 60 digits computed by the previous implementation (composite
# Gauss-Legendre moments and a tensor trapezoid rule in (u, w) on a disc, mpf arithmetic),
# which agrees with the present lattice path to 3e-64; spot-checked against nested
# mpmath.quad (tanh, t = 0.05, 40 digits: mu_s^2 = 0.019362405685000060179148795...).
_REFERENCE_60 = {
    ('tanh', '0.001'):
        ('2.7221071311831041658941503017350606527218938088188690361e-2',
         '1.9425472359921549708210709119975816389795554406553948776e-4'),
    ('tanh', '0.05'):
        ('1.9362405685000060179148795199296324094043968985943140663e-2',
         '8.052920350430196976874814909254040597072924646311089186e-3'),
    ('tanh', '0.3'):
        ('3.8532676614671717623243978343057755872688068826160894565e-3',
         '2.3562058373963085393699212274244589103848086749638140392e-2'),
    ('tanh', '0.5'):
        ('1.1242894749109943900887199870788684395733280035141382978e-3',
         '2.6291036560519262765934890121471496251543565628740091551e-2'),
    ('tanh', '2'):
        ('1.3538717921877061965273057736655974764709455656107774698e-7',
         '2.7415190648251038385403957377972998131369246537697668771e-2'),
    ('sigmoid', '0.001'):
        ('6.8253873799575020199846192441676443731445267312395849596e-4',
         '4.2742971659788404514038610412350275087623206540031483448e-6'),
    ('sigmoid', '0.05'):
        ('5.0329671330744068373313451625848719306875164570958504785e-4',
         '1.8351632185428835871673126919951227175446334806837659645e-4'),
    ('sigmoid', '0.3'):
        ('1.0902625338741035299072987175741200471016968281380390766e-4',
         '5.7778678177431868945913591370058746011304531096415773665e-4'),
    ('sigmoid', '0.5'):
        ('3.2541664612384225351580791028445857655818808441576639707e-5',
         '6.542713705493448170982849944295536071673961853363850046e-4'),
    ('sigmoid', '2'):
        ('3.9869699067962085266787251637251145178041330165228742257e-9',
         '6.8680904819182224624133910673283573970869718964494512143e-4'),
    ('gelu', '0.001'):
        ('9.523327055497986618143759477297759409695903356471366165e-2',
         '4.107404693711408526749399262601317853755569594982227761e-4'),
    ('gelu', '0.05'):
        ('7.7263261633938298450379862483569069467160979168388293203e-2',
         '1.8380749390412708583732672215668656415173611355823591223e-2'),
    ('gelu', '0.3'):
        ('2.7456343176492934886419100364023098039502323508000344646e-2',
         '6.818766784785807214769343433521462784283226701621153978e-2'),
    ('gelu', '0.5'):
        ('1.2212670968380984838050097759887098157673176550735848015e-2',
         '8.3431340055970022196062436939350627724661413973476036411e-2'),
    ('gelu', '2'):
        ('3.0032759246266822243122812892689010671100372986291705576e-5',
         '9.561397826510474021186941188634503687166349015122559272e-2'),
    ('softplus', '0.001'):
        ('2.1427919916152895371126658893633915378709874956474772852e-2',
         '8.6581884405836468367279336476338849156756594638637143857e-5'),
    ('softplus', '0.05'):
        ('1.7588799216752515099328418077161154494770254279229915414e-2',
         '3.9257025838062167401655201529490997330963772718834945814e-3'),
    ('softplus', '0.3'):
        ('6.444202074766876060655528183250818106550798166237718823e-3',
         '1.5070299725791855778838410046859436121315833384875691173e-2'),
    ('softplus', '0.5'):
        ('2.891867624156210670217688223104732008049559153279819201e-3',
         '1.8622634176402521169276250007005522219817072397833590795e-2'),
    ('softplus', '2'):
        ('7.1608408854566551154621672460537796953869278436022548156e-6',
         '2.1507340959673275184378476062864200448171244623269807741e-2'),
    ('x**3/3 + tanh(x)', '0.001'):
        ('4.4895282356762893222181293718634857157473512727841329517e-1',
         '2.7322516138185586022321019419332987594220808154407026506e-3'),
    ('x**3/3 + tanh(x)', '0.05'):
        ('3.3366916633643133533896721367855336386568506140933052077e-1',
         '1.1801590884501615548507782544972850646847214668452347705e-1'),
    ('x**3/3 + tanh(x)', '0.3'):
        ('7.3984585501355235133804180791401463252794717196093407839e-2',
         '3.7770048968009225569024085833688040708136249089776058998e-1'),
    ('x**3/3 + tanh(x)', '0.5'):
        ('2.2247436482060239139600786492101148625442275639998889555e-2',
         '4.2943763869938725168444425263618072170871493245385510826e-1'),
    ('x**3/3 + tanh(x)', '2'):
        ('2.7421906130651903794900930854064165771923737070659864728e-6',
         '4.5168233299083442563366554903519646391758001572014693183e-1'),
}

SMOOTH = ["tanh", "sigmoid", "gelu", "softplus", "x**3/3 + tanh(x)"]
PTS = [-mpmath.inf, -8, -4, -2, 0, 2, 4, 8, mpmath.inf]


def _sq(x):
    with mpmath.workdps(80):
        return x * x


def _rel(value, ref, floor=0):
    with mpmath.workdps(80):
        value, ref = mpmath.mpf(value), mpmath.mpf(ref)
        return abs(value - ref) / max(abs(ref), floor) if (ref or floor) else abs(value)


@pytest.mark.parametrize("dps", [30, 50])
@pytest.mark.parametrize("name", SMOOTH)
def test_mp_moments_match_mpmath_quad(name, dps):
    """mu0, mu1, mustar^2 of the lattice path against mpmath.quad (tanh-sinh, split)."""
    f = resolve_activation(name).mp_func
    got = coefficients(name, "0.5", dps=dps)
    with mpmath.workdps(dps + 8):
        mu0 = mpmath.quad(lambda x: mpmath.npdf(x) * f(x), PTS)
        mu1 = mpmath.quad(lambda x: mpmath.npdf(x) * x * f(x), PTS)
        m2 = mpmath.quad(lambda x: mpmath.npdf(x) * (f(x) - mu0 - mu1 * x) ** 2, PTS)
        scale = mpmath.sqrt(m2 + mu0 ** 2 + mu1 ** 2)
    rtol = mpmath.mpf(10) ** -(dps - 2)
    assert _rel(got.mu0, mu0, scale) <= rtol
    assert _rel(got.mu1, mu1, scale) <= rtol
    assert _rel(_sq(got.mustar), m2) <= rtol


@pytest.mark.parametrize("dps", [30, 50])
@pytest.mark.parametrize("name", SMOOTH)
def test_mp_squares_match_60_digit_reference(name, dps):
    """mu_s^2 and mu_e^2 in every regime (Gauss-Hermite or lattice double integral at small
    t, lattice at t = 0.05 and 0.3, Hermite series at 0.5 and 2) to 10^-(dps-2)."""
    rtol = mpmath.mpf(10) ** -(dps - 2)
    for (ref_name, t), (mu_s2, mu_e2) in _REFERENCE_60.items():
        if ref_name != name:
            continue
        got = coefficients(name, t, dps=dps)
        assert got.dps == dps and isinstance(got.mu_e, mpmath.mpf)
        assert _rel(_sq(got.mu_s), mu_s2) <= rtol, (t, "mu_s")
        assert _rel(_sq(got.mu_e), mu_e2) <= rtol, (t, "mu_e")
        with mpmath.workdps(80):
            mustar2 = mpmath.mpf(mu_s2) + mpmath.mpf(mu_e2)
        assert _rel(_sq(got.mustar), mustar2) <= rtol, t


def _closed_smooth(spec, t, s2=1):
    """Exact (mu0, mu1, mustar^2, mu_s^2, mu_e^2) of cos(a x), sin(a x), exp(b x) for
    preactivation variance v = e^-2t s2 + 1 - e^-2t and covariance c = e^-2t s2."""
    with mpmath.workdps(120):
        t, s2 = mpmath.mpf(t), mpmath.mpf(s2)
        c = mpmath.exp(-2 * t) * s2
        v = c - mpmath.expm1(-2 * t)
        kind, k = spec
        a2 = k * k * v                       # the frequency or rate, in units of sd(h)
        ca2 = k * k * c
        if kind == "cos":                    # E cos(k h_1) cos(k h_2) = e^-a2 cosh(k^2 c)
            mu0, mu1 = mpmath.exp(-a2 / 2), mpmath.mpf(0)
            second = (1 + mpmath.exp(-2 * a2)) / 2
            kern = mpmath.exp(-a2) * mpmath.cosh(ca2)
        elif kind == "sin":
            mu0, mu1 = mpmath.mpf(0), k * mpmath.exp(-a2 / 2)
            second = (1 - mpmath.exp(-2 * a2)) / 2
            kern = mpmath.exp(-a2) * mpmath.sinh(ca2)
        else:                                # exp(k h)
            mu0 = mpmath.exp(a2 / 2)
            mu1 = k * mu0
            second = mpmath.exp(2 * a2)
            kern = mpmath.exp(a2 + ca2)
        mustar2 = second - mu0 ** 2 - v * mu1 ** 2
        mu_s2 = kern - mu0 ** 2 - c * mu1 ** 2
        return mu0, mu1, mustar2, mu_s2, mustar2 - mu_s2


CLOSED_SMOOTH = [("cos(x)", ("cos", 1)), ("sin(2*x)", ("sin", 2)), ("exp(x)", ("exp", 1)),
                 ("exp(3*x)", ("exp", 3))]


@pytest.mark.parametrize("dps", [30, 50])
@pytest.mark.parametrize("expr,kind", CLOSED_SMOOTH)
def test_mp_smooth_closed_forms(expr, kind, dps):
    """Entire activations with closed forms, from t = 1e-30 (Gauss-Hermite in w, 15 digits
    cancelled in sigmā(u) - sigmā(v)) to t = 4 (Hermite series); exp(3x) needs a wider
    lattice and wide Gaussian weights."""
    rtol = mpmath.mpf(10) ** -(dps - 2)
    for t in ("1e-30", "1e-9", "1e-4", "0.01", "0.05", "0.3", "0.5", "4"):
        got = coefficients(expr, t, dps=dps)
        ref = _closed_smooth(kind, t)
        floor = mpmath.sqrt(ref[2] + ref[0] ** 2 + ref[1] ** 2)
        for key, value, r in zip(KEYS, (got.mu0, got.mu1, _sq(got.mustar), _sq(got.mu_s),
                                         _sq(got.mu_e)), ref):
            assert _rel(value, r, floor if key in ("mu0", "mu1") else 0) <= rtol, (t, key)


@pytest.mark.parametrize("s2", ["0.3", "2.5"])
def test_mp_smooth_variance_scaled(s2):
    rtol = mpmath.mpf(10) ** -28
    for t in ("0.001", "0.1", "1.0"):
        got = coefficients("cos(x)", t, s2=s2, dps=30)
        ref = _closed_smooth(("cos", 1), t, s2)
        assert _rel(got.mu0, ref[0]) <= rtol and abs(got.mu1) <= rtol
        for value, r in zip((_sq(got.mustar), _sq(got.mu_s), _sq(got.mu_e)), ref[2:]):
            assert _rel(value, r) <= rtol, t


def test_mp_kernel_smooth_closed_forms():
    rtol = mpmath.mpf(10) ** -38
    for rho in ("-1", "-0.999999", "-0.7", "-0.3", "0.2", "0.6", "0.9999", "1"):
        with mpmath.workdps(60):
            r = mpmath.mpf(rho)
            sin_ref = mpmath.exp(-4) * mpmath.sinh(4 * r)
            cos_ref = mpmath.exp(-1) * mpmath.cosh(r)
        assert _rel(kernel("sin(2*x)", rho, dps=40), sin_ref, mpmath.exp(-4)) <= rtol, rho
        assert _rel(kernel("cos(x)", rho, dps=40), cos_ref) <= rtol, rho


def test_mp_double_integral_schemes_agree():
    """The three smooth-path schemes against each other where two of them apply: the
    lattice double integral against the Hermite series (rho = 0.45) and against
    Gauss-Hermite in w (t = 1e-5)."""
    from rmtsolve import coeffs

    act, dps = resolve_activation("tanh"), 30
    wp, tol, _ = coeffs._mp_setup(dps)
    mom = coeffs._moments_mp(act, dps)
    c, _, _ = coeffs._series_lattice_mp(act, dps)
    with mpmath.workdps(wp):
        rho = mpmath.mpf("0.45")
        s = mpmath.sqrt(1 - rho * rho)
        series = mpmath.fsum(rho ** k * ck ** 2 for k, ck in enumerate(c))
        lattice, _ = coeffs._pair_lattice_mp(act, mom, rho, s, 0, False, tol, dps, 1)
        assert _rel(lattice, series) <= tol * 10
        t = mpmath.mpf("1e-5")
        rho, omr = mpmath.exp(-2 * t), -mpmath.expm1(-2 * t)
        s = mpmath.sqrt(omr * (1 + rho))
        gh, _ = coeffs._pair_gh_mp(act, mom, rho, s, mom.mu1, True, tol, dps, 0)
        q = math.ceil(float(rho) / 2 ** mom.level / (0.3 * float(s)))
        lattice, _ = coeffs._pair_lattice_mp(act, mom, rho, s, mom.mu1, True, tol, dps, q)
        assert _rel(gh, lattice) <= tol * 10


@pytest.mark.parametrize("name", SMOOTH + ["cos(x)", "exp(x)"])
def test_double_agrees_with_30_digits(name):
    for t in (1e-3, 0.05, 0.3, 0.35, 0.5, 2.0, 8.0):
        hi, lo = coefficients(name, repr(t), dps=30), coefficients(name, t)
        for key in KEYS:
            a, b = float(getattr(hi, key)), getattr(lo, key)
            assert abs(a - b) <= 1e-12 * abs(a) + 1e-15 * float(hi.mustar + abs(hi.mu0)
                                                               + abs(hi.mu1)), (t, key, a, b)


def test_mp_degenerate_activations():
    zero = coefficients("0*x", "0.1", dps=30)
    assert all(getattr(zero, key) == 0 for key in KEYS)
    assert kernel("0*x", "0.9", dps=30) == 0 and kernel("0*x", "-1", dps=30) == 0
    one = coefficients("1", "0.1", dps=30)
    assert one.mu0 == 1 and one.mustar < 1e-30 and one.mu_s <= one.mustar


def test_mp_tanh_50_digits_is_fast():
    """The 50-digit tanh point of issue 10 (6 s of CPU before the lattice path)."""
    from rmtsolve import coeffs

    coeffs._clear_mp_caches()
    start = time.process_time()
    got = coefficients("tanh", "0.5", dps=50)
    elapsed = time.process_time() - start
    assert _rel(_sq(got.mu_s), _REFERENCE_60["tanh", "0.5"][0]) <= mpmath.mpf(10) ** -48
    assert elapsed < 2.0, elapsed


@pytest.mark.slow
def test_mp_kinked_small_t_converges():
    """Split Gauss-Legendre at t = 0.05 needs 24 vs 48 nodes per panel at 30 digits (the
    12 vs 24 estimate falls short); it used to raise ConvergenceError."""
    quad, closed = coefficients("Max(x, 0)", "0.05", dps=30), coefficients("relu", "0.05",
                                                                            dps=30)
    for key in KEYS:
        assert _close(getattr(quad, key), getattr(closed, key), 1e-29, 1e-31), key
