"""Scale-out of the simulators (conventions section 1.6): jobs, scheduler and backend give the serial numbers."""
import json
import subprocess
import sys

import numpy as np
import pytest

import rmtsolve
from rmtsolve import cli
from rmtsolve.errors import ParameterError

# large enough that BLAS would run threaded (from d = 60 here) and round by its thread count,
# were each seed not run with BLAS on one thread everywhere
RF = dict(psi_n=1, psi_p=2, m=2, t=0.5, lam=1e-3, d=80, seeds=4, seed=3)
LDM = dict(n_over_d=2, d=100, seeds=4, seed=3, T=200, lam=1e-2)


@pytest.fixture(scope="module")
def serial():
    return rmtsolve.simulate_rf_dsm(**RF), rmtsolve.simulate_ldm(**LDM)


def _same_ldm(a, b):
    assert a.samples.keys() == b.samples.keys()
    for k in a.samples:
        np.testing.assert_array_equal(a.samples[k], b.samples[k])
    np.testing.assert_array_equal(a.test_error_t, b.test_error_t)


def test_jobs_equal_serial_bit_for_bit(serial):
    pytest.importorskip("distributed")
    rf, ldm = serial
    assert rmtsolve.simulate_rf_dsm(**RF, jobs=2).per_seed == rf.per_seed
    _same_ldm(rmtsolve.simulate_ldm(**LDM, jobs=2), ldm)


def test_existing_cluster_equals_serial(serial):
    distributed = pytest.importorskip("distributed")
    import dask

    rf, ldm = serial
    # workers whose BLAS has this process's threads (dask would pin them to one): every seed
    # still runs on one BLAS thread, so the numbers are the serial ones
    unpinned = {f"distributed.nanny.pre-spawn-environ.{v}": None
                for v in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")}
    with dask.config.set(unpinned), distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                                             dashboard_address=None) as cluster:
        address = cluster.scheduler_address
        assert rmtsolve.simulate_rf_dsm(**RF, scheduler=address).per_seed == rf.per_seed
        _same_ldm(rmtsolve.simulate_ldm(**LDM, scheduler=address), ldm)


def test_cli_jobs_equals_serial(capsys):
    pytest.importorskip("distributed")
    args = ["simulate", "rf-dsm", "--d", "80", "--seeds", "4", "--psi-p", "2", "--json"]
    assert cli.main(args) == 0
    plain = json.loads(capsys.readouterr().out)
    assert cli.main(args + ["--jobs", "2"]) == 0
    assert json.loads(capsys.readouterr().out) == plain


@pytest.mark.parametrize("extra", [{}, {"tau": 3.0}, {"lam": 0.0}, {"spectrum": [0.5, 1.5]}])
def test_array_api_backend_equals_numpy(extra):
    pytest.importorskip("array_api_strict")
    pytest.importorskip("array_api_compat")
    kw = RF | {"d": 40, "seeds": 2} | extra
    a = rmtsolve.simulate_rf_dsm(**kw)
    b = rmtsolve.simulate_rf_dsm(**kw, backend="array_api_strict")
    for k in a.per_seed:
        np.testing.assert_allclose(b.per_seed[k], a.per_seed[k], rtol=0, atol=1e-10)
    if a.test_error_by_eigenvalue is not None:
        np.testing.assert_allclose(b.test_error_by_eigenvalue, a.test_error_by_eigenvalue, rtol=0, atol=1e-10)


@pytest.mark.parametrize("kw, name", [
    (dict(jobs=0), "jobs"), (dict(jobs="2"), "jobs"), (dict(jobs=1.5), "jobs"), (dict(jobs=True), "jobs"),
    (dict(jobs=2, scheduler="tcp://127.0.0.1:8786"), "jobs"), (dict(scheduler=8786), "scheduler"),
    (dict(backend="tensorflow"), "backend"), (dict(backend=3), "backend"), (dict(backend=json), "backend"),
])
def test_bad_scaleout_arguments(kw, name):
    with pytest.raises(ParameterError) as e:
        rmtsolve.simulate_rf_dsm(**RF, **kw)
    assert e.value.name == name
    if name != "backend":
        with pytest.raises(ParameterError, match=name):
            rmtsolve.simulate_ldm(**LDM, **kw)


def test_ldm_runs_on_numpy_only():
    assert rmtsolve.simulate_ldm(**LDM, backend="numpy").samples.keys()
    with pytest.raises(ParameterError, match="numpy only"):
        rmtsolve.simulate_ldm(**LDM, backend="array_api_strict")


def test_without_dask_parallel_runs_say_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "dask.distributed", None)  # import fails as if not installed
    with pytest.raises(ParameterError, match=r"rmtsolve\[distributed\]") as e:
        rmtsolve.simulate_rf_dsm(**RF, jobs=2)
    assert e.value.name == "jobs"
    with pytest.raises(ParameterError, match="scheduler"):
        rmtsolve.simulate_ldm(**LDM, scheduler="tcp://127.0.0.1:8786")
    assert rmtsolve.simulate_rf_dsm(**RF, jobs=1).per_seed  # serial needs no dask


def test_serial_run_does_not_import_dask():
    code = ("import sys, rmtsolve; rmtsolve.simulate_rf_dsm(psi_n=1, psi_p=1, m=1, t=0.5, lam=1e-3, d=10, seeds=2);"
            "rmtsolve.simulate_ldm(n_over_d=2, d=10, seeds=2, T=50); print('dask' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_cli_flags_exit_2():
    cmd = [sys.executable, "-m", "rmtsolve.cli", "simulate", "rf-dsm", "--psi-p", "2", "--d", "10"]
    for extra, word in ((["--jobs", "0"], "--jobs"), (["--jobs", "2", "--scheduler", "tcp://x:1"], "jobs"),
                        (["--backend", "nope"], "backend"), (["--generate", "5", "--jobs", "2"], "jobs")):
        p = subprocess.run(cmd + extra, capture_output=True, text=True)
        assert p.returncode == 2 and word in p.stderr and len(p.stderr.strip().splitlines()) == 1, p.stderr


def test_hand_started_scheduler_and_two_workers_equal_serial(serial, tmp_path):
    pytest.importorskip("distributed")
    import shutil
    import socket
    import time

    dask_cli = shutil.which("dask")
    if dask_cli is None:
        pytest.skip("the dask command is not installed")
    with socket.socket() as sock:  # a free port
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    address = f"tcp://127.0.0.1:{port}"
    logs = [open(tmp_path / f"{name}.log", "w") for name in ("scheduler", "w1", "w2")]
    # scheduler and workers unpickle the tasks: they import this rmtsolve (installed, or this checkout)
    import os
    import pathlib

    here = str(pathlib.Path(rmtsolve.__file__).resolve().parent.parent)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [here, os.environ.get("PYTHONPATH")])))
    procs = [subprocess.Popen([dask_cli, "scheduler", "--host", "127.0.0.1", "--port", str(port),
                               "--dashboard-address", ":0"], stdout=logs[0], stderr=logs[0], env=env)]
    try:
        time.sleep(2)
        for log in logs[1:]:
            procs.append(subprocess.Popen([dask_cli, "worker", address, "--nworkers", "1", "--nthreads", "1",
                                           "--no-dashboard"], stdout=log, stderr=log, env=env))
        from distributed import Client

        with Client(address, timeout=30) as client:
            client.wait_for_workers(2, timeout=60)
        rf, ldm = serial
        assert rmtsolve.simulate_rf_dsm(**RF, scheduler=address).per_seed == rf.per_seed
        _same_ldm(rmtsolve.simulate_ldm(**LDM, scheduler=address), ldm)
    finally:
        for proc in procs[::-1]:
            proc.terminate()
        for proc in procs:
            proc.wait(timeout=30)
        for log in logs:
            log.close()
