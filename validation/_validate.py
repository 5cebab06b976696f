"""Shared helpers of the validation scripts: finite-size extrapolation and the optional plotting back end."""
import math

import numpy as np


def extrapolate(ds, ys, ses):
    """Weighted least-squares fit ``y = a + b/d``; returns ``a`` (the d -> inf value) and its standard error.

    Callers with another finite-size scale x pass ``1/x`` as ``ds``.
    """
    X = np.column_stack([np.ones(len(ds)), 1.0 / np.asarray(ds, float)])
    w = 1.0 / np.asarray(ses, float) ** 2
    cov = np.linalg.inv(X.T @ (X * w[:, None]))
    a, _ = cov @ (X.T @ (w * np.asarray(ys)))
    return float(a), float(math.sqrt(cov[0, 0]))


def pyplot():
    """matplotlib.pyplot on the Agg back end, or None (with a note) when the plot extra is missing."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib missing (pip install '.[plot]'): figure skipped")
        return None
    return plt


def add_scaleout_flags(ap):
    """--jobs N (a local Dask cluster of N processes) and --scheduler ADDRESS (an existing one)."""
    ap.add_argument("--jobs", type=int, default=1,
                    help="run the simulations on a local Dask cluster of JOBS worker processes")
    ap.add_argument("--scheduler", default=None,
                    help="run them on an existing Dask cluster (e.g. tcp://127.0.0.1:8786)")


class Tasks:
    """The simulations of a validation run as tasks: serial, on a local Dask cluster (--jobs) or
    on an existing one (--scheduler), with the same numbers either way (each seed runs with
    BLAS on one thread; conventions 1.6).

    Each task's result is stored in ``cache`` (JSON, one file per task, written by this process
    as the task completes), so an interrupted run resumes with the tasks already done; progress
    is printed as tasks complete.  Use as a context manager; :meth:`run` takes a module-level
    function and a list of (key, kwargs).
    """

    def __init__(self, cache, jobs=1, scheduler=None, log=print):
        self.cache, self.jobs, self.scheduler, self.log = cache, jobs, scheduler, log
        self._client = self._cluster = None

    def __enter__(self):
        if self.jobs > 1 or self.scheduler:
            from dask.distributed import Client, LocalCluster

            if self.scheduler:
                self._client = Client(self.scheduler)
            else:
                self._cluster = LocalCluster(n_workers=self.jobs, threads_per_worker=1, processes=True,
                                             dashboard_address=None)
                self._client = Client(self._cluster)
        return self

    def __exit__(self, *exc):
        for obj in (self._client, self._cluster):
            if obj is not None:
                obj.close()

    def path(self, key):
        import hashlib

        return self.cache / (hashlib.sha1(key.encode()).hexdigest()[:16] + ".json")

    def load(self, key):
        import json

        path = self.path(key)
        if path.exists():
            data = json.loads(path.read_text())
            if data.get("key") == key:
                return data
        return None

    def get(self, key, fn, **kwargs):
        """The stored result of ``key``, computed here (and stored) if missing."""
        import json

        data = self.load(key)
        if data is None:
            self.cache.mkdir(exist_ok=True)
            data = dict(fn(**kwargs), key=key)
            self.path(key).write_text(json.dumps(data))
        return data

    def run(self, fn, tasks):
        """Run ``fn(**kwargs)`` (returns a JSON-able dict) for every (key, kwargs) not stored yet."""
        import json
        import time

        self.cache.mkdir(exist_ok=True)
        todo = [(k, kw) for k, kw in tasks if self.load(k) is None]
        self.log(f"{len(tasks) - len(todo)} of {len(tasks)} simulation tasks already stored; running {len(todo)}")
        start = time.perf_counter()

        def store(i, key, data):
            self.path(key).write_text(json.dumps(dict(data, key=key)))
            self.log(f"  task {i}/{len(todo)} done ({time.perf_counter() - start:.0f} s): {key}")

        if self._client is None:
            for i, (k, kw) in enumerate(todo, 1):
                store(i, k, fn(**kw))
            return
        from dask.distributed import as_completed

        futures = {self._client.submit(fn, pure=False, **kw): k for k, kw in todo}
        for i, fut in enumerate(as_completed(futures), 1):
            store(i, futures[fut], fut.result())
