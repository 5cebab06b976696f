"""Timings of the LDM solver and simulator: python validation/bench_ldm.py

Writes validation/results/bench_ldm.json.  Targets (issue, LDM part 2): one finite-d point
with d = 1000 < 0.5 s; one d -> inf point < 50 ms; (issue 11) 100 values of n_over_d in one
call < 1 s.  Times are (best, median) in seconds,
single-threaded BLAS.
"""
import json
import os
import pathlib
import sys

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT.parent))
sys.path.insert(0, str(ROOT))
from _bench import best, cli, machine  # noqa: E402
from rmtsolve.ldm import ldm  # noqa: E402
from rmtsolve.ldm_sim import simulate_ldm  # noqa: E402


def main():
    out = {"machine": machine(), "targets": {"finite_d_1000_s": 0.5, "d_inf_s": 0.05}}
    ldm(n_over_d=2.0, lam=1e-2)  # warm-up (imports)
    cases = {
        "d_inf_isotropic_s": dict(n_over_d=2.0, lam=1e-2),
        "d_inf_isotropic_tau100_mean1_s": dict(n_over_d=0.5, lam=1e-2, tau=100.0, mean_norm=1.0),
        "d_inf_powerlaw0.5_s": dict(n_over_d=2.0, lam=1e-2, spectrum="powerlaw:0.5"),
        "finite_d1000_isotropic_s": dict(n_over_d=2.0, lam=1e-2, d=1000),
        "finite_d1000_powerlaw1_s": dict(n_over_d=2.0, lam=1e-2, spectrum="powerlaw:1", d=1000),
        "finite_d1000_powerlaw2_tau100_s": dict(n_over_d=0.5, lam=1e-2, tau=100.0,
                                                 spectrum="powerlaw:2", d=1000, mean_norm=1.0),
    }
    for name, kw in cases.items():
        out[name] = best(lambda kw=kw: ldm(**kw), 10)
    nd = np.geomspace(0.25, 16, 100)
    out["d_inf_isotropic_100_n_over_d_s"] = best(lambda: ldm(n_over_d=nd, lam=1e-2), 3)
    out["d_inf_powerlaw0.5_100_n_over_d_s"] = best(lambda: ldm(n_over_d=nd, lam=1e-2, spectrum="powerlaw:0.5"), 3)
    out["d_inf_isotropic_dps30_T100_s"] = best(lambda: ldm(n_over_d=2.0, lam=1e-2, T=100, dps=30), 1)
    out["simulate_d400_10_seeds_s"] = best(
        lambda: simulate_ldm(n_over_d=2.0, lam=1e-2, d=400, seeds=10), 2)
    out["simulate_d1000_1_seed_s"] = best(lambda: simulate_ldm(n_over_d=2.0, lam=1e-2, d=1000,
                                                               seeds=1), 2)
    out["meets_targets"] = {
        "grid_100_n_over_d_under_1s": out["d_inf_isotropic_100_n_over_d_s"][0] < 1.0,
        "finite_d_1000": max(out[k][0] for k in out if k.startswith("finite_d1000")) < 0.5,
        "d_inf_isotropic": out["d_inf_isotropic_s"][0] < 0.05,
        "d_inf_powerlaw_continuum": out["d_inf_powerlaw0.5_s"][0] < 0.05,
    }
    path = ROOT / "results" / "bench_ldm.json"
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps(out, indent=1))
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    cli(__doc__)
    main()
