"""Anisotropic RF-DSM (conventions 1.5): reduction to Sigma = I, exact limits, quadrature, precision."""
import math

import mpmath
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rmtsolve import ConvergenceError, ParameterError, coefficients, feature_spectrum, rf_dsm, score_error_integral
from rmtsolve.population import parse_spectrum

ISO_ALIASES = ([1.0], [1.0, 1.0, 1.0], "powerlaw:0")
GRID = dict(psi_n=np.array([0.5, 1.0, 2.0, 1.0, 1.0, 3.0]), psi_p=np.array([2.0, 0.5, 1.0, 3.0, 1.0, 1.5]),
            m=np.array([1, 3, np.inf, 2, 5, 1]), t=np.array([0.5, 0.1, 1.0, 0.3, 2.0, 0.5]),
            lam=np.array([1e-3, 1e-2, 0.0, 0.0, 1e-1, 1e-4]))


def _close(a, b, tol):
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    return np.all(np.abs(a - b) <= tol * np.maximum(1, np.abs(b)))


# -- Sigma = I: every capability equals the isotropic solver (two independent derivations) -----
@pytest.mark.parametrize("spec", ISO_ALIASES)
@pytest.mark.parametrize("act", ["relu", "tanh"])
def test_identity_spectrum_equals_isotropic_grid(spec, act):
    iso = rf_dsm(**GRID, activation=act)
    ani = rf_dsm(**GRID, activation=act, spectrum=spec)
    for k in ("test_error", "train_error", "score_error", "gap", "test_error_floor"):
        assert _close(getattr(ani, k), getattr(iso, k), 1e-12), k
    assert np.allclose(ani.test_error_by_eigenvalue[..., 0], iso.test_error, rtol=1e-12)


@pytest.mark.parametrize("i", range(6))
def test_identity_spectrum_equals_isotropic_single_points(i):
    kw = {k: v[i] for k, v in GRID.items()}
    iso, ani = rf_dsm(**kw, activation="erf"), rf_dsm(**kw, activation="erf", spectrum=[1.0])
    assert _close(ani.test_error, iso.test_error, 1e-12) and _close(ani.train_error, iso.train_error, 1e-12)


@pytest.mark.parametrize("tau", [0.3, 2.0, 10.0])
def test_identity_spectrum_equals_isotropic_flow(tau):
    # The train error after gradient flow sums node terms with weights up to ~20 whose Talbot
    # contour amplifies rounding of the node solutions by e^{2M/5} ~ 600: the two systems' node
    # solutions differ at the rounding level, so train errors agree to ~1e-12 (1.3e-12 the
    # largest measured over 40 points), test errors to ~2e-13.
    kw = dict(psi_n=1.0, psi_p=2.0, m=3, t=0.5, lam=1e-2, tau=tau, activation="tanh")
    iso, ani = rf_dsm(**kw), rf_dsm(**kw, spectrum=[1.0])
    assert _close(ani.test_error, iso.test_error, 1e-12) and _close(ani.train_error, iso.train_error, 3e-12)


def test_identity_spectrum_equals_isotropic_feature_spectrum_and_integral():
    kw = dict(psi_n=1.0, psi_p=2.0, m=3, t=0.5, activation="relu")
    z = np.array([0.3 + 0.2j, 1.5 + 1e-3j, 0.8, 2.6])
    a, b = feature_spectrum(z, **kw), feature_spectrum(z, **kw, spectrum=[1.0])
    assert np.allclose(a.stieltjes, b.stieltjes, rtol=1e-11, atol=0)
    ia = score_error_integral(psi_n=1, psi_p=2, m=3, lam=1e-2, t0=0.05, T=2.0)
    ib = score_error_integral(psi_n=1, psi_p=2, m=3, lam=1e-2, t0=0.05, T=2.0, spectrum=[1.0])
    assert ib.value == pytest.approx(ia.value, rel=1e-12)


def test_identity_spectrum_equals_isotropic_high_precision():
    kw = dict(psi_n=1, psi_p=2, m=3, t=0.5, lam=1e-3, activation="relu", dps=30)
    a, b = rf_dsm(**kw), rf_dsm(**kw, spectrum=[1.0])
    assert abs(a.test_error - b.test_error) < mpmath.mpf(10) ** -28
    assert abs(a.train_error - b.train_error) < mpmath.mpf(10) ** -28


# -- identities and exact limits -------------------------------------------------------------
@settings(max_examples=25)
@given(vals=st.lists(st.sampled_from([0.0, 0.25, 0.5, 1.0, 2.0, 3.5]), min_size=1, max_size=6),
       psi_n=st.floats(0.3, 3), psi_p=st.floats(0.3, 3), m=st.sampled_from([1, 2, 5, math.inf]),
       t=st.floats(0.05, 2), lam=st.floats(1e-4, 1))
def test_by_eigenvalue_properties(vals, psi_n, psi_p, m, t, lam):
    if not any(v > 0 for v in vals):
        vals = vals + [1.0]
    r = rf_dsm(psi_n=psi_n, psi_p=psi_p, m=m, t=t, lam=lam, spectrum=vals)
    # test_error is the share-weighted mean of the per-eigenvalue errors; each is above its floor
    assert float(r.eigenvalue_weights @ r.test_error_by_eigenvalue) == pytest.approx(float(r.test_error), rel=1e-12)
    floors = np.asarray(r.as_dict()["test_error_by_eigenvalue"]["test_error_floor"])
    assert np.all(r.test_error_by_eigenvalue >= floors - 1e-12)
    assert float(r.eigenvalue_weights @ floors) == pytest.approx(float(r.test_error_floor), rel=1e-12)
    assert r.train_error >= 0 and r.score_error >= -1e-12
    # repeated values are one eigenvalue with a larger share
    again = rf_dsm(psi_n=psi_n, psi_p=psi_p, m=m, t=t, lam=lam, spectrum=vals + vals)
    assert float(again.test_error) == pytest.approx(float(r.test_error), rel=1e-12)


@pytest.mark.parametrize("spec", [[0.0, 1.0, 3.0], [0.2, 1.8], [0.0, 0.0, 4.0]])
@pytest.mark.parametrize("psi_n,t", [(2.0, 0.5), (4.0, 1.2)])
def test_linear_ridgeless_is_ordinary_least_squares_per_eigenvalue(spec, psi_n, t):
    # Linear features with p > d span y: ridgeless regression of -z_k on y (OLS in d dimensions)
    # leaves noise floor(ell) along ell, and OLS inflates it by psi_n/(psi_n - 1) (test) and
    # deflates it by 1 - 1/psi_n (train), whatever the covariance of y.
    r = rf_dsm(psi_n=psi_n, psi_p=3.0, m=1, t=t, lam=0.0, activation="linear", spectrum=spec)
    floors = np.asarray(r.as_dict()["test_error_by_eigenvalue"]["test_error_floor"])
    assert np.allclose(r.test_error_by_eigenvalue, floors * psi_n / (psi_n - 1), rtol=1e-8, atol=1e-12)
    assert float(r.train_error) == pytest.approx(float(r.test_error_floor) * (1 - 1 / psi_n), rel=1e-8)


def test_floor_is_the_population_optimum_and_large_ridge_gives_one():
    spec = [0.0, 0.5, 2.5]
    floor = np.mean([math.exp(-1) * v / (math.exp(-1) * v + 1 - math.exp(-1)) for v in spec])
    r = rf_dsm(psi_n=1, psi_p=2, m=1, t=0.5, lam=1e-3, spectrum=spec)
    assert float(r.test_error_floor) == pytest.approx(floor, rel=1e-14)
    assert float(r.score_error) == pytest.approx(float(r.test_error - r.test_error_floor), rel=1e-14)
    big = rf_dsm(psi_n=1, psi_p=2, m=3, t=0.5, lam=1e8, spectrum=spec)
    assert abs(float(big.test_error) - 1) < 1e-6
    # many samples and features with linear activation reach the floor
    lin = rf_dsm(psi_n=1e4, psi_p=3, m=1, t=0.5, lam=1e-8, activation="linear", spectrum=spec)
    assert float(lin.test_error) == pytest.approx(floor, rel=1e-3)


def test_mean_eigenvalue_enters_unnormalised():
    # subspace data with tr Sigma/d = 1 and = 0.75: different coefficients and different errors
    a = rf_dsm(psi_n=1, psi_p=2, m=2, t=0.5, lam=1e-2, spectrum=[0, 4 / 3, 4 / 3, 4 / 3], activation="tanh")
    b = rf_dsm(psi_n=1, psi_p=2, m=2, t=0.5, lam=1e-2, spectrum=[0, 1, 1, 1], activation="tanh")
    assert a.params["s2"] == pytest.approx(1.0) and b.params["s2"] == pytest.approx(0.75)
    assert abs(float(a.test_error) - float(b.test_error)) > 1e-3
    assert a.eigenvalues[0] == 0 and b.eigenvalue_weights[0] == pytest.approx(0.25)


# -- coefficients at preactivation variance v_t ------------------------------------------------
@pytest.mark.parametrize("act", ["tanh", "erf", "relu", "softplus"])
@pytest.mark.parametrize("s2", [0.3, 2.5])
def test_coefficients_at_variance_equal_scaled_activation(act, s2):
    # sigma(h), h ~ N(0, v): the unit-variance coefficients of sigma(sqrt(v) x) at correlation
    # rho = e^{-2t} s2/v, i.e. at the time t' with e^{-2t'} = rho; mu1 scales by 1/sqrt(v).
    t = 0.4
    v = math.exp(-2 * t) * s2 - math.expm1(-2 * t)
    t_eff = -0.5 * math.log(math.exp(-2 * t) * s2 / v)
    expr = {"tanh": "tanh", "erf": "erf", "relu": "Max", "softplus": "log(1 + exp"}[act]
    sv = repr(math.sqrt(v))
    text = {"tanh": f"tanh({sv}*x)", "erf": f"erf({sv}*x)", "relu": f"Max({sv}*x, 0)",
            "softplus": f"log(1 + exp({sv}*x))"}[act]
    assert expr in text
    got, ref = coefficients(act, t, s2=s2), coefficients(text, t_eff)
    assert got.mu1 == pytest.approx(ref.mu1 / math.sqrt(v), rel=1e-9)
    for k in ("mu0", "mustar", "mu_s", "mu_e"):
        assert getattr(got, k) == pytest.approx(getattr(ref, k), rel=1e-8, abs=1e-12), k


def test_coefficients_at_variance_high_precision():
    for act in ("tanh", "relu", "erf"):
        lo, hi = coefficients(act, 0.5, s2=1.7), coefficients(act, "0.5", s2="1.7", dps=30)
        for k in ("mu0", "mu1", "mustar", "mu_s", "mu_e"):
            assert float(getattr(hi, k)) == pytest.approx(getattr(lo, k), rel=1e-10, abs=1e-14)


# -- continuum power law: quadrature and the finite-d discretisation --------------------------
@pytest.mark.parametrize("K", [0.3, 0.5, 0.8, 0.95])
def test_powerlaw_rule_against_hypergeometric_closed_form(K):
    # int dH(l)/(a + b l) = (alpha/((1-K)(alpha+1) a)) 2F1(1, alpha+1; alpha+2; -b(1-K)/a)... as
    # int_0^1 du/(a + b (1-K) u^-K), compared with mpmath quadrature at 30 digits
    law = parse_spectrum(f"powerlaw:{K}").law()
    assert law.weight.sum() == pytest.approx(1, abs=1e-15)
    rng = np.random.default_rng(3)
    for a, b in zip(rng.lognormal(0, 2, 12), rng.lognormal(0, 2, 12)):
        got = float(law.weight @ (1 / (a + b * law.lam)))
        with mpmath.workdps(30):
            ref = mpmath.quad(lambda u: 1 / (a + b * (1 - K) * u ** -K), [0, 1e-12, 1e-6, 1e-3, 1])
        assert got == pytest.approx(float(ref), rel=1e-12)
        got1 = float(law.weight @ (law.lam / (a + b * law.lam)))
        with mpmath.workdps(30):
            ref1 = mpmath.quad(lambda u: (1 - K) * u ** -K / (a + b * (1 - K) * u ** -K), [0, 1e-12, 1e-6, 1e-3, 1])
        assert got1 == pytest.approx(float(ref1), rel=1e-11)


def test_powerlaw_high_precision_rule():
    nodes, weights = parse_spectrum("powerlaw:0.6").law_mp(30)
    with mpmath.workdps(40):
        got = mpmath.fsum(w / (2 + 3 * x) for x, w in zip(nodes, weights))
        ref = mpmath.quad(lambda u: 1 / (2 + 3 * mpmath.mpf("0.4") * u ** mpmath.mpf("-0.6")),
                          [0, mpmath.mpf(10) ** -20, mpmath.mpf(10) ** -10, mpmath.mpf(10) ** -4, 1])
        assert abs(got - ref) < mpmath.mpf(10) ** -30


def test_powerlaw_quadrature_guard_and_precision():
    kw = dict(psi_n=1, psi_p=2, m=3, t=0.5, lam=1e-3, spectrum="powerlaw:0.7", activation="relu")
    r = rf_dsm(**kw)
    h = rf_dsm(**kw, dps=30)
    assert float(h.test_error) == pytest.approx(float(r.test_error), rel=1e-12)
    assert float(h.train_error) == pytest.approx(float(r.train_error), rel=1e-12)
    assert r.test_error_by_eigenvalue is None


@pytest.mark.parametrize("K", [0.3, 0.8])
def test_quantile_discretisation_converges_to_the_continuum(K):
    spec = parse_spectrum(f"powerlaw:{K}")
    kw = dict(psi_n=1, psi_p=1.5, m=1, t=0.5, lam=1e-2)
    cont = float(rf_dsm(**kw, spectrum=spec).test_error)
    errs = [abs(float(rf_dsm(**kw, spectrum=spec.rf_dsm_eigenvalues(d)).test_error) - cont) for d in (100, 400, 1600)]
    assert errs[0] > errs[1] > errs[2]
    # the mean of the quantiles converges like d^(K - 1): the rate of the errors
    rate = math.log(errs[0] / errs[2]) / math.log(16)
    assert rate == pytest.approx(1 - K, abs=0.15)


def test_finite_d_discretisations():
    spec = parse_spectrum("powerlaw:0.5")
    ell = spec.rf_dsm_eigenvalues(8)
    assert np.allclose(ell, 0.5 * ((np.arange(1, 9) - 0.5) / 8) ** -0.5)
    vals = parse_spectrum([0.0, 2.0, 5.0]).rf_dsm_eigenvalues(7)
    assert sorted(np.unique(vals, return_counts=True)[1]) == [2, 2, 3]
    assert np.allclose(parse_spectrum("powerlaw:1").ldm_eigenvalues(4).sum(), 4)


# -- high precision ------------------------------------------------------------------------------
@pytest.mark.parametrize("spec", [[0.0, 1.0, 1.0, 2.0], [0.5, 1.5], "powerlaw:0.5"])
def test_double_and_high_precision_agree(spec):
    kw = dict(psi_n=1, psi_p=2, m=3, t=0.5, lam=1e-3, spectrum=spec)
    r, h30, h50 = rf_dsm(**kw), rf_dsm(**kw, dps=30), rf_dsm(**kw, dps=50)
    assert float(h30.test_error) == pytest.approx(float(r.test_error), rel=1e-12)
    assert abs(h30.test_error - h50.test_error) < mpmath.mpf(10) ** -27
    assert abs(h30.train_error - h50.train_error) < mpmath.mpf(10) ** -27


# -- gradient flow ---------------------------------------------------------------------------------
def test_flow_two_point_derivations_agree_and_diagonal_identity():
    # The Marchenko-Pastur form (isotropic derivation) and the column leave-one-out form
    # (anisotropic derivation) of the two-point term agree at exact node solutions; the node form
    # at equal ridges is the one-point identity dL/dgam - 1 + 2 c.
    from rmtsolve._backend import mp_namespace
    from rmtsolve._generated import rf_dsm_flow as F
    from rmtsolve.rf_dsm.equations import IsotropicSystem
    from rmtsolve.rf_dsm.numerics import loss_derivatives, solve3
    from rmtsolve.rf_dsm.solver import coefficient_arrays

    co, (mu1, mus2, mue2) = coefficient_arrays("relu", np.asarray(0.5), 1.0, None)
    system = IsotropicSystem()
    with mpmath.workdps(40):
        f = mp_namespace(40)
        pars = [mpmath.mpf(x) for x in (1, 2, mpmath.mpf(1) / 3, "0.5")]
        coef = [mpmath.mpf(c) for c in (co[0].c.mu1, co[0].c.mu_s ** 2, co[0].c.mu_e ** 2)]

        def solve(lam):
            u = [mpmath.mpc(1)] * 3
            a = tuple(pars) + (lam,) + tuple(coef)
            lam_k = mpmath.mpf(1e4)
            for j in range(61):  # continuation from a large ridge along a straight path
                aj = tuple(pars) + (lam_k + (lam - lam_k) * j / 60,) + tuple(coef)
                for _ in range(30):
                    T = system.terms(u, aj, f)
                    u = [x - dx for x, dx in zip(u, solve3(T[3:], T[:3]))]
            return u, a

        ua, aa = solve(mpmath.mpc("0.05", "-1.3"))
        ub, ab = solve(mpmath.mpc("0.2", "0.7"))
        one = mpmath.mpf(1)
        mp_form = F.two_point(*ua, aa[4], *ub, ab[4], *pars, *coef, _f=f)
        m = F.node_moments(one, *ua, aa[4], *ub, ab[4], *pars, *coef, _f=f)
        node_form = F.node_two_point(one, *m, *ua, aa[4], *ub, ab[4], *pars, *coef, _f=f)
        assert abs(mp_form - node_form) < mpmath.mpf(10) ** -30 * abs(node_form)
        m = F.node_moments(one, *ua, aa[4], *ua, aa[4], *pars, *coef, _f=f)
        diag = F.node_two_point(one, *m, *ua, aa[4], *ua, aa[4], *pars, *coef, _f=f)
        _, _, dLg = loss_derivatives(system, ua, aa, f, solve3)
        c = F.node_test_cross(one, *ua, aa[4], *pars, *coef, _f=f)
        assert abs(diag - (dLg - 1 + 2 * c)) < mpmath.mpf(10) ** -30


@pytest.mark.parametrize("spec", [[0.0, 1.0, 1.0, 2.0], "powerlaw:0.5"])
def test_flow_limits_and_quadrature(spec):
    kw = dict(psi_n=1, psi_p=2, m=3, t=0.5, lam=1e-2, activation="tanh", spectrum=spec)
    ridge = rf_dsm(**kw)
    late = rf_dsm(**kw, tau=3000.0)
    assert float(late.test_error) == pytest.approx(float(ridge.test_error), rel=1e-6)
    early = rf_dsm(**kw, tau=1e-3)
    assert abs(float(early.test_error) - 1) < 1e-2 and abs(float(early.train_error) - 1) < 1e-2


def test_flow_powerlaw_refined_rule_agrees():
    from rmtsolve.rf_dsm.equations import system_for
    from rmtsolve.rf_dsm.flow import flow_errors
    from rmtsolve.rf_dsm.solver import coefficient_arrays

    system = system_for(parse_spectrum("powerlaw:0.8"))
    co, (mu1, mus2, mue2) = coefficient_arrays("relu", np.asarray(0.5), 1.0, None)
    a = (1.0, 2.0, 1 / 3, 0.5, 1e-2, float(mu1), float(mus2), float(mue2))
    base, fine = flow_errors(system, 2.0, a), flow_errors(system.refined(), 2.0, a)
    assert base[0] == pytest.approx(fine[0], rel=1e-10) and base[1] == pytest.approx(fine[1], rel=1e-10)


# -- spectral law of U -------------------------------------------------------------------------
@pytest.mark.parametrize("spec", [[0.25, 1.75], [0.0, 0.0, 2.0], "powerlaw:0.5"])
def test_feature_spectrum_mass_and_branch(spec):
    kw = dict(psi_n=1, psi_p=2, m=3, t=0.5, activation="tanh", spectrum=spec)
    z = np.linspace(0.05, 6, 300) + 0.02j
    s = feature_spectrum(z, **kw).stieltjes
    assert np.all(s.imag > 0) and np.all((z * s).imag > 0)
    # far away s ~ -1/z
    far = complex(feature_spectrum(np.array([1e4j]), **kw).stieltjes[0])
    assert far * 1e4j == pytest.approx(-1, rel=1e-3)
    # the scalar path (few points) and the vectorised path agree
    pts = np.array([0.4, 1.3, 2.2])
    one = np.array([complex(feature_spectrum(np.array([x]), **kw).stieltjes[0]) for x in pts])
    many = feature_spectrum(np.concatenate([pts, np.linspace(3, 4, 20)]), **kw).stieltjes[:3]
    assert np.allclose(one, many, rtol=1e-10, atol=0)


def test_feature_spectrum_density_integrates_to_one():
    kw = dict(psi_n=1, psi_p=2, m=3, t=0.5, activation="relu", spectrum=[0.25, 1.75])
    x = np.linspace(1e-4, 12, 6000)
    dens = feature_spectrum(x, **kw).density
    assert np.trapezoid(dens, x) == pytest.approx(1.0, abs=5e-3)


# -- bad spectra: one-line errors ---------------------------------------------------------------
@pytest.mark.parametrize("bad", [[-1.0, 1.0], [np.nan, 1.0], [], [0.0, 0.0], "powerlaw:1", "powerlaw:-0.1",
                                 "powerlaw:x", "file:/nonexistent/eigs.txt", "gaussian", [np.inf]])
def test_bad_spectra_raise_parameter_error(bad):
    with pytest.raises(ParameterError) as e:
        rf_dsm(psi_n=1, psi_p=2, m=1, t=0.5, lam=1e-2, spectrum=bad)
    assert e.value.name == "spectrum"


@pytest.mark.parametrize("bad", ["powerlaw:1.5", "file:/nonexistent", "-1", "nan"])
def test_cli_bad_spectrum_exits_2(bad, capsys):
    from rmtsolve import cli

    assert cli.main(["rf-dsm", "--psi-p", "2", "--spectrum", bad]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "spectrum" in err and "Traceback" not in err


def test_cli_file_spectrum_and_sweep(tmp_path, capsys):
    import json

    from rmtsolve import cli

    path = tmp_path / "eig.txt"
    path.write_text("0 4\n4 4\n")
    assert cli.main(["rf-dsm", "--psi-p", "2", "--m", "2", "--spectrum", f"file:{path}", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    by = out["test_error_by_eigenvalue"]
    assert by["eigenvalue"] == [0.0, 4.0] and by["weight"] == [0.25, 0.75]
    assert out["params"]["s2"] == 3.0
    direct = rf_dsm(psi_n=1, psi_p=2, m=2, t=0.5, lam=1e-3, spectrum=[0, 4, 4, 4])
    assert out["test_error"] == pytest.approx(float(direct.test_error), rel=1e-12)
    csv_path = tmp_path / "s.csv"
    assert cli.main(["sweep", "rf-dsm", "--psi-p", "1:2:2", "--spectrum", f"file:{path}", "--csv", str(csv_path),
                     "--quiet"]) == 0
    header = csv_path.read_text().splitlines()[0].split(",")
    assert "spectrum" in header and "test_error_by_eigenvalue[4.0]" in header


def test_unconverged_quadrature_is_an_error(monkeypatch):
    from rmtsolve.rf_dsm import solver

    monkeypatch.setattr(solver, "_QUAD_RTOL", 0.0)
    with pytest.raises(ConvergenceError):
        rf_dsm(psi_n=1, psi_p=2, m=1, t=0.5, lam=1e-2, spectrum="powerlaw:0.5")


def test_feature_spectrum_bulks_of_a_two_atom_sigma():
    # n > d and p >> n: the atom at 0 (its tail at the evaluation height removed), the
    # memorisation bulk of mass (n - d)/p and one generalisation bulk of mass (d/2)/p per
    # eigenvalue of Sigma
    kw = dict(psi_n=4.0, psi_p=32.0, m=1, t=0.5, activation="relu", spectrum=[0.2, 5.0])
    x = np.geomspace(1e-4, 60, 12000)
    fs = feature_spectrum(x, **kw)
    assert fs.atom == pytest.approx(1 - 4 / 32)
    assert np.all(np.abs(fs.density[x < 0.3]) < 1e-6)
    on = fs.density > 1e-5
    edges = np.flatnonzero(np.diff(on.astype(int)))
    assert len(edges) == 6  # three bulks
    masses = [np.trapezoid(fs.density[a:b + 1], x[a:b + 1]) for a, b in zip(edges[::2], edges[1::2])]
    assert masses == pytest.approx([3 / 32, 1 / 64, 1 / 64], abs=2e-4)


# -- kernel limit psi_p = inf (derivation step 13) --------------------------------------------
@pytest.mark.parametrize("m", [1, 3, 10, math.inf])
@pytest.mark.parametrize("spec", ["isotropic", [0.0, 1.0, 2.0], "powerlaw:0.5"])
@pytest.mark.parametrize("act,lam", [("relu", 1e-3), ("tanh", 0.0), ("erf", 0.1)])
def test_kernel_limit_matches_large_psi_p(m, spec, act, lam):
    # Finite m: within 1e-5 of psi_p = 1e7.  m = inf: the approach is c/psi_p with c as large
    # as ~140 (erf: K_0 = psi_n (mu_e^2 + lam)/mu_s^2 is large), so the exactness of the limit
    # is checked through psi_p (value - limit) being constant between 1e7 and 1e8; with a power
    # law of infinite second moment (K >= 1/2) the approach is ~ log(psi_p)/psi_p instead.
    kw = dict(psi_n=1.0, m=m, t=0.5, lam=lam, activation=act, spectrum=spec)
    inf, big = rf_dsm(psi_p=np.inf, **kw), rf_dsm(psi_p=1e7, **kw)
    lim = float(inf.test_error)
    if m != math.inf:
        assert float(big.test_error) == pytest.approx(lim, rel=1e-5)
    else:
        c7 = (float(big.test_error) - lim) * 1e7
        c8 = (float(rf_dsm(psi_p=1e8, **kw).test_error) - lim) * 1e8
        if spec == "powerlaw:0.5":
            assert abs(c8) < 10 * abs(c7) and abs(c8 / 1e8) < 1e-5 * lim
        else:
            assert c8 == pytest.approx(c7, rel=2e-3)
    assert float(inf.train_error) == 0 and float(big.train_error) < 1e-5
    if isinstance(spec, list):
        assert float(inf.eigenvalue_weights @ inf.test_error_by_eigenvalue) == pytest.approx(
            float(inf.test_error), rel=1e-12)
        if m != math.inf:
            assert np.allclose(inf.test_error_by_eigenvalue, big.test_error_by_eigenvalue, rtol=1e-5, atol=1e-6)


def test_kernel_limit_is_approached_by_growing_psi_p():
    for m, spec in ((3, "isotropic"), (math.inf, "powerlaw:0.5")):
        kw = dict(psi_n=1.0, m=m, t=0.5, lam=0.1, activation="erf", spectrum=spec)
        lim = float(rf_dsm(psi_p=np.inf, **kw).test_error)
        dev = [abs(float(rf_dsm(psi_p=pp, **kw).test_error) - lim) for pp in (1e5, 1e6, 1e7, 1e8)]
        assert all(a > 6 * b for a, b in zip(dev, dev[1:]))


def test_kernel_limit_closed_form_at_m_infinity_and_ridge_independence():
    for spec, s2 in (("isotropic", 1.0), ([0.0, 3.0], 1.5), ("powerlaw:0.8", 1.0)):
        for t in (0.2, 1.0):
            r = rf_dsm(psi_n=2.0, psi_p=np.inf, m=math.inf, t=t, lam=1e-2, spectrum=spec, activation="tanh")
            assert float(r.test_error) == pytest.approx(math.exp(-2 * t) * s2 / -math.expm1(-2 * t), rel=1e-13)
    a = rf_dsm(psi_n=1.5, psi_p=np.inf, m=4, t=0.5, lam=np.array([0.0, 1e-3, 10.0]))
    assert np.allclose(a.test_error, a.test_error[0], rtol=1e-13)


def test_kernel_limit_high_precision_flow_and_bad_input():
    kw = dict(psi_n=1.0, psi_p=np.inf, m=3, t=0.5, lam=1e-3, spectrum=[0.5, 1.5])
    lo, hi = rf_dsm(**kw), rf_dsm(**kw, dps=30)
    assert float(hi.test_error) == pytest.approx(float(lo.test_error), rel=1e-12)
    assert abs(hi.test_error - rf_dsm(**kw, dps=50).test_error) < mpmath.mpf(10) ** -28
    # finite m: the flow has converged at every tau > 0 (U's nonzero eigenvalues grow like psi_p)
    assert float(rf_dsm(**kw, tau=0.5).test_error) == pytest.approx(float(lo.test_error), rel=1e-13)
    with pytest.raises(ParameterError):
        feature_spectrum(1.0 + 0.1j, psi_n=1, psi_p=np.inf, m=3, t=0.5)


@pytest.mark.parametrize("activation", ["relu", "erf"])
def test_kernel_limit_flow_at_m_infinity_is_the_converged_limit(activation):
    # m = inf: the limit predictor is linear (eigenvalues of U ~ mu1^2 psi_p), so the flow at a
    # fixed tau approaches the psi_p = inf value like 1/psi_p from below
    kw = dict(psi_n=1.0, m=math.inf, t=0.5, lam=1e-2, activation=activation)
    lim = rf_dsm(psi_p=np.inf, **kw)
    assert float(rf_dsm(psi_p=np.inf, tau=1.0, **kw).test_error) == float(lim.test_error)
    dev = [float(lim.test_error) - float(rf_dsm(psi_p=pp, tau=1.0, **kw).test_error) for pp in (1e4, 1e5)]
    assert 0 < dev[1] < dev[0] / 5 and dev[1] < 1e-4


def test_cli_kernel_limit(capsys):
    import json

    from rmtsolve import cli

    assert cli.main(["rf-dsm", "--psi-p", "inf", "--m", "3", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["train_error"] == 0 and out["params"]["psi_p"] == "inf"
    direct = rf_dsm(psi_n=1, psi_p=np.inf, m=3, t=0.5, lam=1e-3)
    assert out["test_error"] == pytest.approx(float(direct.test_error), rel=1e-14)
