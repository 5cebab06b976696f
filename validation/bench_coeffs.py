"""Timing of rmtsolve.coeffs.coefficients.

Writes validation/results/bench_coeffs.json:

- ``activations``: per named activation, the double-precision time of the first call
  (includes the t-independent Gaussian moments) and of a call at a new t (moments cached)
  in the double-integral regime (t < ln(2)/2) and in the Hermite-series regime; and the
  mpmath times at dps = 30, 50, 100 for t = 2.0 (Hermite series), 0.5 (series), 0.05
  (lattice double integral) and 1e-4 (small t), each from empty caches (moments included);
- ``expressions``: the same mpmath times for user expressions (smooth, and one with kinks,
  which keeps the split Gauss-Legendre rules: dps = 30 only);
- ``fresh_process``: wall-clock seconds of a new Python process running
  ``rmtsolve.rf_dsm(psi_n=1, psi_p=2, m=3, t=0.5, lam=1e-3, activation='tanh', dps=D)``
  (import, coefficients and solve; best of 3) for D = 30, 50, 100, at D = 50 also for
  t = 0.05 and 2.0 and for the expression x**3/3 + tanh(x) (sympy parsing included), next
  to a process that only imports rmtsolve;
- ``before``: the same fresh-process timings and dps = 30 times of the implementation this
  one replaced (measured once on the same machine; not re-run).

Run: python validation/bench_coeffs.py [--no-mp] [--no-fresh]
"""
from __future__ import annotations

import json
import os
import pathlib
import platform
import subprocess
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rmtsolve import coeffs  # noqa: E402
from rmtsolve.activations import ACTIVATIONS, resolve_activation  # noqa: E402

MP_TIMES = ("2.0", "0.5", "0.05", "1e-4")
MP_DPS = (30, 50, 100)
EXPRESSIONS = ("x**3/3 + tanh(x)",)
KINKED = ("Max(x, 0) - Max(x - 1, 0)",)
FRESH = "import rmtsolve; rmtsolve.rf_dsm(psi_n=1, psi_p=2, m=3, t={t}, lam=1e-3, " \
        "activation={act!r}, dps={dps})"
FRESH_CASES = {          # key: (activation, t, dps)
    "tanh_rf_dsm_dps30": ("tanh", 0.5, 30),
    "tanh_rf_dsm_dps50": ("tanh", 0.5, 50),
    "tanh_rf_dsm_dps100": ("tanh", 0.5, 100),
    "tanh_rf_dsm_dps50_t0.05": ("tanh", 0.05, 50),
    "tanh_rf_dsm_dps50_t2.0": ("tanh", 2.0, 50),
    "expression_rf_dsm_dps50": ("x**3/3 + tanh(x)", 0.5, 50),
}

# Measured with the previous implementation (composite Gauss-Legendre moments, tensor
# trapezoid rule in (u, w) in mpf arithmetic) on the machine of the results below.
BEFORE = {
    "fresh_process": {"tanh_rf_dsm_dps30": 4.59, "tanh_rf_dsm_dps50": 6.75,
                      "tanh_rf_dsm_dps100": 57.0},
    "dps30_t0.05": {"tanh": 2.67, "sigmoid": 1.02, "softplus": 1.82, "gelu": 3.10,
                    "x**3/3 + tanh(x)": 3.81},
    "dps50_t0.05": {"tanh": 5.97, "sigmoid": 1.63, "softplus": 2.45, "gelu": 6.36,
                    "x**3/3 + tanh(x)": 7.97},
    "note": "Max(x, 0) at dps=30, t=0.05 and abs(x - 1/3) + tanh(x) at dps=30, t=0.3 "
            "raised ConvergenceError",
}


def _clear():
    for f in (coeffs._squares_np, coeffs._moments_np):
        f.cache_clear()
    coeffs._clear_mp_caches()


def _time(fn, repeat=1):
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def _mp_row(spec, dps_list=MP_DPS, times=MP_TIMES) -> dict:
    spec = resolve_activation(spec)     # parsing an expression is not part of the timing
    row = {}
    for dps in dps_list:
        for t in times:
            _clear()
            row[f"dps{dps}_t{t}"] = _time(lambda: coeffs.coefficients(spec, t, dps=dps))
    return row


def _fresh(code: str, repeat: int = 3) -> float:
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], check=True, env=env, cwd=ROOT)
        best = min(best, time.perf_counter() - t0)
    return best


def main(with_mp: bool = True, with_fresh: bool = True) -> dict:
    out = {"python": platform.python_version(), "machine": platform.machine(),
           "cpus": os.cpu_count(), "load_average": list(os.getloadavg()),
           "unit": "seconds", "activations": {}, "expressions": {}}
    for name in ACTIVATIONS:
        _clear()
        row = {"double_first_call_t0.05": _time(lambda: coeffs.coefficients(name, 0.05))}
        for t in (0.01, 0.2, 1.0):
            def run(t=t):
                coeffs._squares_np.cache_clear()
                coeffs.coefficients(name, t)
            row[f"double_t{t}"] = _time(run, repeat=5)
        if with_mp:
            row.update(_mp_row(name))
        out["activations"][name] = row
        print(name, {k: round(v, 4) for k, v in row.items()}, flush=True)
    if with_mp:
        for expr in EXPRESSIONS:
            out["expressions"][expr] = _mp_row(expr)
            print(expr, {k: round(v, 4) for k, v in out["expressions"][expr].items()},
                  flush=True)
        for expr in KINKED:
            out["expressions"][expr] = _mp_row(expr, (30,), ("2.0", "0.5", "0.05"))
            print(expr, {k: round(v, 4) for k, v in out["expressions"][expr].items()},
                  flush=True)
    if with_fresh:
        fresh = {"import_only": _fresh("import rmtsolve")}
        for key, (act, t, dps) in FRESH_CASES.items():
            fresh[key] = _fresh(FRESH.format(act=act, t=t, dps=dps))
        out["fresh_process"] = fresh
        print("fresh process", {k: round(v, 3) for k, v in fresh.items()}, flush=True)
    out["before"] = BEFORE
    return out


if __name__ == "__main__":
    result = main(with_mp="--no-mp" not in sys.argv, with_fresh="--no-fresh" not in sys.argv)
    path = ROOT / "validation" / "results" / "bench_coeffs.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")
    print("wrote", path)
