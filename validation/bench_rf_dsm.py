"""Timings of the RF-DSM solver (not run by CI): python validation/bench_rf_dsm.py

Writes validation/results/bench_rf_dsm.json.  Targets (issue 3): one double point < 5 ms
in-process, a 100 x 100 (psi_n, psi_p) grid < 10 s, a 30-digit point < 3 s; issue 5:
`rmtsolve sweep rf-dsm` over 100 x 100 < 20 s and rows equal to single calls to 1e-10.
"""
import csv
import io
import json
import pathlib
import subprocess
import sys
import time

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT.parent))
sys.path.insert(0, str(ROOT))
from _bench import best, cli, machine  # noqa: E402
from rmtsolve import rf_dsm, simulate_rf_dsm  # noqa: E402


def main():
    kw = dict(psi_n=1.0, psi_p=2.0, m=4, t=0.5, lam=1e-3, activation="relu")
    rf_dsm(**kw)  # warm-up: coefficient cache, imports
    out = {"machine": machine()}
    out["one_point_double_s"] = best(lambda: rf_dsm(**kw), 50)
    out["one_point_double_m_inf_s"] = best(lambda: rf_dsm(**(kw | {"m": float("inf")})), 50)
    PN, PP = np.meshgrid(np.geomspace(0.1, 10, 100), np.geomspace(0.1, 10, 100))
    out["grid_100x100_s"] = best(lambda: rf_dsm(psi_n=PN, psi_p=PP, m=4, t=0.5, lam=1e-3), 3)
    # m = 1 crosses the sharp interpolation peak at p = n: the slowest continuation.
    out["grid_100x100_m1_s"] = best(lambda: rf_dsm(psi_n=PN, psi_p=PP, m=1, t=0.5, lam=1e-3), 1)
    out["grid_100x100_ridgeless_m_inf_s"] = best(lambda: rf_dsm(psi_n=PN, psi_p=PP, m=np.inf, t=0.5, lam=0.0), 1)
    out["one_point_tau_s"] = best(lambda: rf_dsm(**kw, tau=5.0), 5)
    from rmtsolve import feature_spectrum, score_error_integral
    out["feature_spectrum_1000_real_points_s"] = best(
        lambda: feature_spectrum(np.linspace(1e-3, 5, 1000), psi_n=1.0, psi_p=2.0, m=4, t=0.5), 3)
    out["score_error_integral_s"] = best(
        lambda: score_error_integral(psi_n=1.0, psi_p=2.0, m=4, lam=1e-3, t0=0.01, T=5.0), 3)
    out["one_point_dps30_s"] = best(lambda: rf_dsm(**kw, dps=30), 3)
    out["one_point_dps50_s"] = best(lambda: rf_dsm(**kw, dps=50), 3)
    out["one_point_dps30_tanh_s"] = best(lambda: rf_dsm(**(kw | {"activation": "tanh", "t": 0.7}), dps=30), 1)
    # The CLI sweep over 100 x 100, and its agreement with single calls.
    t0 = time.perf_counter()
    res = subprocess.run([sys.executable, "-m", "rmtsolve.cli", "sweep", "rf-dsm", "--psi-n", "0.1:10:100:log",
                          "--psi-p", "0.1:10:100:log", "--m", "4", "--t", "0.5", "--lam", "1e-3", "--quiet"],
                         capture_output=True, text=True, check=True, cwd=ROOT.parent)
    out["cli_sweep_100x100_s"] = time.perf_counter() - t0
    rows = list(csv.DictReader(io.StringIO(res.stdout)))
    rng = np.random.default_rng(0)
    worst = 0.0
    for i in rng.choice(len(rows), 25, replace=False):
        r = rows[i]
        single = rf_dsm(psi_n=float(r["psi_n"]), psi_p=float(r["psi_p"]), m=4, t=0.5, lam=1e-3)
        worst = max(worst, abs(float(r["test_error"]) - float(single.test_error)) / float(single.test_error))
    out["cli_sweep_rows"] = len(rows)
    out["cli_sweep_vs_single_max_rel_diff"] = worst
    # Theory vs simulation at d = 800 (one seed).
    sim_kw = dict(psi_n=1.0, psi_p=2.0, m=4, t=0.5, lam=1e-3, activation="relu")
    t0 = time.perf_counter()
    simulate_rf_dsm(**sim_kw, d=800, seeds=1)
    out["simulation_d800_one_seed_s"] = time.perf_counter() - t0
    out["speed_ratio_sim_d800_over_theory"] = out["simulation_d800_one_seed_s"] / out["one_point_double_s"][0]
    (ROOT / "results").mkdir(exist_ok=True)
    (ROOT / "results" / "bench_rf_dsm.json").write_text(json.dumps(out, indent=1))
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    cli(__doc__)
    main()
