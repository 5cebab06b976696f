"""Serial vs --jobs 2 vs --scheduler (a hand-started dask scheduler with two workers).

    python validation/bench_scaleout.py               # d = 800, 8 seeds (about 1 min on 2 cores)
    python validation/bench_scaleout.py --d 400 --seeds 4

Times the whole command `rmtsolve simulate rf-dsm ... --json` serially, with `--jobs 2` and with
`--scheduler` pointing at `dask scheduler` + two `dask worker --nthreads 1` processes on
127.0.0.1 (started by this script, timed without their start-up), checks that the three outputs
are identical, and writes validation/results/bench_scaleout.json.
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import shutil
import socket
import subprocess
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parent


def timed(cmd):
    start = time.perf_counter()
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT.parent), os.environ.get("PYTHONPATH")])))
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, env=env).stdout
    return time.perf_counter() - start, json.loads(out)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--d", type=int, default=800)
    ap.add_argument("--seeds", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=2)
    a = ap.parse_args(argv)
    base = [sys.executable, "-m", "rmtsolve", "simulate", "rf-dsm", "--psi-n", "1", "--psi-p", "2", "--m", "2",
            "--d", str(a.d), "--seeds", str(a.seeds), "--json"]
    serial = [timed(base) for _ in range(a.repeats)]
    jobs = [timed(base + ["--jobs", "2"]) for _ in range(a.repeats)]
    rec = dict(machine=f"{platform.node()}, {os.cpu_count()} cores", command=" ".join(base[2:]),
               serial_s=[s for s, _ in serial], jobs2_s=[s for s, _ in jobs],
               jobs2_identical=all(out == serial[0][1] for _, out in jobs))
    dask_cli = shutil.which("dask")
    if dask_cli:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        address = f"tcp://127.0.0.1:{port}"
        # scheduler and workers unpickle rmtsolve's tasks: this checkout's rmtsolve (or the installed one)
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT.parent), os.environ.get("PYTHONPATH")])))
        procs = [subprocess.Popen([dask_cli, "scheduler", "--host", "127.0.0.1", "--port", str(port),
                                   "--dashboard-address", ":0"], stderr=subprocess.DEVNULL, env=env)]
        try:
            time.sleep(2)
            procs += [subprocess.Popen([dask_cli, "worker", address, "--nworkers", "1", "--nthreads", "1",
                                        "--no-dashboard"], stderr=subprocess.DEVNULL, env=env) for _ in range(2)]
            from distributed import Client

            with Client(address, timeout=30) as client:
                client.wait_for_workers(2, timeout=60)
            sched = [timed(base + ["--scheduler", address]) for _ in range(a.repeats)]
            rec.update(scheduler_s=[s for s, _ in sched],
                       scheduler_identical=all(out == serial[0][1] for _, out in sched))
        finally:
            for p in procs[::-1]:
                p.terminate()
            for p in procs:
                p.wait(timeout=30)
    rec["speedup_jobs2"] = min(rec["serial_s"]) / min(rec["jobs2_s"])
    if "scheduler_s" in rec:
        rec["speedup_scheduler"] = min(rec["serial_s"]) / min(rec["scheduler_s"])
    print(json.dumps(rec, indent=1))
    (ROOT / "results").mkdir(exist_ok=True)
    (ROOT / "results" / "bench_scaleout.json").write_text(json.dumps(rec, indent=1) + "\n")
    ok = rec["jobs2_identical"] and rec.get("scheduler_identical", True)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
