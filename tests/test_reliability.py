"""Regression tests of the reliability audit: every reproducer exits 0 with a correct value or
2/3 with one line, quickly; the per-point failure policy on_error="raise"/"nan"."""
import json
import math
import subprocess
import sys
import time

import mpmath
import numpy as np
import pytest

from rmtsolve import ConvergenceError, ParameterError, cli, coefficients, ldm, rf_dsm


def run(*args, timeout=60):
    t0 = time.perf_counter()
    p = subprocess.run([sys.executable, "-m", "rmtsolve.cli", *args], capture_output=True, text=True,
                       timeout=timeout)
    return p.returncode, p.stdout, p.stderr, time.perf_counter() - t0


def one_line_error(code, err, status=2):
    return code == status and err.count("\n") == 1 and "Traceback" not in err


@pytest.mark.parametrize("extra", [[], ["--tau", "2"], ["--dps", "30"]])
def test_huge_psi_is_refused_at_once(extra):
    code, _, err, secs = run("rf-dsm", "--psi-p", "1e300", *extra)
    assert one_line_error(code, err) and "psi_p" in err and secs < 20


@pytest.mark.parametrize("args,name", [(["rf-dsm", "--psi-p", "2", "--m", "1.5"], "m"),
                                       (["rf-dsm", "--psi-p", "2", "--m", "1.4"], "m"),
                                       (["ldm", "--T", "999.6"], "T"), (["ldm", "--d", "100.4"], "d")])
def test_sweep_never_rounds_silently(args, name):
    code, out, err, _ = run("sweep", *args, "--quiet")
    assert one_line_error(code, err) and name in err and out.count("\n") == 0


@pytest.mark.parametrize("dps", [30, 50])
def test_high_precision_at_ridgeless_overparameterised_points(dps):
    code, out, err, _ = run("rf-dsm", "--psi-n", "1", "--psi-p", "2", "--m", "1", "--t", "0.5", "--lam", "0",
                            "--dps", str(dps), "--json")
    assert code == 0, err
    data = json.loads(out)
    double = rf_dsm(psi_n=1, psi_p=2, m=1, t=0.5, lam=0.0)
    assert data["test_error"] == pytest.approx(float(double.test_error), rel=1e-12)
    assert 0 <= data["train_error"] < 1e-40


def test_m_beyond_double_range_is_m_infinity():
    code, out, err, _ = run("rf-dsm", "--psi-p", "2", "--m", "1e400", "--json")
    assert code == 0, err
    assert json.loads(out)["test_error"] == pytest.approx(float(rf_dsm(psi_n=1, psi_p=2, m=math.inf, t=0.5,
                                                                        lam=1e-3).test_error), rel=1e-14)


@pytest.mark.parametrize("expr", ["x/0", "0**-1+x"])
def test_activation_infinite_everywhere_is_bad_input(expr):
    code, _, err, _ = run("rf-dsm", "--psi-p", "2", "--activation", expr)
    assert one_line_error(code, err) and "activation" in err


@pytest.mark.parametrize("flag,path", [("--csv", "/nonexistent/dir/x.csv"), ("--csv", "/tmp"),
                                       ("--jsonl", "/proc/x.jsonl")])
def test_unwritable_sweep_output(flag, path):
    code, _, err, _ = run("sweep", "rf-dsm", "--psi-p", "2", flag, path)
    assert one_line_error(code, err) and flag in err


def test_unwritable_figure_output_is_refused_before_computing(capsys):
    t0 = time.perf_counter()
    assert cli.main(["figure", "rf-dsm-training-dynamics", "--out", "/nonexistent/dir/f.png"]) == 2
    err = capsys.readouterr().err
    assert "--out" in err and err.count("\n") == 1 and time.perf_counter() - t0 < 2


@pytest.mark.parametrize("args,name", [(["simulate", "rf-dsm", "--d", "1000000000", "--psi-p", "1"], "d"),
                                       (["simulate", "rf-dsm", "--psi-p", "1e9", "--d", "50"], "psi_p"),
                                       (["sweep", "rf-dsm", "--psi-p", "1e9:1e10:100000000000"], "psi_p"),
                                       (["sweep", "rf-dsm", "--psi-p", "1:2:10000", "--psi-n", "1:2:10000",
                                         "--m", "1:10:10"], "psi_n")])
def test_out_of_memory_requests_are_refused_with_an_estimate(args, name):
    code, _, err, secs = run(*args)
    assert one_line_error(code, err) and name in err and secs < 20


def test_error_messages_are_one_line_and_negative_values_reach_the_range_check():
    code, _, err, _ = run("sweep", "rf-dsm", "--tau", "-1")
    assert one_line_error(code, err) and "tau" in err
    code, _, err, _ = run("rf-dsm", "--lam", "-1e-3")
    assert one_line_error(code, err) and "lam must be in [0, " in err


def test_m_is_echoed_as_given():
    code, out, err, _ = run("rf-dsm", "--psi-p", "2", "--m", "49", "--json")
    assert code == 0 and json.loads(out)["params"]["m"] == 49


def test_constant_activation_has_exact_zero_split():
    c = coefficients("1", 0.5)
    assert c.mu_e == 0 and math.copysign(1, c.mu_e) == 1 and c.mu_s <= c.mustar


@pytest.mark.parametrize("kw", [dict(psi_n="a"), dict(psi_n=1 + 2j), dict(psi_n=[1, 2], psi_p=[1, 2, 3]),
                                dict(m="x"), dict(lam=[0.1, None]), dict(tau=[1.0, -1.0])])
def test_api_bad_values_are_parameter_errors(kw):
    with pytest.raises(ParameterError):
        rf_dsm(**(dict(psi_n=1, psi_p=2, m=1, t=0.5, lam=1e-3) | kw))


def test_physical_bounds_hold_at_extreme_ratios_and_under_gradient_flow():
    r = rf_dsm(psi_n=1e-3, psi_p=1e12, m=3, t=0.5, lam=1e-3)
    assert r.train_error >= 0 and r.test_error >= r.test_error_floor
    taus = np.geomspace(0.05, 300, 12)
    f = rf_dsm(psi_n=1, psi_p=2, m=1, t=0.5, lam=1e-3, tau=taus)
    assert np.all(f.train_error >= 0) and np.all(f.test_error >= f.test_error_floor)


def test_figure_cache_key_contains_the_version(monkeypatch, tmp_path):
    import rmtsolve
    from rmtsolve import figures

    monkeypatch.setenv("RMTSOLVE_CACHE", str(tmp_path))
    kw = dict(psi_n=1, psi_p=0.5, m=1, t=0.5, lam=1e-2, d=20, seeds=2, seed=1)
    figures._cached_simulation(**kw)
    monkeypatch.setattr(rmtsolve, "__version__", "999.0.0")
    figures._cached_simulation(**kw)
    assert len(list(tmp_path.glob("sim_*.json"))) == 2


# -- per-point failure policy ------------------------------------------------------------------
def test_on_error_nan_marks_divergent_and_failing_points_only():
    pp = np.array([0.5, 1.0, 2.0])
    with pytest.raises(ParameterError):
        rf_dsm(psi_n=1, psi_p=pp, m=1, t=0.5, lam=0.0)
    r = rf_dsm(psi_n=1, psi_p=pp, m=1, t=0.5, lam=0.0, on_error="nan")
    assert list(r.converged) == [True, False, True] and np.isnan(r.test_error[1])
    alone = rf_dsm(psi_n=1, psi_p=2.0, m=1, t=0.5, lam=0.0)
    assert r.test_error[2] == pytest.approx(float(alone.test_error), rel=1e-13)
    # a point whose continuation fails inside a vectorised grid (its Newton solves are made to
    # fail): only that point is lost
    from rmtsolve.rf_dsm import numerics

    real = numerics.newton_grid

    def failing(system, u, args, max_iter=30):
        u, res, ok, its = real(system, u, args, max_iter)
        return u, res, ok & (np.asarray(args[0]) < 100), its

    PN, PP = np.ones(30), np.geomspace(0.1, 10, 30)
    PN[5] = 1e3
    monkey = pytest.MonkeyPatch()
    monkey.setattr(numerics, "newton_grid", failing)
    try:
        with pytest.raises(ConvergenceError):
            rf_dsm(psi_n=PN, psi_p=PP, m=3, t=0.5, lam=1e-3)
        g = rf_dsm(psi_n=PN, psi_p=PP, m=3, t=0.5, lam=1e-3, on_error="nan")
    finally:
        monkey.undo()
    assert not g.converged[5] and g.converged.sum() == 29 and np.isnan(g.test_error[5])
    ref = rf_dsm(psi_n=np.delete(PN, 5), psi_p=np.delete(PP, 5), m=3, t=0.5, lam=1e-3)
    assert np.allclose(np.delete(g.test_error, 5), ref.test_error, rtol=1e-12)


@pytest.mark.parametrize("extra", [dict(tau=3.0), dict(dps=20), dict(spectrum=[0.0, 1.0, 2.0])])
def test_on_error_nan_in_every_path(extra):
    r = rf_dsm(psi_n=1, psi_p=np.array([0.5, 1.0, 2.0]), m=1, t=0.5, lam=0.0, on_error="nan", **extra)
    assert list(np.asarray(r.converged)) == [True, False, True]
    vals = np.array([float(v) for v in np.ravel(r.test_error)])
    assert np.isnan(vals[1]) and np.all(np.isfinite(vals[[0, 2]]))
    floors = np.array([float(v) for v in np.ravel(r.test_error_floor)])
    assert np.all(np.isfinite(floors))


def test_on_error_is_checked():
    with pytest.raises(ParameterError):
        rf_dsm(psi_n=1, psi_p=2, m=1, t=0.5, lam=1e-3, on_error="ignore")


def test_high_precision_nan_entries_print_as_nan():
    r = rf_dsm(psi_n=1, psi_p=np.array([1.0, 2.0]), m=1, t=0.5, lam=0.0, dps=20, on_error="nan")
    assert mpmath.isnan(r.test_error[0]) or math.isnan(r.test_error[0])


# -- defects found by the fuzz campaign (validation/fuzz.py) -------------------------------------
@pytest.mark.parametrize("call,name", [
    (lambda r: r.simulate_rf_dsm(psi_n=0.8, psi_p=1.3, m=complex(1, 0), t=0.01, lam=1e-3, d=4, seeds=1), "m"),
    (lambda r: r.simulate_rf_dsm(psi_n=np.array([0.5, 1.0]), psi_p=1.3, m=1, t=0.01, lam=1e-3, d=4), "psi_n"),
    (lambda r: r.simulate_rf_dsm(psi_n=0.5, psi_p=1.3, m=1, t=0.01, lam=1e-3, d=4, seeds="2"), "seeds"),
    (lambda r: r.feature_spectrum(np.array([1 + 1j]), psi_n=0.3, psi_p=1.0, m=np.array([1, 2]), t=0.01), "m"),
    (lambda r: r.feature_spectrum([[1, 2], [3]], psi_n=2.5, psi_p=1.0, m=5, t=0.02), "z"),
    (lambda r: r.score_error_integral(psi_n=0.75, psi_p=0.2, m=1, lam=1e-3, t0=0.01, T=4.0, nodes=2.5), "nodes"),
    (lambda r: r.simulate_ldm(n_over_d=np.array([1.0, 2.0]), d=10, seeds=2), "n_over_d"),
    (lambda r: r.ldm(n_over_d=2.0, lam=0.1, T=10**9), "T"),
    (lambda r: r.ldm(n_over_d=2.0, lam=0.1, T=10**6), "T, beta_min, beta_max"),
    (lambda r: r.ldm(n_over_d=np.linspace(1.5, 3, 2000), lam=0.1, T=10**7, beta_min=1e-9, beta_max=1e-8), "T"),
])
def test_fuzz_reproducers_are_parameter_errors(call, name):
    import rmtsolve

    with pytest.raises(ParameterError) as e:
        call(rmtsolve)
    assert e.value.name == name and "\n" not in str(e.value)


def test_schedule_near_the_underflow_bound_is_continuous():
    # log abar_T = -557 (accepted): the KL moves by the small amount more steps make
    a, b = (float(ldm(n_over_d=1.5, lam=0.0, d=200, spectrum="powerlaw:2", T=T).kl_gen_data_per_dim)
            for T in (100_000, 110_000))
    assert abs(a - b) < 1e-4 * a


@pytest.mark.parametrize("call,name", [
    (lambda r: r.coefficients(r.resolve_activation("tanh"), 1.0, dps=math.inf), "dps"),
    (lambda r: r.MarchenkoPastur(2.0).log_moment(dps=math.nan), "dps"),
    (lambda r: r.MarchenkoPastur(1.7976931348623157e308), "ratio"),
    (lambda r: r.parse_spectrum("powerlaw:0.3").ldm_eigenvalues("4"), "d"),
    (lambda r: r.score_error_integral(psi_n=1, psi_p=1, m=1, lam=1, t0=0.01, T=1, rtol="1e-7"), "rtol"),
])
def test_fuzz_reproducers_second_batch(call, name):
    import rmtsolve

    with pytest.raises(ParameterError) as e:
        call(rmtsolve)
    assert e.value.name == name


def test_marchenko_pastur_moments_at_huge_ratio_keep_their_digits():
    from rmtsolve import MarchenkoPastur

    # m_1 = 1 for every ratio; the recursion once cancelled c m_0 against (c - 1) m_0
    for c in (1e20, 1e150, 1e10 + 0.1):
        law = MarchenkoPastur(c)
        assert law.moment(1) == 1.0 and law.moment(2) == pytest.approx(1 + c, rel=1e-15)
    assert MarchenkoPastur(1e150).moment(15) == math.inf


def test_simulation_stderr_of_huge_values_is_finite():
    from rmtsolve._parallel import seed_stderr

    v = np.array([1e300, 1.5e300, 0.5e300])
    assert seed_stderr(v) == pytest.approx(np.std(v / 1e300, ddof=1) * 1e300 / math.sqrt(3), rel=1e-12)
    assert np.isnan(seed_stderr(v[:1]))
    both = seed_stderr(np.array([[1.0, math.inf], [3.0, math.inf]]))  # an infinite KL column
    assert both[0] == pytest.approx(1.0) and not np.isfinite(both[1])


def test_unused_malformed_optimize_flag_is_still_an_error():
    code, _, err, _ = run("optimize", "rf-dsm", "--lam", "1:2:1e2", "--over", "lam")
    assert one_line_error(code, err) and "lam" in err


def test_ldm_failure_at_extreme_input_prints_one_line():
    code, _, err, _ = run("ldm", "--spectrum", "powerlaw:0.5", "--lam", "1e300", "--tau", "1e308", "--T", "42",
                          "--d", "34")
    assert (code == 0 and not err) or one_line_error(code, err, status=3)


@pytest.mark.parametrize("call,name", [
    (lambda r: r.rf_dsm(psi_n="1", psi_p=1.0, m=6, t=1.0, lam=0.1), "psi_n"),
    (lambda r: r.rf_dsm(psi_n=[1.0, "2"], psi_p=1.0, m=6, t=1.0, lam=0.1), "psi_n"),
    (lambda r: r.simulate_ldm(n_over_d=1.7976931348623157e308, d=20, seeds=2), "n_over_d"),
    (lambda r: r.simulate_ldm(n_over_d=1e12, d=20, seeds=2), "n_over_d, d, T"),
    (lambda r: r.simulate_rf_dsm(psi_n=1, psi_p=1e300, m=1, t=0.5, lam=1e-3, d=2, seeds=2), "psi_p"),
    (lambda r: r.simulate_rf_dsm(psi_n=1e12, psi_p=1, m=1, t=0.5, lam=1e-3, d=30, seeds=2), "d, psi_n, psi_p, m"),
    (lambda r: r.optimize_rf_dsm(over="tau", psi_n=10.37, psi_p=1.064, m=2, t=5.6e16, lam=0.01), "t"),
    (lambda r: r.rf_dsm(psi_n=1, psi_p=1, m=float("inf"), t=400.0, lam=0.01), "t"),
])
def test_fuzz_reproducers_third_batch(call, name):
    import rmtsolve

    with pytest.raises(ParameterError) as e:
        call(rmtsolve)
    assert e.value.name == name


def test_kernel_limit_errors_per_eigenvalue_sit_at_their_floor_not_below():
    r = rf_dsm(psi_n=1.0, psi_p=math.inf, m=5, t=0.4198, lam=92.37, activation="pi*x + E", tau=92.37,
               spectrum=[2.438, 3.546e-120, 2.438, 0.0, 2.438, 1.966])
    floors = r.as_dict()["test_error_by_eigenvalue"]["test_error_floor"]
    assert np.all(r.test_error_by_eigenvalue >= floors)


def test_simulated_train_error_of_interpolating_features_is_not_negative():
    from rmtsolve import simulate_rf_dsm

    s = simulate_rf_dsm(psi_n=1, psi_p=1, m=1, t=1.0, lam=1e-300, activation="tanh", d=15, seeds=2)
    assert all(v >= 0 for v in s.per_seed["train_error"])


def test_fuzz_reproducers_fourth_batch(tmp_path):
    import rmtsolve

    with pytest.raises(ParameterError) as e:
        rmtsolve.optimize_rf_dsm(over="tau", psi_n=13.6, psi_p=1.0, m=2, t=0.06, lam=[[1], [2, 3]])
    assert e.value.name == "lam"
    with pytest.raises(ParameterError) as e:
        rmtsolve.resolve_activation(lambda x: np.asarray(x)[:1])
    assert e.value.name == "activation"
    with pytest.raises(ConvergenceError):  # never a silent inf: the exact law overflows at 1e200
        rmtsolve.simulate_ldm(n_over_d=9.0, d=3, seeds=2, spectrum=[1.0, 1e200, 2.0])
    code, out, err, _ = run("rf-dsm", "--psi-p", "1.9", "--activation", "1e300*x", "--tau", "1")
    assert one_line_error(code, err, status=3) and len(err) < 300
    code, out, err, _ = run("rf-dsm", "--psi-p", "1.9", "--tau", "1", "--spectrum", "powerlaw:0.9", "--json")
    assert code == 0 and "nan" not in out and "k0" not in out


@pytest.mark.parametrize("call,name", [
    (lambda r: r.rf_dsm(psi_n=1.0, psi_p=-10**400, m=1, t=0.5, lam=0.1), "psi_p"),
    (lambda r: r.rf_dsm(psi_n=1.0, psi_p=1.0, m="inf", t=0.5, lam=0.1), "m"),
    (lambda r: r.rf_dsm(psi_n=1.0, psi_p=1.0, m=10**400, t=0.5, lam=0.1), "m"),
    (lambda r: r.rf_dsm(psi_n=4.8, psi_p=0.09, m=3, t=[], lam=0.001), "psi_n, psi_p, m, t, lam, tau"),
    (lambda r: r.ldm(n_over_d=2.0, tau="1"), "tau"),
    (lambda r: r.ldm(n_over_d=2.0, T="100"), "T"),
    (lambda r: r.ldm(n_over_d=2.0, d="10"), "d"),
    (lambda r: r.ldm(n_over_d=2.0, tau=1 + 1j), "tau"),
    (lambda r: r.ldm(n_over_d=[1.0, 1.0], d=42, mean_norm=[1.0, 0.0, 0.5]),
     "n_over_d, lam, tau, mean_norm, beta_min, beta_max"),
    (lambda r: r.ldm(n_over_d=1.0, d=10**9, spectrum="powerlaw:1.3", lam=0.1, T=1), "d"),
    (lambda r: r.parse_spectrum("powerlaw:0.5").rf_dsm_eigenvalues(10**12), "d"),
    (lambda r: r.MarchenkoPastur(1.0).density(1 + 1j), "x"),
    (lambda r: r.GeneralizedMarchenkoPastur([0.3, 0.1], 39.0).stieltjes([[1, 2], [3]], dps=31), "z"),
    (lambda r: r.feature_spectrum(12 + 0.03j, psi_n=[[1], [2, 3]], psi_p=1.0, m=6, t=0.02), "psi_n"),
    (lambda r: r.coefficients("gelu", 0.03, s2=-10**400), "s2"),
    (lambda r: r.simulate_rf_dsm(psi_n=0.1, psi_p=0.3, m=3, t=1.0, lam=1e-8, d=9, tau=[[1], [2, 3]]), "tau"),
])
def test_fuzz_reproducers_fifth_batch(call, name):
    import rmtsolve

    with pytest.raises(ParameterError) as e:
        call(rmtsolve)
    assert e.value.name == name


def test_kernel_limit_at_high_precision_for_isotropic_data():
    a = rf_dsm(psi_n=3.663, psi_p=math.inf, m=5, t=1.0, lam=0.0, dps=30)
    b = rf_dsm(psi_n=3.663, psi_p=math.inf, m=5, t=1.0, lam=0.0)
    assert float(a.test_error) == pytest.approx(float(b.test_error), rel=1e-12)


def test_rf_dsm_failure_at_extreme_input_prints_one_line():
    code, _, err, _ = run("rf-dsm", "--psi-n", "1e-300", "--psi-p", "0.5", "--json")
    assert one_line_error(code, err, status=2) and "psi_n" in err  # below 1e-12: out of the domain
    code, _, err, _ = run("rf-dsm", "--psi-n", "1e-12", "--psi-p", "0.5", "--json")
    assert (code == 0 and not err) or one_line_error(code, err, status=3)


def test_ldm_with_millions_of_distinct_eigenvalues_is_refused_before_allocating(monkeypatch):
    import rmtsolve._resources as res

    monkeypatch.setattr(res, "available_bytes", lambda: 8 * 2**30)
    vals = np.linspace(0.1, 2.0, 500_000)
    t0 = time.perf_counter()
    with pytest.raises(ParameterError) as e:
        ldm(n_over_d=2.0, lam=0.01, d=vals.size, spectrum=vals)
    assert e.value.name == "spectrum, d" and "GB" in str(e.value) and time.perf_counter() - t0 < 5


def test_rf_dsm_spectrum_beyond_double_range_is_refused():
    from rmtsolve import simulate_rf_dsm

    for call in (lambda: rf_dsm(psi_n=1, psi_p=0.5, m=1, t=1.0, lam=1e-3, spectrum=[1e-200, 1e200], tau=2.4),
                 lambda: simulate_rf_dsm(psi_n=1.4, psi_p=0.5, m=1, t=1.0, lam=1e-8, d=22, seeds=2,
                                         spectrum=[1e200, 1.9e-215, 1.0])):
        with pytest.raises(ParameterError) as e:
            call()
        assert e.value.name == "spectrum"


def test_error_messages_stay_on_one_line_whatever_the_arguments():
    code, _, err, _ = run("mp", "extra", ":S#\nC\t", ")")
    assert one_line_error(code, err)


def test_flow_for_a_vanishing_time_is_untrained_and_quick():
    t0 = time.perf_counter()
    r = rf_dsm(psi_n=1, psi_p=0.484, m=1, t=0.5, lam=1, activation="tanh", tau=1e-300, spectrum=[0.0, 1.0, 2.0])
    assert float(r.test_error) == 1.0 and float(r.train_error) == 1.0 and list(r.test_error_by_eigenvalue) == [1.0] * 3
    near = rf_dsm(psi_n=1, psi_p=0.484, m=1, t=0.5, lam=1, activation="tanh", tau=1e-12, spectrum=[0.0, 1.0, 2.0])
    assert float(near.test_error) == pytest.approx(1.0, abs=1e-10) and time.perf_counter() - t0 < 10


def test_empirical_score_error_at_tiny_diffusion_time_is_finite():
    r = rf_dsm(psi_n=1, psi_p=2, m=1, t=1e-300, lam=1e-3)
    assert math.isfinite(float(r.empirical_score_error)) and float(r.empirical_score_error) > 1e299


def test_generation_with_one_training_point_is_refused():
    code, _, err, _ = run("simulate", "rf-dsm", "--d", "2", "--psi-n", "0.06", "--psi-p", "1", "--generate", "7",
                          "--steps", "4", "--seeds", "1")
    assert one_line_error(code, err) and "psi_n" in err


def test_ridgeless_underparameterised_continuum_point_at_high_precision_is_quick():
    t0 = time.perf_counter()
    hi = rf_dsm(psi_n=9.971, psi_p=0.15, m=3, t=1.804, lam=0.0, spectrum="powerlaw:0.9987", dps=30)
    lo = rf_dsm(psi_n=9.971, psi_p=0.15, m=3, t=1.804, lam=0.0, spectrum="powerlaw:0.9987")
    assert float(hi.test_error) == pytest.approx(float(lo.test_error), rel=1e-10)
    assert time.perf_counter() - t0 < 20  # was 22 s (a ridge descent in steps of two decades)


@pytest.mark.parametrize("call,name", [
    (lambda r: r.rf_dsm(psi_n=2.0, psi_p=np.array([1 + 2j]), m=2, t=3.3, lam=1.0), "psi_p"),
    (lambda r: r.rf_dsm(psi_n=0.08, psi_p=1.0, m=3, t=0.04, lam=1.0, tau=np.array([1 + 2j])), "tau"),
    (lambda r: r.ldm(n_over_d=6.2, lam=0.6, beta_min=[1e-5, 1e-4, 1.5e-4], beta_max=[2e-3, 3e-3, 1e-3, 4e-2]),
     "beta_min, beta_max"),
    (lambda r: r.ldm(n_over_d=5e-324, spectrum=[30.45, 1.0, 0.02], lam=2.5e-6, T=91), "n_over_d"),
    (lambda r: r.rf_dsm(psi_n=1.4, psi_p=11.0, m=math.inf, t=1.0, lam=1.0, activation="1e300*x", dps=30), "activation"),
    (lambda r: r.simulate_rf_dsm(psi_n=1.0, psi_p=1.0, m=2, t=2.2e-309, lam=1.0, d=21, seeds=1), "t"),
])
def test_fuzz_reproducers_final_batch(call, name):
    import rmtsolve

    with pytest.raises(ParameterError) as e:
        call(rmtsolve)
    assert e.value.name == name


def test_fuzz_final_batch_paths():
    import rmtsolve

    with pytest.raises(ParameterError) as e:
        rmtsolve.coefficients("relu", 0.5, dps=26, s2=[])
    assert e.value.name == "s2"
    # a ridge beyond the continuation's start solves directly; beyond 1e100 it is refused
    r = rf_dsm(psi_n=1, psi_p=0.5494, m=4, t=0.5, lam=1e100, tau=0.6939)
    assert float(r.test_error) == 1.0
    for lam in (1e300, 1.7976931348623157e308):
        with pytest.raises(ParameterError) as e:
            rf_dsm(psi_n=1, psi_p=1, m=2, t=1.3e-8, lam=lam, tau=1.0, spectrum=[1.0, 2.0, 3.0])
        assert e.value.name == "lam"
    code, _, err, _ = run("simulate", "rf-dsm", "--psi-p", "1", "--tau", "nan", "--d", "2", "--seeds", "2",
                          "--generate", "6")
    assert one_line_error(code, err) and "tau" in err


def test_sweep_refuses_minus_infinity_and_optimize_refuses_lam_with_over_lam():
    code, _, err, _ = run("sweep", "ldm", "--n-over-d", "3", "--d", "-inf", "--quiet")
    assert one_line_error(code, err) and "d" in err
    code, _, err, _ = run("optimize", "rf-dsm", "--over", "lam", "--lam", "-1")
    assert one_line_error(code, err) and "lam" in err
    code, out, err, _ = run("optimize", "rf-dsm", "--over", "tau", "--psi-p", "2", "--json")
    assert code == 0 and json.loads(out)["params"]["lam"] == 1e-3


def test_high_precision_coefficients_of_an_oscillating_activation_do_not_alias():
    # sin(100 x) at variance ~0.89: mu1 = 100 exp(-5000 v) sqrt(v)-ish, far below 1e-26; every
    # dyadic lattice step once shared the alias at frequency ~6.5 and agreed on -1.2e-8
    c = coefficients("sin(100*x)", 1.0, dps=26, s2="0.1647")
    assert abs(float(c.mu1)) < 1e-20 and float(c.mustar) == pytest.approx(2 ** -0.5, rel=1e-12)


def test_spectral_law_of_a_vanishing_activation_is_the_point_mass_at_zero():
    from rmtsolve import feature_spectrum

    r = feature_spectrum([11.0, 1 + 1j], psi_n=0.62, psi_p=0.076, m=3, t=1.0, activation="0")
    np.testing.assert_allclose(r.stieltjes, [-1 / 11.0, -1 / (1 + 1j)], rtol=1e-15)
    assert r.atom == 1.0 and r.density[0] == 0.0
    with pytest.raises(ParameterError):
        feature_spectrum(0.0, psi_n=0.62, psi_p=0.076, m=3, t=1.0, activation="0")


def test_rerun_reproducers_feature_spectrum_bounds_and_high_precision_train_floor():
    from rmtsolve import feature_spectrum

    with pytest.raises(ParameterError) as e:
        feature_spectrum(18.19, psi_n=0.17, psi_p=1e300, m=4, t=0.001, activation="softplus")
    assert e.value.name == "psi_p"
    r = feature_spectrum(12.57, psi_n=0.92, psi_p=1e-12, m=162688, t=7.9, activation="erf")
    assert np.isfinite(r.stieltjes) and r.atom == 0.0
    for bad in (5e-324, 1e-13):  # below 1e-12 the ratios leave double precision
        with pytest.raises(ParameterError):
            feature_spectrum(12.57, psi_n=0.92, psi_p=bad, m=4, t=1.0)
    assert rf_dsm(psi_n=1e-12, psi_p=1.0, m=1, t=1.0, lam=0.0, dps=16).train_error >= 0


def test_rerun_reproducers_ragged_s2_and_a_user_expression_dividing_by_zero():
    from rmtsolve import resolve_activation

    with pytest.raises(ParameterError) as e:
        coefficients("abs(x)", 1.0, s2=[[1], [2, 3]])
    assert e.value.name == "s2"
    # the kink scan meets 2.75/x at x = 0: numpy's inf there, not Python's ZeroDivisionError
    act = resolve_activation("Max(Min((2.75 / x), Abs(x)), (sinh(5e-324) / Min(-0.7991, x)))")
    assert len(set(act.kinks)) == len(act.kinks) and 0.0 in act.kinks
    assert math.isfinite(coefficients(act, 1.0).mu1)


def test_rerun_reproducer_flow_at_a_vanishing_time_and_eigenvalue():
    kw = dict(psi_n=0.2954, psi_p=0.05528, m=math.inf, t=1e-300, lam=0.01,
              spectrum=[1e-300, 2.466, 0.02212, 0.0])
    # floor per eigenvalue ell/(ell + expm1(2t)): 1/3, 1, 1, 0 (1 - e^{-2t} rounds to 0 at t = 1e-300)
    for r in (rf_dsm(**kw, tau=2.224e-08, on_error="nan"), rf_dsm(**kw)):
        assert np.all(r.converged)
        assert float(r.test_error_floor) == pytest.approx((1 / 3 + 2) / 4, rel=1e-12)
        assert float(r.test_error) == pytest.approx(1.0, abs=1e-6)
        # 2 E[ell]/expm1(2t) = E[ell]/t to double precision, plus O(1) terms
        assert float(r.empirical_score_error) == pytest.approx(np.mean(kw["spectrum"]) / 1e-300, rel=1e-12)


def test_empirical_score_error_beyond_the_double_range_is_inf_and_finite_at_dps():
    kw = dict(psi_n=0.3, psi_p=0.06, m=math.inf, t=1e-300, lam=0.01, spectrum=[1e100, 1.0])
    assert rf_dsm(**kw).empirical_score_error == math.inf
    r = rf_dsm(**kw, dps=30)
    assert abs(r.empirical_score_error / (mpmath.mpf(5e99) / mpmath.mpf(1e-300)) - 1) < 1e-12


@pytest.mark.slow
def test_rerun_reproducer_high_precision_ldm_point_is_fast_and_agrees_with_double():
    # 93 s with mpmath's pure-Python back end, 27 s with gmpy2 under mpmath, 4 s with the
    # step recursions and two-resolvent kernels in gmpy2 directly
    assert mpmath.libmp.BACKEND == "gmpy"
    kw = dict(n_over_d=2.517, spectrum=[22.35, 2.517], mean_norm=1.0, beta_max=0.001)
    start = time.perf_counter()
    hi = ldm(**kw, dps=30)
    assert time.perf_counter() - start < 20
    lo = ldm(**kw)
    for name in ("kl_gen_data_per_dim", "kl_data_gen_per_dim", "kl_oracle_per_dim"):
        assert float(getattr(hi, name)) == pytest.approx(float(getattr(lo, name)), rel=1e-10)


@pytest.mark.slow
def test_rerun_reproducer_ldm_hard_edge_at_30_digits_and_1000_steps_is_fast():
    # 442 contour nodes x 1000 steps: 40-60 s in mpmath objects, 14 s in gmpy2 (fuzz seed 2010350180)
    kw = dict(n_over_d=1.0, d=50, lam=6.176e-05, mean_norm=0.02072)
    start = time.perf_counter()
    hi = ldm(**kw, dps=30)
    assert time.perf_counter() - start < 40
    lo = ldm(**kw)
    for name in ("kl_gen_data_per_dim", "kl_data_gen_per_dim", "excess_kl_per_dim", "kl_oracle_per_dim"):
        assert float(getattr(hi, name)) == pytest.approx(float(getattr(lo, name)), rel=1e-10)


def test_gmpy2_conversions_are_exact_both_ways_special_values_included():
    import gmpy2

    from rmtsolve._backend import from_gmpy, gmpy_namespace, to_gmpy

    with mpmath.workdps(40), gmpy2.context(gmpy2.get_context(), precision=mpmath.mp.prec):
        xs = [mpmath.mpf(1) / 3, -mpmath.pi * mpmath.mpf("1e-300"), mpmath.mpc(1, -2) / 7,
              mpmath.mpf(0), mpmath.inf, -mpmath.inf, mpmath.mpc(-mpmath.inf, 1), 2.5, 3, 1 + 2j]
        back = from_gmpy(to_gmpy(np.array(xs, dtype=object)))
        assert all(a == b for a, b in zip(xs, back))
        assert mpmath.isnan(from_gmpy(to_gmpy(mpmath.nan)))
        # MPC has no expm1: the substitute keeps relative accuracy near 0 and away from it
        f = gmpy_namespace()
        for w in (mpmath.mpc("1e-25", "3e-26"), mpmath.mpc(-0.3, 2.1), mpmath.mpc(2, "-1e-30")):
            got, want = from_gmpy(f.expm1(np.array([to_gmpy(w)], dtype=object))[0]), mpmath.expm1(w)
            assert abs(got.real - want.real) <= 1e-38 * abs(want.real)
            assert abs(got.imag - want.imag) <= 1e-38 * abs(want.imag)


def test_feature_spectrum_at_a_real_point_far_below_the_bulk_is_the_boundary_value():
    from rmtsolve import feature_spectrum

    # p >> n m: nearly all the mass is the atom at 0, the bulk sits near psi_p/(psi_n m) ~ 1e7,
    # so s(x + i0) = -atom/x + O(1e-7) at x = -1, 0.5, 2 (the evaluation height is ~1 here)
    x = np.array([-1.0, 0.5, 2.0])
    r = feature_spectrum(x, psi_n=1e-8, psi_p=10.0, m=4, t=1.0)
    np.testing.assert_allclose(r.stieltjes.real, -r.atom / x, rtol=1e-6)
    assert np.all(r.stieltjes.imag >= 0) and np.all(np.abs(r.density) < 1e-12)
    with pytest.raises(ParameterError):
        feature_spectrum(-1.0, psi_n=5e-324, psi_p=0.1043, m=4, t=1.0)


def test_exact_moments_of_a_numpy_integer_ratio_do_not_overflow():
    from rmtsolve import MarchenkoPastur

    m = MarchenkoPastur(np.int64(3)).moment(31)  # numpy int64 arithmetic wrapped to a negative number
    assert m == MarchenkoPastur(3).moment(31) and m > 2**63


def test_kinked_special_function_expression_at_high_precision_is_fast_and_agrees_with_the_w_rule(monkeypatch):
    import rmtsolve.coeffs as C
    from rmtsolve import resolve_activation

    act = resolve_activation("(Abs(x) + Max((x * x), erfc(x)))")
    # sympy cannot solve x^2 = erfc(x): the scanned kinks are refined to the working precision
    with mpmath.workdps(40):
        k = act.mp_kinks()[-1]
        assert abs(k**2 - mpmath.erfc(k)) < mpmath.mpf(10) ** -38
    start = time.perf_counter()
    C._clear_mp_caches()
    fast = coefficients(act, 0.5, dps=20)
    assert time.perf_counter() - start < 20
    monkeypatch.setattr(C, "_SEPARABLE_MIN_S", 10.0)  # the w-rule everywhere
    C._clear_mp_caches()
    slow = coefficients(act, 0.5, dps=20)
    for name in ("mu1", "mu_s", "mu_e"):
        assert abs(getattr(fast, name) - getattr(slow, name)) < mpmath.mpf(10) ** -19


def test_a_high_exact_moment_is_fast_and_the_narayana_sum_matches_the_recursion():
    from fractions import Fraction

    from rmtsolve import MarchenkoPastur

    start = time.perf_counter()
    m = MarchenkoPastur("1").moment(10000)  # the Catalan number C_10000 (O(k^2) recursion: > 60 s)
    assert time.perf_counter() - start < 10
    assert m == Fraction(math.comb(20000, 10000), 10001)
    # the recursion m_{n+1} = (1 - c) m_n + c sum m_i m_{n-i} (the definition), exactly
    c = Fraction(3, 7)
    ms = [Fraction(1)]
    for n in range(12):
        ms.append((1 - c) * ms[n] + c * sum(ms[i] * ms[n - i] for i in range(n + 1)))
    assert [MarchenkoPastur("3/7").moment(k) for k in range(13)] == ms
    assert MarchenkoPastur(0.3).moment(10000) == math.inf and MarchenkoPastur(1e150).moment(3) > 0


def test_an_all_infinite_tau_keeps_its_shape_and_an_empty_one_is_refused():
    kw = dict(psi_n=0.2911, psi_p=0.163, m=4, t=0.1, lam=10.47)
    assert np.shape(rf_dsm(**kw, tau=[math.inf, math.inf]).test_error) == (2,)
    assert np.shape(rf_dsm(**dict(kw, psi_n=[0.3, 0.4]), tau=[[math.inf], [math.inf]]).test_error) == (2, 2)
    with pytest.raises(ParameterError):
        rf_dsm(**kw, tau=np.array([]), spectrum="powerlaw:1e-300")


def test_simulation_with_a_huge_integral_m_is_refused_by_its_memory_estimate():
    from rmtsolve import simulate_rf_dsm

    with pytest.raises(ParameterError) as e:  # one data point's 1e300 noisy copies
        simulate_rf_dsm(psi_n=0.5041, psi_p=0.1869, m=1e300, t=0.1048, lam=203.1, activation="2*x", d=12, seeds=1)
    assert "m" in e.value.name.split(", ")


def test_high_precision_coefficients_of_a_kinked_expression_at_another_variance():
    # the scaled activation's key carries "|variance=...": the expression is read before it
    c = coefficients("0.5*x + 0.5*abs(x)", 0.03447, dps=25, s2=0.03447)
    assert abs(c.mu1 - mpmath.mpf("0.5")) < mpmath.mpf(10) ** -24  # relu-like: E sigma' = 1/2
    assert coefficients("Max(erfc(x), x)", 0.5, dps=20, s2=2).mu1 < 0


def test_a_subnormal_diffusion_time_rounds_no_variance_below_zero():
    # t = 5e-324: D = 1 - e^{-2t} is subnormal, the relu closed form rounded mu_e^2 to -1e-162
    r = rf_dsm(psi_n=0.06577, psi_p=1.329, m=7, t=5e-324, lam=3.312e-06, tau=1.821, spectrum=np.array([2.751]),
               on_error="nan")
    assert np.all(r.converged) and np.isfinite(r.test_error) and r.test_error_floor == 1.0
    assert r.empirical_score_error == math.inf  # 2 E[ell]/expm1(2t): beyond the double range
    assert coefficients("relu", 5e-324).mu_e >= 0


def test_flow_total_is_the_weighted_mean_of_its_eigenvalue_parts():
    # fuzz rerun 5: summed through the Talbot weights the total differed from the mean of its
    # parts by ~1e-13 (relative 1.6e-9 at test ~ 3e-5, 45 % at test ~ 4e-13)
    kw = dict(psi_n=9.464, psi_p=9.238, m=1e300, t=1.0, lam=5.249e-06, activation="x",
              tau=np.array([1.0, 28.65]), spectrum=np.array([1.182e-226, 4.254e-234, 0.0]))
    r = rf_dsm(**kw)
    by = r.as_dict()["test_error_by_eigenvalue"]
    np.testing.assert_allclose(np.asarray(by["test_error"]) @ np.asarray(by["weight"]), r.test_error,
                               rtol=1e-14, atol=0)


def test_rerun_reproducer_ridgeless_flow_at_huge_tau_is_the_min_norm_solution():
    # fuzz seed 785718485: rounding noise along U's kernel times f = 1/ev gave inf
    from rmtsolve import simulate_rf_dsm

    kw = dict(psi_n=0.07226, psi_p=0.3161, m=2, t=0.002254, lam=0.0, activation="relu", d=33, seeds=1,
              seed=1233, spectrum="powerlaw:0")
    ridgeless = simulate_rf_dsm(**kw)
    for tau in (1e6, 1e300):
        flow = simulate_rf_dsm(**kw, tau=tau)
        assert flow.test_error == pytest.approx(ridgeless.test_error, rel=1e-9)
        assert flow.empirical_score_error == pytest.approx(ridgeless.empirical_score_error, rel=1e-9)
        assert 0 <= flow.train_error < 1e-12


def test_rerun_reproducers_coefficients_ragged_t_and_fast_growing_activation():
    # fuzz seed 785718485
    from rmtsolve import coefficients

    with pytest.raises(ParameterError) as e:
        coefficients("softplus", [[1], [2, 3]])
    assert e.value.name == "t"
    # x**50 peaks at |x| = 10 against the normal density: the double quadrature truncated at 12
    # lost 0.16 % of mustar; exact: mustar^2 = 99!! - (49!!)^2 (unit variance, mu1 = 0)
    c = coefficients("x**50", 1.0)
    exact = math.sqrt(float(mpmath.fac2(99) - mpmath.fac2(49) ** 2))
    assert c.mustar == pytest.approx(exact, rel=1e-13)
    assert c.mu0 == pytest.approx(float(mpmath.fac2(49)), rel=1e-13)
    assert abs(c.mu1) <= 1e-15 * c.mustar  # odd moment: zero up to rounding of the even ones
    hi = coefficients("x**50", 1.0, dps=50)
    assert float(hi.mustar) == pytest.approx(exact, rel=1e-13)


def test_memory_estimate_respects_an_address_space_limit():
    # fuzz seed 785718485: under `ulimit -v` (RLIMIT_AS) a simulation the machine's free memory
    # allowed failed with MemoryError; the estimate now refuses it with the one-line error
    code = (
        "import resource; resource.setrlimit(resource.RLIMIT_AS, (6 * 2**30, resource.RLIM_INFINITY))\n"
        "from rmtsolve import cli; raise SystemExit(cli.main(['simulate', 'rf-dsm', '--psi-n', '1000', '--psi-p',"
        " '1000', '--tau', '5', '--d', '13', '--seeds', '1']))\n")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert p.returncode == 2, p.stderr
    assert p.stderr.count("\n") == 1 and "GB" in p.stderr and "Traceback" not in p.stderr


@pytest.mark.parametrize("s2, t", [(6058603487433741.0, 1.0), (1e18, 0.01), (1.0, 1e-10), (1e-3, 3.0)])
def test_rerun_reproducer_relu_coefficients_near_full_correlation(s2, t):
    # fuzz seed 2503047111: at s2 = 6e15 the copies' correlation rho rounds within 1e-16 of 1,
    # and asin(rho) turned that rounding into a relative error of 2e-9 in mu_s^2 + mu_e^2
    lo, hi = coefficients("relu", t, s2=s2), coefficients("relu", t, s2=s2, dps=40)
    assert lo.mu_s**2 + lo.mu_e**2 == pytest.approx(lo.mustar**2, rel=1e-14)
    for k in ("mu0", "mu1", "mustar", "mu_s", "mu_e"):
        assert getattr(lo, k) == pytest.approx(float(getattr(hi, k)), rel=1e-14)


def test_rerun_reproducer_ridge_below_rounding_is_the_ridgeless_limit():
    # fuzz seed 2503047111: lam = 1e-300 made U/N + lam I singular in floating point (LinAlgError)
    from rmtsolve import simulate_rf_dsm

    assert cli.main(["simulate", "rf-dsm", "--psi-p", "2", "--lam", "1e-300", "--spectrum", "powerlaw:0",
                     "--d", "2", "--seeds", "2", "--json"]) == 0
    kw = dict(psi_n=0.5, psi_p=2.0, m=1, t=0.5, d=100, seeds=1)
    ridgeless = simulate_rf_dsm(**kw, lam=0.0)
    for lam in (1e-300, 1e-14):  # p > n: U has a kernel, which LU would fill with rounding / lam
        r = simulate_rf_dsm(**kw, lam=lam)
        assert r.test_error == pytest.approx(ridgeless.test_error, rel=1e-10)
        assert 0 <= r.train_error < 1e-20


def test_generation_with_a_ridge_below_rounding_is_finite_and_the_small_ridge_limit():
    from rmtsolve.rf_dsm.generate import generate_rf_dsm

    kw = dict(psi_n=0.2, psi_p=3.0, m=10, d=20, K=10, steps=4, seeds=1, theory=False)
    tiny, small = generate_rf_dsm(**kw, lam=1e-300), generate_rf_dsm(**kw, lam=1e-13)
    assert math.isfinite(tiny.score_error_integral)
    assert tiny.score_error_integral == pytest.approx(small.score_error_integral, rel=1e-6)


def test_rerun_reproducer_kinks_of_many_digit_coefficients_do_not_stall_sympy():
    # fuzz seed 434832764: solveset factored minimal polynomials of 8.876e-56 (an exact rational
    # of 60 digits) for minutes; such kinks are scanned, and the non-integrable pole is refused
    start = time.perf_counter()
    with pytest.raises(ConvergenceError):
        coefficients("Min(((-8.876e-56 + x))**-3, Min((x)**5, x))", 1.0)
    assert time.perf_counter() - start < 10
    from rmtsolve import resolve_activation

    assert resolve_activation("Max(x**5, x)").kinks == pytest.approx((-1.0, 0.0, 1.0), abs=1e-14)
    assert resolve_activation("Abs(x - 1/3)").kinks == (1 / 3,)  # exact kinks stay exact


def test_rerun_reproducers_fuzz_seed_434832764_ldm_and_linear_features():
    # a finite-d contour of 1662 nodes (d = 1, N = 2: the hard edge) at dps paired every node
    # with every other for minutes: refused beyond 600 nodes with finite d
    start = time.perf_counter()
    with pytest.raises(ParameterError) as e:
        ldm(n_over_d=2.0, lam=1.0, tau=1.0, T=6, beta_min=1e-5, beta_max=1e-3, d=1, dps=16)
    assert "600 nodes" in str(e.value) and time.perf_counter() - start < 10
    # a large tau at dps: exp(-tau q) was formed as 1 + expm1(-tau q) = 0, so the kernel's step
    # vanished (KL(gen || data) = inf, KL(data || gen) = 0); now exp itself, as in double precision
    lo, hi = ldm(n_over_d=0.7945, tau=1e5, T=1), ldm(n_over_d=0.7945, tau=1e5, T=1, dps=27)
    assert float(hi.kl_gen_data_per_dim) == pytest.approx(float(lo.kl_gen_data_per_dim), rel=1e-10)
    assert lo.kl_data_gen_per_dim == math.inf  # beyond double range; finite at dps
    big = hi.kl_data_gen_per_dim.item()
    assert mpmath.isfinite(big) and mpmath.log(big) > 1000
    with pytest.raises(ParameterError) as e:  # beyond gmpy2's exponent range: refused, not rounded
        ldm(n_over_d=0.7945, tau=1e100, T=1, dps=27)
    assert e.value.name == "tau, dps"
    # linear features at lam = 0 diverge at n m = d when p > d (their span has dimension d)
    with pytest.raises(ParameterError) as e:
        rf_dsm(psi_n=1.0, psi_p=40710.0, m=1, t=0.5, lam=0.0, activation="linear")
    assert e.value.name == "lam" and "linear" in str(e.value)
    r = rf_dsm(psi_n=[1.0, 0.5], psi_p=2.0, m=1, t=0.5, lam=0.0, activation="linear", on_error="nan")
    assert list(r.converged) == [False, True] and np.isfinite(r.test_error[1])


def test_rerun_reproducer_ldm_mean_norm_beyond_double_range_is_refused():
    # fuzz seed 121944013: mean_norm = 1.8e308 made the KLs inf
    code, out, err, _ = run(*["ldm", "--spectrum", "powerlaw:0.3366", "--lam", "573.8", "--T", "1000",
                              "--mean-norm", "1.7976931348623157e308", "--json"])
    assert code == 2 and "mean_norm" in err and err.count("\n") == 1
    r = ldm(n_over_d=2.0, spectrum="powerlaw:0.3366", lam=573.8, T=100, mean_norm=1e290)
    assert math.isfinite(r.kl_gen_data_per_dim) and math.isfinite(r.kl_oracle_per_dim)


def test_rerun_reproducers_fuzz_seed_46019879():
    # erf at a huge preactivation variance (s2 = 2.3e16): c = 2v/(1 + 2v) and a rho near 1 lost
    # sqrt(eps) in asin; now from 1 - c and 1 - a rho given exactly
    lo = coefficients("erf", 1.0, s2=2.312117298986472e16)
    hi = coefficients("erf", 1.0, s2=2.312117298986472e16, dps=40)
    assert lo.mu_s**2 + lo.mu_e**2 == pytest.approx(lo.mustar**2, rel=1e-14)
    for k in ("mu1", "mustar", "mu_s", "mu_e"):
        assert getattr(lo, k) == pytest.approx(float(getattr(hi, k)), rel=1e-14)
    # an mpmath number for a simulation parameter reached numpy's log1p
    from rmtsolve import simulate_ldm

    r = simulate_ldm(n_over_d=0.4916, d=32, spectrum="isotropic", lam=1.147e-06, beta_max=mpmath.mpf("0.5"),
                     T=74, seeds=2)
    assert math.isfinite(r.kl_gen_data_per_dim)


@pytest.mark.parametrize("s2, t", [(1e-8, 1e-6), (1e-3, 0.01), (0.3, 0.2), (1e6, 3.0)])
def test_erf_coefficients_at_small_and_large_preactivation_variance(s2, t):
    # at a tiny variance asin(d) - a (1 - rho) cancelled to O(a^2) (1.6e-4 relative at s2 = 1e-8,
    # t = 1e-6): mu_e^2 is now the positive series there
    lo, hi = coefficients("erf", t, s2=s2), coefficients("erf", t, s2=s2, dps=40)
    assert lo.mu_s**2 + lo.mu_e**2 == pytest.approx(lo.mustar**2, rel=1e-13)
    for k in ("mu1", "mustar", "mu_s", "mu_e"):
        assert getattr(lo, k) == pytest.approx(float(getattr(hi, k)), rel=1e-13)


@pytest.mark.parametrize("name", ["n_over_d", "lam", "mean_norm", "beta_min", "beta_max"])
def test_rerun_reproducer_ldm_empty_array_in_any_parameter_is_refused(name):
    # fuzz seed 433302465: mean_norm=[] reached np.max (a traceback) before the empty-grid check
    kw = dict(n_over_d=1.778, d=24, lam=0.000422, mean_norm=1.0, beta_min=0.0004918, T=199)
    with pytest.raises(ParameterError, match="non-empty"):
        ldm(**dict(kw, **{name: []}))


_PEAK = """
import rmtsolve
from rmtsolve._resources import _proc_bytes
from rmtsolve.rf_dsm.sim import _memory_estimate
# VmHWM, not ru_maxrss: a child's ru_maxrss starts at its parent's (pytest's) high-water mark
base = _proc_bytes("/proc/self/status", "VmHWM:")
rmtsolve.simulate_rf_dsm(psi_n={psi_n}, psi_p={psi_p}, m={m}, t=0.5, lam=1.0, d={d}, seeds=1)
peak = _proc_bytes("/proc/self/status", "VmHWM:") - base
print(peak, _memory_estimate({d}.0, {psi_n} * {d}, {psi_p} * {d}, {m}.0, 1.0, None))
"""


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/status")
def test_rerun_reproducer_simulation_peak_memory_stays_below_its_estimate_when_d_exceeds_p():
    # fuzz seed 433302465: chunks were sized by p alone, so at d >> p one chunk held all n m noisy
    # inputs (2 GiB at d = 11019) and the run died with MemoryError under an 8 GB address-space
    # limit that the estimate had passed; measured before the fix: 1034 MiB against 592 MiB
    out = subprocess.run([sys.executable, "-c", _PEAK.format(psi_n=1, psi_p=0.05, m=4, d=3000)],
                         capture_output=True, text=True, timeout=120, check=True).stdout
    peak, est = map(float, out.split())
    assert 0.4 * est < peak <= est


@pytest.mark.parametrize("expr, slope, offset", [("2*x", 2, 0), ("x + 1", 1, 1), ("3*x - 2", 3, -2)])
@pytest.mark.parametrize("t", ["1e-6", "0.5", "3", "800", "1e300"])
def test_affine_expression_coefficients_at_high_precision(expr, slope, offset, t):
    # fuzz seed 1989062765 (exit 3, so counted as documented): for an affine f, mustar^2 is exactly 0
    # and mu_s^2, mu_e^2 are rounding noise, which the negative-square check held against error
    # estimates of 0 ('2*x' at t = 800: -8.5e-1508 "beyond its error" 5.7e-1567); the check now
    # allows the quadratures' absolute floor (tol^2 E f^2), as their convergence tests do
    c = coefficients(expr, t, dps=29)
    assert float(c.mu1) == pytest.approx(slope, rel=1e-14) and abs(c.mu1 - slope) < 1e-25
    assert abs(c.mu0 - offset) < 1e-25
    assert c.mustar < 1e-25 and c.mu_s < 1e-25 and c.mu_e < 1e-25


@pytest.mark.parametrize("t", [1e-6, 0.5])
def test_affine_expression_coefficients_at_another_variance_in_double_precision(t):
    # the double-precision twin: 'x + 1' at s2 = 7 gave mu_s^2 = -4e-33 "beyond its error" 3e-33
    c = coefficients("x + 1", t, s2=7.0)
    assert c.mu0 == pytest.approx(1.0, rel=1e-14) and c.mu1 == pytest.approx(1.0, rel=1e-14)
    assert c.mustar < 1e-14 and c.mu_s < 1e-14 and c.mu_e < 1e-14


def test_affine_expression_near_full_correlation_at_another_variance_at_high_precision():
    # the Gauss-Hermite ladder asked successive rules to agree relative to a value that is pure
    # rounding for an affine f (t = 1e-8, s2 = 50); it now has the acceptance's absolute floor
    c = coefficients("2*x", "1e-8", s2="50", dps=30)
    assert abs(c.mu1 - 2) < 1e-25 and c.mustar < 1e-25 and c.mu_e < 1e-25
    # a smooth activation there keeps its relative accuracy
    lo, hi = coefficients("tanh(x)", "1e-8", s2="50", dps=30), coefficients("tanh(x)", "1e-8", s2="50", dps=45)
    assert abs(lo.mu_e - hi.mu_e) < 1e-29 * hi.mu_e and abs(lo.mu_s - hi.mu_s) < 1e-29 * hi.mu_s


def test_successful_commands_print_no_warnings(tmp_path):
    # fuzz seed 1989062765 (exit 0, stderr noted): m = 1.8e308 overflowed 1/iota in the
    # divergence test; a generated KL near 1e300 overflowed its standard error's squares
    code, out, err, _ = run("rf-dsm", "--psi-n=0.9814", "--psi-p", "1.0", "--m", "1.7976931348623157e308",
                            "--activation", "gelu", "--json")
    assert code == 0 and err == "" and math.isfinite(json.loads(out)["test_error"])
    tiny = tmp_path / "tiny.txt"
    tiny.write_text("1e-300 1\n")
    code, out, err, _ = run("simulate", "rf-dsm", "--t0", "0.001992", "--t", "0.5755", "--d", "11", "--steps", "2",
                            "--psi-p", "0.3196", "--seeds", "2", "--T=0.5155", "--lam", "6.271e-06", "--activation",
                            "softplus", "--generate", "19", "--m", "4", "--spectrum", f"file:{tiny}", "--json")
    assert code == 0 and err == "", err
    r = json.loads(out)
    for s in ("sde", "ode"):
        kl, se = r["generated_kl_gaussian_fit"][s], r["generated_kl_gaussian_fit_stderr"][s]
        assert 1e290 < kl < 1e308 and 0 < se < kl


@pytest.mark.slow
def test_rerun_reproducer_small_flow_train_error_agrees_with_30_digits():
    # fuzz seed 2745573689: the order-16 Talbot sum left 2.5e-10 of a train error of 4.6e-4
    # (truncation on a cancellation; the test error was right to 7e-13); such points now go
    # to the 40-digit fallback at orders 20 and 24
    kw = dict(psi_n=0.2, psi_p=4.153, m=3, t=1.5, lam=0.01944, tau=4.37, activation="relu",
              spectrum=[1.559, 0.9252])
    lo, hi = rf_dsm(**kw), rf_dsm(**kw, dps=30)
    for k in ("train_error", "test_error"):
        assert abs(getattr(lo, k) - float(getattr(hi, k))) <= 1e-12 * float(getattr(hi, k))
