"""Marchenko-Pastur and generalised Marchenko-Pastur laws (rmtsolve.spectral)."""
from __future__ import annotations

import math
from fractions import Fraction

import mpmath
import numpy as np
import pytest
import scipy.integrate as si
from hypothesis import given, settings
from hypothesis import strategies as st

from rmtsolve.errors import ParameterError
from rmtsolve.spectral import GeneralizedMarchenkoPastur, MarchenkoPastur, StieltjesResult

ratios = st.floats(0.05, 6.0)
FAST = settings(deadline=None, max_examples=25, derandomize=True)


def upper_z():
    return st.tuples(st.floats(-5, 30), st.floats(1e-6, 20)).map(lambda p: complex(p[0], p[1]))


def narayana(c, k):
    return sum(c**j / Fraction(j + 1) * math.comb(k, j) * math.comb(k - 1, j) for j in range(k))


def physical_root(c, z, dps=100):
    """Reference: the root of the MP quadratic in C+ (exactly one lies there when Im z > 0),
    at z + i 1e-30 for real z, with 100 digits."""
    if complex(z).imag < 0:
        return physical_root(c, complex(z).conjugate(), dps).conjugate()
    with mpmath.workdps(dps):
        c, z = mpmath.mpf(c), mpmath.mpc(z)
        if mpmath.im(z) == 0:
            z += mpmath.mpc(0, "1e-30")
        A, B = c * z, z - 1 + c
        disc = mpmath.sqrt(B * B - 4 * A)
        roots = [(-B + disc) / (2 * A), (-B - disc) / (2 * A)]
        up = [r for r in roots if mpmath.im(r) > 0]
        assert len(up) == 1
        return complex(up[0])


def mp_cdf(law: MarchenkoPastur, x):
    """CDF of the continuous part, from the density in the angle variable (smooth at the
    square-root edges)."""
    a, b = law.edges
    th = np.linspace(0, np.pi, 20001)
    xs = (a + b) / 2 - (b - a) / 2 * np.cos(th)
    f = law.density(xs) * (b - a) / 2 * np.sin(th)
    cum = np.concatenate([[0], np.cumsum((f[1:] + f[:-1]) / 2 * np.diff(th))])
    return np.interp(x, xs, cum, left=0, right=cum[-1])


def kolmogorov(eigs, cdf):
    e = np.sort(eigs)
    n = e.size
    F = cdf(e)
    return max(np.max(np.arange(1, n + 1) / n - F), np.max(F - np.arange(n) / n))


# -- Marchenko-Pastur: properties -----------------------------------------------------------
@FAST
@given(ratios, upper_z())
def test_mp_imaginary_part_positive(c, z):
    s = MarchenkoPastur(c).stieltjes(z).value
    assert s.imag > 0
    assert MarchenkoPastur(c).stieltjes(z.conjugate()).value == pytest.approx(s.conjugate(), rel=1e-12)


@FAST
@given(ratios, st.floats(0, 2 * np.pi))
def test_mp_large_z(c, theta):
    z = 1e6 * np.exp(1j * theta)
    s = MarchenkoPastur(c).stieltjes(z).value
    # z s = -1 - E[x]/z + ...: the law has mass 1 and mean 1
    assert abs(z * s + 1 + 1 / z) < 1e-10 * (1 + c) ** 2


@settings(deadline=None, max_examples=12, derandomize=True)
@given(ratios)
def test_mp_density_mass_and_moments(c):
    law = MarchenkoPastur(c)
    a, b = law.edges
    mass = si.quad(law.density, a, b, limit=200, epsabs=1e-12)[0]
    assert mass == pytest.approx(1 - law.atom, abs=1e-8)
    for k in range(1, 6):
        mk = si.quad(lambda x: x**k * law.density(x), a, b, limit=200, epsabs=1e-12)[0]
        assert mk == pytest.approx(float(narayana(Fraction(c), k)), rel=1e-7)
        assert law.moment(k) == pytest.approx(mk, rel=1e-7)


def test_mp_moments_exact():
    for c in ("1/3", Fraction(5, 2), 2, "0.3"):
        law = MarchenkoPastur(c)
        for k in range(8):
            m = law.moment(k)
            assert isinstance(m, Fraction)
            assert m == (1 if k == 0 else narayana(Fraction(c), k))
    assert isinstance(MarchenkoPastur(0.3).moment(3), float)
    assert MarchenkoPastur(0.3).moment(3) == pytest.approx(float(narayana(Fraction(3, 10), 3)), rel=1e-15)
    with pytest.raises(ParameterError):
        MarchenkoPastur(0.3).moment(-1)


# -- Marchenko-Pastur: closed form against the quadratic -------------------------------------
@pytest.mark.parametrize("c", [0.3, 1.0, 2.5])
def test_mp_closed_form_matches_quadratic_root(c):
    law = MarchenkoPastur(c)
    a, b = law.edges
    zs = [a - 1e-6, b + 1e-6, a + 1e-6, b - 1e-6, (a + b) / 2, 0.5 * (a + b) + 1e-9j,
          a + 1e-7j, b + 1e-7j, 1e-8 + 1e-8j, -1e-3, -2.0, 10.0, 3 - 2j]
    if c < 1:
        zs.append(0.0)
    for z in zs:
        res = law.stieltjes(z)
        ref = physical_root(c, z)
        assert res.value == pytest.approx(ref, rel=1e-9), z
        assert res.residual < 1e-12
    if c < 1:
        assert law.stieltjes(0.0).value == pytest.approx(1 / (1 - c), rel=1e-14)


@pytest.mark.parametrize("c", [1.0, 1 - 1e-12, 1 + 1e-12, 1e-12, 1e12])
def test_mp_extreme_parameters_match_mpmath(c):
    # near c = 1 the lower edge (1 - sqrt c)^2 and z + c - 1 must not cancel
    law = MarchenkoPastur(c)
    zs = [1e-20j, -1e-20, 1e-150 + 1e-150j, 1e-22, 1e200, -1e200j, 2.0, law.edges[1] * (1 + 1e-6)]
    ref = [complex(v) for v in law.stieltjes(zs, dps=40).value]
    got = law.stieltjes(np.array(zs)).value
    for z, g, r in zip(zs, got, ref):
        assert abs(g - r) <= 1e-9 * abs(r), z  # near an edge the conditioning costs digits


def test_mp_vectorised_and_density_output():
    law = MarchenkoPastur(0.5)
    z = np.array([[0.05, 1.0], [2.0 + 0.5j, 4.0]])  # support [0.086, 2.91]
    res = law.stieltjes(z)
    assert res.value.shape == (2, 2)
    assert np.isnan(res.density[1, 0])
    assert res.density[0, 1] == pytest.approx(res.value[0, 1].imag / np.pi, rel=1e-12)
    assert res.density[0, 0] == 0 and res.density[1, 1] == 0  # outside [a, b]
    d = res.as_dict()
    assert set(d) >= {"stieltjes", "density", "residual", "iterations", "converged", "dps"}
    assert "density" not in law.stieltjes(1 + 1j).as_dict()


def test_mp_finite_size_kolmogorov():
    rng = np.random.default_rng(20240601)
    for N, d in ((2000, 1000), (500, 1000)):
        X = rng.standard_normal((N, d))
        # the non-zero eigenvalues of X^T X / N are those of X X^T / N (the smaller matrix)
        eigs = np.linalg.eigvalsh(X.T @ X / N if d <= N else X @ X.T / N)
        law = MarchenkoPastur(d / N)
        assert law.atom == pytest.approx(max(0, d - N) / d)
        cont = lambda x: mp_cdf(law, x) / (1 - law.atom)  # noqa: E731
        assert kolmogorov(eigs, cont) < 0.02


def test_mp_log_moment():
    for c in (0.05, 0.3, 0.9):
        law = MarchenkoPastur(c)
        a, b = law.edges
        ref = si.quad(lambda x: np.log(x) * law.density(x), a, b, limit=200)[0]
        assert law.log_moment() == pytest.approx(ref, rel=1e-8)
        assert law.log_moment_nonzero() == law.log_moment()
    # small c: -c/2 - c^2/6 - ..., no cancellation; continuity across the series switch
    assert MarchenkoPastur(1e-9).log_moment() == pytest.approx(-5e-10 - 1e-18 / 6, rel=1e-14)
    lo, hi = MarchenkoPastur(0.1 - 1e-12).log_moment(), MarchenkoPastur(0.1).log_moment()
    assert hi == pytest.approx(lo, rel=1e-10)
    assert MarchenkoPastur(1).log_moment() == -1
    law = MarchenkoPastur(2.5)
    assert law.log_moment() == -math.inf
    a, b = law.edges
    ref = si.quad(lambda x: np.log(x) * law.density(x), a, b, limit=200)[0] / (1 - law.atom)
    assert law.log_moment_nonzero() == pytest.approx(ref, rel=1e-8)
    # high precision: against mpmath quadrature of the closed-form density
    with mpmath.workdps(40):
        c = mpmath.mpf(3) / 10
        ea, eb = (1 - mpmath.sqrt(c)) ** 2, (1 + mpmath.sqrt(c)) ** 2
        ref = mpmath.quad(lambda x: mpmath.log(x) * mpmath.sqrt((eb - x) * (x - ea)) / (2 * mpmath.pi * c * x),
                          [ea, eb])
        assert abs(MarchenkoPastur("0.3").log_moment(dps=30) - ref) < mpmath.mpf(10) ** -28


# -- back ends -----------------------------------------------------------------------------
@FAST
@given(ratios, upper_z())
def test_mp_numpy_mpmath_agree(c, z):
    law = MarchenkoPastur(c)
    s_np = law.stieltjes(z).value
    s_mp = complex(law.stieltjes(z, dps=30).value)
    assert abs(s_np - s_mp) <= 1e-10 * abs(s_mp)


@pytest.mark.parametrize("dps", [30, 50])
def test_mp_mpmath_residual(dps):
    law = MarchenkoPastur("0.7")
    zs = [0.3 + 0.2j, 1.5, -0.4, 4.0, 2 - 1e-3j]
    res = law.stieltjes(zs, dps=dps)
    assert res.residual < 10.0 ** (2 - dps)
    with mpmath.workdps(dps + 20):
        c = mpmath.mpf(7) / 10
        for z, s in zip(zs, res.value):
            z = mpmath.mpc(z)
            F = c * z * s**2 + (z - 1 + c) * s + 1
            assert abs(F) < mpmath.mpf(10) ** (2 - dps)
    assert mpmath.im(res.value[1]) > 0 and res.density[1] > 0
    with mpmath.workdps(dps + 20):
        assert abs(res.density[1] - mpmath.im(res.value[1]) / mpmath.pi) < mpmath.mpf(10) ** (1 - dps)


# -- generalised law -------------------------------------------------------------------------
@FAST
@given(ratios, upper_z())
def test_generalized_one_atom_is_mp(c, z):
    g = GeneralizedMarchenkoPastur([1.0], c).stieltjes(z)
    m = MarchenkoPastur(c).stieltjes(z)
    assert abs(g.value - m.value) <= 1e-10 * abs(m.value)
    assert g.value.imag > 0


@FAST
@given(ratios, st.floats(0.01, 100), upper_z())
def test_generalized_one_atom_scaling(c, t, z):
    # law of t S: s_t(z) = s_1(z / t) / t
    g = GeneralizedMarchenkoPastur([t, t], c).stieltjes(z).value
    m = MarchenkoPastur(c).stieltjes(z / t).value / t
    assert abs(g - m) <= 1e-10 * abs(m)


def test_generalized_one_atom_real_axis_and_density():
    for c in (0.3, 1.0, 2.5):
        law, g = MarchenkoPastur(c), GeneralizedMarchenkoPastur([1.0], c)
        a, b = law.edges
        x = np.concatenate([np.linspace(-1, 0.99 * a, 5), np.linspace(a, b, 41)[1:-1],
                            np.linspace(1.01 * b, 2 * b, 5)])
        x = np.concatenate([x[x != 0], [-1e-12, -1e-6, 1e-9, 1e-6]])  # 0 is an edge when c = 1
        gs, ms = g.stieltjes(x), law.stieltjes(x)
        assert np.max(np.abs(gs.value - ms.value) / np.abs(ms.value)) < 1e-9
        # density = Im s / pi carries the error of s (tiny Im s ~ eta |s| outside the support)
        assert np.all(np.abs(g.density(x) - law.density(x)) < 1e-9 * np.abs(ms.value))
        assert g.atom == law.atom


def _two_atoms():
    return GeneralizedMarchenkoPastur([1.0, 4.0], 0.5, weights=[0.5, 0.5])


@FAST
@given(upper_z())
def test_generalized_numpy_mpmath_agree(z):
    g = _two_atoms()
    s_np = g.stieltjes(z).value
    s_mp = complex(g.stieltjes(z, dps=30).value)
    assert abs(s_np - s_mp) <= 1e-10 * abs(s_mp)


@pytest.mark.parametrize("dps", [30, 50])
def test_generalized_mpmath_residual(dps):
    atoms, w, c = [0.5, 1.0, 3.0], [0.2, 0.5, 0.3], 1.5
    g = GeneralizedMarchenkoPastur(atoms, c, weights=w)
    zs = [1 + 0.5j, 2.0, -0.7, 0.3 - 0.1j]
    res = g.companion(zs, dps=dps)
    assert res.residual < 10.0 ** (2 - dps)
    with mpmath.workdps(dps + 20):
        for z, sb in zip(zs, res.value):
            z = mpmath.mpc(z)
            if mpmath.im(z) == 0:  # evaluated at x + i eta, eta = 10^-(dps+2) |x|
                z += mpmath.mpc(0, abs(z) * mpmath.mpf(10) ** (-dps - 2))
            F = z + 1 / sb - mpmath.mpf(c) * mpmath.fsum(
                mpmath.mpf(wk) * tk / (1 + tk * sb) for tk, wk in zip(atoms, w))
            assert abs(F) < mpmath.mpf(10) ** (3 - dps) * (abs(z) + abs(1 / sb))
    s = g.stieltjes(zs[1], dps=dps)
    with mpmath.workdps(dps + 20):
        assert abs(s.value - (res.value[1] + (1 - mpmath.mpf(c)) / 2) / c) < mpmath.mpf(10) ** (5 - dps)
    assert abs(complex(s.value) - g.stieltjes(2.0).value) < 1e-9


def test_generalized_companion_relation_and_conjugation():
    g = GeneralizedMarchenkoPastur(np.linspace(0.2, 3, 50), 1.7)
    z = np.array([0.1 + 0.05j, 1 + 1j, 5 + 0.01j, -2 + 3j])
    s, sb = g.stieltjes(z).value, g.companion(z).value
    assert np.allclose(sb, 1.7 * s - (1 - 1.7) / z, rtol=1e-11)
    assert np.allclose(g.stieltjes(z.conj()).value, s.conj(), rtol=1e-13)
    assert np.all(s.imag > 0) and np.all(sb.imag > 0)


def test_generalized_two_atom_simulation():
    rng = np.random.default_rng(7)
    d, N = 800, 1600
    t = np.repeat([1.0, 4.0], d // 2)
    X = rng.standard_normal((N, d)) * np.sqrt(t)
    S = X.T @ X / N
    eigs = np.linalg.eigvalsh(S)
    g = GeneralizedMarchenkoPastur(t, d / N)
    xs = np.linspace(0, 1.05 * g.scale, 6001)
    rho = g.density(xs)
    cum = np.concatenate([[0], np.cumsum((rho[1:] + rho[:-1]) / 2 * np.diff(xs))])
    assert cum[-1] == pytest.approx(1, abs=5e-3)
    assert kolmogorov(eigs, lambda x: np.interp(x, xs, cum)) < 0.02
    zs = np.array([0.5 + 0.3j, 2 + 0.5j, 5 + 0.2j, 8 + 1j, -1 + 0.1j])
    emp = np.array([np.mean(1 / (eigs - z)) for z in zs])
    assert np.max(np.abs(g.stieltjes(zs).value - emp) / np.abs(emp)) < 2e-2


def test_generalized_zero_atoms_and_atom_mass():
    # half the population is 0: the law of S has an atom 1/2 at 0 (c = 0.5 < 1)
    g = GeneralizedMarchenkoPastur([0.0, 2.0], 0.5, weights=[0.5, 0.5])
    assert g.atom == 0.5
    z = 1j * np.array([1e-3, 1e-2])
    s = g.stieltjes(z).value
    # z s(z) -> -atom as z -> 0 along the imaginary axis
    assert abs(z[0] * s[0] + 0.5) < 1e-2
    # the non-zero part is MP with c' = c/2 = 0.25 scaled by t = 2: s = 0.5 (-1/z) + 0.5 s'(z)
    ref = -0.5 / z + 0.5 * MarchenkoPastur(0.25).stieltjes(z / 2).value / 2
    assert np.allclose(s, ref, rtol=1e-11)
    x = np.array([0.7, 1.5, 4.0, 5.0])  # support of the continuous part: [0.5, 4.5]
    assert np.allclose(g.density(x), 0.5 * MarchenkoPastur(0.25).density(x / 2) / 2, atol=1e-10)
    with pytest.raises(ParameterError):
        g.stieltjes(0.0)


def test_generalized_power_law_spectrum_and_small_x():
    k = np.arange(1, 1001)
    t = k**-1.5
    t /= t.mean()
    for c in (0.5, 2.0):
        g = GeneralizedMarchenkoPastur(t, c)
        x = np.geomspace(1e-6, g.scale, 300)
        res = g.stieltjes(np.concatenate([x, -x, x + 1e-3j]))
        assert res.converged and res.residual < 1e-12
        assert np.all(res.value[600:].imag > 0)
        assert np.all(res.density[:600] >= 0)


def test_from_density():
    uniform = GeneralizedMarchenkoPastur.from_density(lambda x: 1.0, (1, 2), 0.4, n_nodes=64)
    fine = GeneralizedMarchenkoPastur(np.linspace(1, 2, 20001)[:-1] + 0.5 / 20000, 0.4)
    z = np.array([1.5 + 0.3j, 3 + 0.2j, -1 + 0j])
    assert np.allclose(uniform.stieltjes(z).value, fine.stieltjes(z).value, rtol=1e-8)
    with pytest.raises(ParameterError, match="density"):
        GeneralizedMarchenkoPastur.from_density(lambda x: 2.0, (1, 2), 0.4)
    with pytest.raises(ParameterError, match="interval"):
        GeneralizedMarchenkoPastur.from_density(lambda x: 1.0, (2, 1), 0.4)


# -- parameter checks ------------------------------------------------------------------------
@pytest.mark.parametrize("ratio", [0, -1, float("nan"), float("inf"), "abc", True, None])
def test_bad_ratio(ratio):
    with pytest.raises(ParameterError, match="ratio"):
        MarchenkoPastur(ratio)
    with pytest.raises(ParameterError, match="ratio"):
        GeneralizedMarchenkoPastur([1.0], ratio)


def test_bad_inputs():
    with pytest.raises(ParameterError, match="z"):
        MarchenkoPastur(0.5).stieltjes(complex("nan"))
    with pytest.raises(ParameterError, match="z"):
        MarchenkoPastur(2.0).stieltjes(0.0)
    with pytest.raises(ParameterError, match="z"):
        MarchenkoPastur(1.0).stieltjes(0.0, dps=30)
    with pytest.raises(ParameterError, match="dps"):
        MarchenkoPastur(0.5).stieltjes(1.0, dps=5)
    with pytest.raises(ParameterError, match="atoms"):
        GeneralizedMarchenkoPastur([-1.0, 1.0], 0.5)
    with pytest.raises(ParameterError, match="atoms"):
        GeneralizedMarchenkoPastur([0.0], 0.5)
    with pytest.raises(ParameterError, match="atoms"):
        GeneralizedMarchenkoPastur([1.0, np.inf], 0.5)
    with pytest.raises(ParameterError, match="weights"):
        GeneralizedMarchenkoPastur([1.0, 2.0], 0.5, weights=[0.5, 0.6])
    with pytest.raises(ParameterError, match="weights"):
        GeneralizedMarchenkoPastur([1.0, 2.0], 0.5, weights=[1.5, -0.5])
    with pytest.raises(ParameterError, match="z"):
        GeneralizedMarchenkoPastur([1.0], 0.5).stieltjes([1.0, np.inf])


def test_result_is_frozen():
    res = MarchenkoPastur(0.5).stieltjes(1 + 1j)
    assert isinstance(res, StieltjesResult) and res.converged and res.dps is None
    with pytest.raises(AttributeError):
        res.value = 0
