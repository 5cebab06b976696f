"""Timings of anisotropic RF-DSM (not run by CI): python validation/bench_rf_dsm_aniso.py

Writes validation/results/bench_rf_dsm_aniso.json.  Targets (issue 9):

- two-atom spectrum: one point < 5 ms in-process; continuum power law: one point < 50 ms; a
  100 x 100 (psi_n, psi_p) grid with a two-atom spectrum < 10 s;
- spectral law of U: every spectral point < 5 ms, including points within 1e-3 of a spectral
  edge, and >= 10x faster at every point than a baseline doing what the reference works'
  script does (scipy.optimize.root(method='lm') continued from Im z = 100 down to 1e-9 at the
  point, 114 solves) on the same equations; the agreement of the two is reported.
"""
import json
import math
import pathlib
import sys
import time

import numpy as np
from scipy import optimize

ROOT = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT.parent))
sys.path.insert(0, str(ROOT))
from _bench import best, cli, machine  # noqa: E402
from rmtsolve import feature_spectrum, rf_dsm  # noqa: E402
from rmtsolve._backend import MATH  # noqa: E402
from rmtsolve.population import parse_spectrum  # noqa: E402
from rmtsolve.rf_dsm.equations import system_for  # noqa: E402
from rmtsolve.rf_dsm.solver import coefficient_arrays, iota_of  # noqa: E402

TWO = [0.25, 1.75]
SPEC_KW = dict(psi_n=1.0, psi_p=2.0, m=3, t=0.5, activation="relu", spectrum=TWO)


def baseline_point(x, kw, etas=np.geomspace(100, 1e-9, 114)):
    """The reference script's method on rmtsolve's equations: scipy root(method='lm') on the
    real and imaginary parts of F, continued from Im z = 100 down to 1e-9 at fixed Re z."""
    spec = parse_spectrum(kw["spectrum"])
    system = system_for(spec)
    _, (mu1, mus2, mue2) = coefficient_arrays(kw["activation"], np.asarray(kw["t"]), spec.s2, None)
    rest = (float(mu1), float(mus2), float(mue2))
    pars = (kw["psi_n"], kw["psi_p"], float(iota_of(kw["m"])), kw["t"])
    u = np.ones(6)
    for eta in etas:
        a = pars + (-(x + 1j * eta),) + rest

        def fun(v):
            F = system.terms([complex(v[0], v[1]), complex(v[2], v[3]), complex(v[4], v[5])], a, MATH)[:3]
            return np.array([c for f in F for c in (f.real, f.imag)])

        u = optimize.root(fun, u, method="lm").x
    uc = [complex(u[0], u[1]), complex(u[2], u[3]), complex(u[4], u[5])]
    return complex(system.stieltjes(uc, pars + (-(x + 1j * etas[-1]),) + rest, MATH))


def edges(kw):
    x = np.linspace(1e-3, 8, 4000)
    pos = feature_spectrum(x, **kw).density > 1e-6
    return x[np.flatnonzero(np.diff(pos.astype(int)))]


def main():
    out = {"machine": machine()}
    kw = dict(psi_n=1.0, psi_p=2.0, m=4, t=0.5, lam=1e-3, activation="relu")
    rf_dsm(**kw, spectrum=TWO)
    rf_dsm(**kw, spectrum="powerlaw:0.5")
    out["two_atom_one_point_s"] = best(lambda: rf_dsm(**kw, spectrum=TWO), 50)
    out["two_atom_one_point_m_inf_s"] = best(lambda: rf_dsm(**(kw | {"m": math.inf}), spectrum=TWO), 50)
    out["subspace_one_point_s"] = best(lambda: rf_dsm(**kw, spectrum=[0, 4 / 3, 4 / 3, 4 / 3]), 50)
    out["powerlaw_0.5_one_point_s"] = best(lambda: rf_dsm(**kw, spectrum="powerlaw:0.5"), 20)
    out["powerlaw_0.8_one_point_s"] = best(lambda: rf_dsm(**kw, spectrum="powerlaw:0.8"), 20)
    PN, PP = np.meshgrid(np.geomspace(0.1, 10, 100), np.geomspace(0.1, 10, 100))
    out["two_atom_grid_100x100_s"] = best(lambda: rf_dsm(psi_n=PN, psi_p=PP, m=4, t=0.5, lam=1e-3, spectrum=TWO), 3)
    out["two_atom_grid_100x100_m1_s"] = best(lambda: rf_dsm(psi_n=PN, psi_p=PP, m=1, t=0.5, lam=1e-3,
                                                            spectrum=TWO), 1)
    out["two_atom_one_point_tau_s"] = best(lambda: rf_dsm(**kw, spectrum=TWO, tau=5.0), 3)
    out["powerlaw_0.5_one_point_tau_s"] = best(lambda: rf_dsm(**kw, spectrum="powerlaw:0.5", tau=5.0), 1)
    out["two_atom_one_point_dps30_s"] = best(lambda: rf_dsm(**kw, spectrum=TWO, dps=30), 3)
    out["powerlaw_0.5_one_point_dps30_s"] = best(lambda: rf_dsm(**kw, spectrum="powerlaw:0.5", dps=30), 1)

    # Spectral law of U, point by point, against the baseline.
    e = edges(SPEC_KW)
    xs = sorted({*np.round(np.linspace(0.05, 3.5, 12), 6), *(e - 1e-3), *(e + 1e-3), *(e - 1e-2)})
    rows = []
    for x in xs:
        x = float(x)
        ours, t_ours = None, []
        for _ in range(5):
            t0 = time.perf_counter()
            ours = complex(feature_spectrum(np.array([x]), **SPEC_KW).stieltjes[0])
            t_ours.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        base = baseline_point(x, SPEC_KW)
        t_base = time.perf_counter() - t0
        rows.append(dict(x=x, near_edge=bool(np.min(np.abs(e - x)) <= 1.01e-3), ours_s=min(t_ours),
                         baseline_s=t_base, speedup=t_base / min(t_ours),
                         rel_diff=abs(ours - base) / abs(ours), ours=[ours.real, ours.imag]))
        print(rows[-1], flush=True)
    out["spectrum_edges"] = e.tolist()
    out["spectrum_points"] = rows
    out["spectrum_worst_point_s"] = max(r["ours_s"] for r in rows)
    out["spectrum_min_speedup"] = min(r["speedup"] for r in rows)
    out["spectrum_max_rel_diff_vs_baseline"] = max(r["rel_diff"] for r in rows)
    out["spectrum_density_1000_points_s"] = best(lambda: feature_spectrum(np.linspace(1e-3, 4, 1000), **SPEC_KW), 3)
    (ROOT / "results").mkdir(exist_ok=True)
    (ROOT / "results" / "bench_rf_dsm_aniso.json").write_text(json.dumps(out, indent=1))
    print(json.dumps({k: v for k, v in out.items() if k != "spectrum_points"}, indent=1))


if __name__ == "__main__":
    cli(__doc__)
    main()
