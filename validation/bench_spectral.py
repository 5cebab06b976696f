"""Timings of the spectral core (not run by CI).

    python validation/bench_spectral.py

writes ``validation/results/bench_spectral.json``: best-of-``repeat`` wall times for the
Marchenko-Pastur closed form, the generalised law (Silverstein's equation), the mpmath back
ends, and a baseline in the style of public theory scripts (``scipy.optimize.root`` on the
real and imaginary parts with a fixed continuation from Im z = 100 down to 1e-9 at every
point), with the machine description.
"""
from __future__ import annotations

import json
import os
import pathlib
import platform
import sys
import time

import numpy as np
import scipy
import scipy.optimize as so

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))
from rmtsolve.spectral import GeneralizedMarchenkoPastur, MarchenkoPastur  # noqa: E402

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from _bench import cli  # noqa: E402

OUT = pathlib.Path(__file__).resolve().parent / "results" / "bench_spectral.json"


def best_time(fn, repeat=5):
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def machine() -> dict:
    cpu = "unknown"
    try:
        for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"nproc": os.cpu_count(), "cpu_model": cpu, "python": platform.python_version(),
            "numpy": np.__version__, "scipy": scipy.__version__, "platform": platform.platform(),
            "load_average_1min_at_start": os.getloadavg()[0]}


def power_law_atoms(n=1000, k=1.5):
    t = np.arange(1, n + 1, dtype=float) ** -k
    return t / t.mean()


def baseline_root(atoms, c, x, eta_grid):
    """scipy.optimize.root on (Re, Im) of Silverstein's equation in sb, continued in Im z."""
    w = np.full(atoms.size, 1 / atoms.size)

    def F(p, z):
        sb = p[0] + 1j * p[1]
        f = z + 1 / sb - c * np.sum(w * atoms / (1 + atoms * sb))
        return [f.real, f.imag]

    sb = -1 / (x + 1j * eta_grid[0])
    for eta in eta_grid:
        sol = so.root(F, [sb.real, sb.imag], args=(x + 1j * eta,))
        sb = sol.x[0] + 1j * sol.x[1]
    return sb


def main() -> dict:
    res = {"machine": machine(), "timings": {}, "notes": {}}
    T = res["timings"]
    rng = np.random.default_rng(0)

    law = MarchenkoPastur(0.5)
    zc = rng.uniform(-1, 4, 100_000) + 1j * rng.uniform(1e-6, 1, 100_000)
    zr = rng.uniform(-1, 4, 100_000)
    T["mp_double_1e5_complex_s"] = best_time(lambda: law.stieltjes(zc))
    T["mp_double_1e5_real_s"] = best_time(lambda: law.stieltjes(zr))
    T["mp_density_1e5_s"] = best_time(lambda: law.density(zr))

    for name, atoms in (("uniform", np.sort(rng.uniform(0.5, 3, 1000))), ("powerlaw1.5", power_law_atoms())):
        for c in (0.5, 2.0):
            g = GeneralizedMarchenkoPastur(atoms, c)
            xr = np.linspace(-0.1 * g.scale, 1.1 * g.scale, 1000)
            key = f"gmp_double_1000atoms_1e3z_{name}_c{c}"
            T[key + "_real_s"] = best_time(lambda: g.stieltjes(xr), repeat=3)
            T[key + "_complex_s"] = best_time(lambda: g.stieltjes(xr + 0.01j * g.scale), repeat=3)
            res["notes"][key + "_iterations_real"] = g.stieltjes(xr).iterations

    zs = list(rng.uniform(-1, 4, 20) + 1j * rng.uniform(1e-3, 1, 20))
    xs = list(rng.uniform(0.1, 2.9, 20))
    for dps in (30, 50):
        T[f"mp_mpmath_dps{dps}_per_point_s"] = best_time(lambda: law.stieltjes(zs, dps=dps), 3) / len(zs)
        g = GeneralizedMarchenkoPastur(power_law_atoms(100), 0.5)
        T[f"gmp_mpmath_dps{dps}_100atoms_per_complex_point_s"] = best_time(
            lambda: g.stieltjes(zs[:5], dps=dps), 2) / 5
        T[f"gmp_mpmath_dps{dps}_100atoms_per_real_point_s"] = best_time(
            lambda: g.stieltjes(xs[:5], dps=dps), 2) / 5

    # baseline: 20 real points, 1000 atoms, 60 geometric continuation steps 100 -> 1e-9
    atoms = power_law_atoms()
    g = GeneralizedMarchenkoPastur(atoms, 0.5)
    xb = np.linspace(0.05, 0.9 * g.scale, 20)
    eta_grid = np.geomspace(100, 1e-9, 60)
    t0 = time.perf_counter()
    sb_base = np.array([baseline_root(atoms, 0.5, x, eta_grid) for x in xb])
    t_base = (time.perf_counter() - t0) / xb.size
    t_ours = best_time(lambda: g.companion(xb), 3) / xb.size
    ours = g.companion(xb).value
    T["baseline_scipy_root_per_point_s"] = t_base
    T["gmp_double_per_point_same_points_s"] = t_ours
    res["notes"]["baseline_speedup"] = t_base / t_ours
    res["notes"]["baseline_max_rel_diff_from_rmtsolve"] = float(np.max(np.abs(sb_base - ours) / np.abs(ours)))
    res["notes"]["baseline_description"] = ("scipy.optimize.root (hybr) on Re/Im of Silverstein's "
                                            "equation, 60 steps Im z = 100 -> 1e-9 per point, 1000 atoms")
    res["targets"] = {"mp_double_1e5_lt_s": 0.1, "gmp_1000atoms_1e3z_lt_s": 1.0}
    res["machine"]["load_average_1min_at_end"] = os.getloadavg()[0]
    return res


if __name__ == "__main__":
    cli(__doc__)
    out = main()
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out, indent=2))
