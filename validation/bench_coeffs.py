"""Timing of rmtsolve.coeffs.coefficients for the named activations.

Writes validation/results/bench_coeffs.json: per activation, the double-precision time
of the first call (includes the t-independent Gaussian moments), of a call at a new t
(moments cached) for t in the double-integral regime (t < ln(2)/2) and in the Hermite
series regime, and the dps=30 times. Run: python validation/bench_coeffs.py [--no-mp]
"""
from __future__ import annotations

import json
import pathlib
import platform
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rmtsolve import coeffs  # noqa: E402
from rmtsolve.activations import ACTIVATIONS  # noqa: E402


def _clear():
    for f in (coeffs._squares_np, coeffs._moments_np, coeffs._squares_mp, coeffs._moments_mp):
        f.cache_clear()


def _time(fn, repeat=1):
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def main(with_mp: bool = True) -> dict:
    out = {"python": platform.python_version(), "machine": platform.machine(),
           "unit": "seconds", "activations": {}}
    for name in ACTIVATIONS:
        _clear()
        row = {"double_first_call_t0.05": _time(lambda: coeffs.coefficients(name, 0.05))}
        for t in (0.01, 0.2, 1.0):
            def run(t=t):
                coeffs._squares_np.cache_clear()
                coeffs.coefficients(name, t)
            row[f"double_t{t}"] = _time(run, repeat=5)
        if with_mp:
            for t in ("0.05", "1.5"):
                _clear()
                row[f"dps30_t{t}"] = _time(lambda t=t: coeffs.coefficients(name, t, dps=30))
        out["activations"][name] = row
        print(name, {k: round(v, 5) for k, v in row.items()}, flush=True)
    return out


if __name__ == "__main__":
    result = main(with_mp="--no-mp" not in sys.argv)
    path = ROOT / "validation" / "results" / "bench_coeffs.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")
    print("wrote", path)
