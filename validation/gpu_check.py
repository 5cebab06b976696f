"""GPU check of the array-API simulators: CuPy and/or PyTorch (CUDA) against numpy.

    python validation/gpu_check.py                 # d = 3200 and 6400, every GPU backend found
    python validation/gpu_check.py --d 3200 --seeds 2 --backends torch

For each backend that imports and sees a CUDA device, the same RF-DSM simulation (real relu
features, p = 2 d, m = 4; random numbers drawn on the host, so every backend sees the same
draws) runs on the GPU and with numpy, at the same seeds; the script reports seconds per seed
on each and the largest relative difference of the outputs (rounding only: the draws are
shared).  It writes validation/results/gpu_check.{json,md}.  Without a GPU it says so and exits
with status 0 (nothing to check); CI never runs it.
"""
from __future__ import annotations

import argparse
import json
import pathlib
import platform
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT.parent))

import rmtsolve  # noqa: E402

POINT = dict(psi_n=1.0, psi_p=2.0, m=4, t=0.5, lam=1e-3, activation="relu")
OUTPUTS = ("test_error", "train_error", "empirical_score_error")


def gpu_backends(wanted) -> dict:
    """{name: device description} of the requested backends that have a CUDA device."""
    found = {}
    if "cupy" in wanted:
        try:
            import cupy

            if cupy.cuda.runtime.getDeviceCount() > 0:
                props = cupy.cuda.runtime.getDeviceProperties(0)
                found["cupy"] = props["name"].decode() if isinstance(props["name"], bytes) else str(props["name"])
        except Exception as exc:  # no cupy, no driver, no device: nothing to check there
            print(f"cupy: not available ({type(exc).__name__}: {exc})")
    if "torch" in wanted:
        try:
            import torch

            if torch.cuda.is_available():
                found["torch"] = torch.cuda.get_device_name(0)
            else:
                print("torch: no CUDA device")
        except Exception as exc:
            print(f"torch: not available ({type(exc).__name__}: {exc})")
    return found


def timed(backend, d, seeds, seed):
    start = time.perf_counter()
    r = rmtsolve.simulate_rf_dsm(**POINT, d=d, seeds=seeds, seed=seed, backend=backend)
    return r.as_dict(), (time.perf_counter() - start) / seeds


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--d", type=int, nargs="+", default=[3200, 6400])
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--backends", nargs="+", default=["cupy", "torch"], choices=["cupy", "torch"])
    ap.add_argument("--skip-numpy-above", type=int, default=6400,
                    help="compare with numpy only up to this d (numpy at d = 12800 takes minutes per seed)")
    a = ap.parse_args(argv)
    found = gpu_backends(a.backends)
    if not found:
        print("no CUDA device with cupy or torch: nothing to check")
        return 0
    rows = []
    for name, device in found.items():
        timed(name, 200, 1, 0)  # warm-up: kernels compiled, memory pools created
        for d in a.d:
            gpu, gpu_s = timed(name, d, a.seeds, 7)
            row = dict(backend=name, device=device, d=d, seeds=a.seeds, gpu_seconds_per_seed=gpu_s)
            if d <= a.skip_numpy_above:
                ref, cpu_s = timed("numpy", d, a.seeds, 7)
                row["numpy_seconds_per_seed"] = cpu_s
                row["max_rel_diff"] = max(abs(gpu[k] - ref[k]) / abs(ref[k]) for k in OUTPUTS)
            row.update({k: gpu[k] for k in OUTPUTS})
            rows.append(row)
            print(json.dumps(row), flush=True)
    ok = all(r.get("max_rel_diff", 0.0) <= 1e-8 for r in rows)
    out = ROOT / "results"
    out.mkdir(exist_ok=True)
    (out / "gpu_check.json").write_text(json.dumps(dict(host=platform.node(), rows=rows), indent=1))
    lines = ["# GPU check: array-API simulators against numpy at the same seeds", "",
             f"Point {POINT}; {a.seeds} seeds; the draws are shared, so outputs agree to rounding "
             "(pass: max relative difference <= 1e-8).", "",
             "| backend | device | d | GPU s/seed | numpy s/seed | speed-up | max rel. diff |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        cpu, gpu_s = r.get("numpy_seconds_per_seed"), r["gpu_seconds_per_seed"]
        cpu_txt = "-" if cpu is None else f"{cpu:.2f}"
        ratio = "-" if cpu is None else f"{cpu / gpu_s:.1f}x"
        lines.append(f"| {r['backend']} | {r['device']} | {r['d']} | {gpu_s:.2f} | {cpu_txt} | {ratio} | "
                     f"{r.get('max_rel_diff', float('nan')):.1e} |")
    (out / "gpu_check.md").write_text("\n".join(lines) + "\n")
    print("PASS" if ok else "FAIL: a backend disagrees with numpy beyond rounding")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
