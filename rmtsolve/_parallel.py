"""Scale-out of the simulators: seeds over processes or a cluster, linear algebra on a GPU.

Seeds are the unit of work (conventions section 1.6): each is one call of a module-level
(picklable) task function with its own seed stream, run with BLAS on one thread wherever it
runs, so serial, local-parallel and distributed runs give the same numbers bit for bit (BLAS
splits its work, and so its rounding, by its thread count) and N workers on N cores do not
compete for them.  Dask is imported only when a run is parallel (the
``distributed`` extra).  :func:`array_backend` names the array namespace the heavy linear
algebra of a seed runs in (numpy, or through ``array_api_compat``: cupy, torch, ...).
"""
from __future__ import annotations

import dataclasses
import importlib
import math
from typing import Callable, Sequence

import numpy as np

from .errors import ConvergenceError, ParameterError, check_integer

_INSTALL = "without the extra rmtsolve[distributed] (pip install 'rmtsolve[distributed]')"


def check_scaleout(jobs, scheduler) -> int:
    """Validate ``jobs`` and ``scheduler`` before any computing; returns jobs as an int.

    Parameters
    ----------
    jobs : int or None
        Local worker processes (None or 1: serial, in this process).
    scheduler : str or None
        Address of an existing Dask scheduler, such as ``"tcp://127.0.0.1:8786"``.

    Raises
    ------
    ParameterError
        jobs not an integer >= 1, jobs and scheduler together, a scheduler that is not a
        string, or a parallel run without dask installed.
    """
    jobs = 1 if jobs is None else check_integer("jobs", jobs, low=1)
    if scheduler is not None:
        if jobs != 1:
            raise ParameterError("jobs", "omitted when scheduler is given (the cluster sets the workers)", jobs)
        if not isinstance(scheduler, str) or not scheduler.strip():
            raise ParameterError("scheduler", "a Dask scheduler address such as tcp://127.0.0.1:8786", scheduler)
    if jobs > 1 or scheduler is not None:
        _distributed("jobs" if scheduler is None else "scheduler", jobs if scheduler is None else scheduler)
    return jobs


def map_seeds(fn: Callable, args_list: Sequence[tuple], jobs: int | None = None,
              scheduler: str | None = None) -> list:
    """``[fn(*args) for args in args_list]``, serially or on Dask workers, in the given order.

    Parameters
    ----------
    fn : callable
        A module-level function (workers unpickle it by name).
    args_list : sequence of tuple
        The arguments of each task (one per seed).
    jobs, scheduler
        As in :func:`check_scaleout`: serial in-process by default; ``jobs = N > 1`` starts a
        local cluster of N worker processes (one task at a time each) for this call and closes
        it afterwards.  ``scheduler`` connects to an existing cluster and leaves it running.
        Every task runs with BLAS on one thread (:func:`run_seed`), so all three give the same
        numbers bit for bit.

    Returns
    -------
    list
        The results, in the order of ``args_list``.

    Raises
    ------
    ParameterError
        Naming ``scheduler`` (or ``jobs``) when the cluster cannot be reached or cannot run the
        tasks (e.g. workers in another environment, without rmtsolve), with dask's reason.
    """
    jobs = check_scaleout(jobs, scheduler)
    if jobs == 1 and scheduler is None:
        return [run_seed(fn, *args) for args in args_list]
    Client, LocalCluster = _distributed("scheduler", scheduler)
    try:
        if scheduler is not None:
            with Client(scheduler, timeout=30) as client:
                return _gather(client, fn, args_list)
        # no dashboard: it needs bokeh and a free port, and nobody watches a run this short
        with LocalCluster(n_workers=jobs, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
                Client(cluster) as client:
            return _gather(client, fn, args_list)
    except (ParameterError, ConvergenceError, MemoryError):
        raise  # a task's own verdict, passed on by dask as raised
    except Exception as exc:  # the cluster's failure, not the model's: say which and why
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        name, value = ("scheduler", scheduler) if scheduler is not None else ("jobs", jobs)
        raise ParameterError(name, "a Dask cluster that can run rmtsolve's tasks (its workers in this "
                             f"environment); it failed: {type(exc).__name__}: {reason}", value) from None


def run_seed(fn: Callable, *args):
    """``fn(*args)`` with the BLAS libraries of this process on one thread (restored after)."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"):
        return fn(*args)


def seed_stderr(values) -> np.ndarray:
    """Standard error of the mean over seeds (axis 0 of ``values``); NaN for one seed.

    Computed after scaling by the largest finite magnitude per entry, so that values near the
    top of double precision (KLs near 1e200, say) do not overflow in the squares.
    """
    v = np.asarray(values, dtype=float)
    if len(v) < 2:
        return np.full(v.shape[1:], np.nan)
    scale = np.max(np.abs(np.where(np.isfinite(v), v, 0.0)), axis=0)
    scale = np.where(scale > 0, scale, 1.0)
    with np.errstate(invalid="ignore"):
        return (v / scale).std(axis=0, ddof=1) * scale / math.sqrt(len(v))


def _gather(client, fn, args_list) -> list:
    # pure=False: every seed is a task of its own even where two argument lists hash alike
    futures = [client.submit(run_seed, fn, *args, pure=False) for args in args_list]
    return client.gather(futures)


def _distributed(name, value):
    """(Client, LocalCluster) from dask.distributed, or the ParameterError saying how to install it."""
    try:
        from dask.distributed import Client, LocalCluster
    except ImportError:
        raise ParameterError(name, ("1 " if name == "jobs" else "omitted ") + _INSTALL, value) from None
    return Client, LocalCluster


BACKENDS = ("numpy", "cupy", "torch", "array_api_strict")
_BACKEND_ALLOWED = "numpy, cupy, torch, array_api_strict or an array-API namespace module"


@dataclasses.dataclass(frozen=True)
class ArrayBackend:
    """An array namespace ``xp`` and the device arrays are placed on (None: its default)."""

    name: str
    xp: object
    device: object = None

    def asarray(self, a):
        """A host (numpy) array on this backend; numpy's own arrays pass through unchanged."""
        return a if self.xp is np else self.xp.asarray(a, device=self.device)

    def zeros(self, shape):
        return self.xp.zeros(shape, dtype=self.xp.float64, device=self.device) if self.xp is not np \
            else np.zeros(shape)

    def to_numpy(self, x) -> np.ndarray:
        """A host copy of ``x`` (the arrays of a GPU library need its own transfer call)."""
        if self.xp is np:
            return np.asarray(x)
        if self.name == "cupy":
            return x.get()
        if self.name == "torch":
            return x.detach().cpu().numpy()
        return np.from_dlpack(x)


def array_backend(backend) -> ArrayBackend:
    """Resolve ``backend``: "numpy", "cupy", "torch", "array_api_strict" or a namespace module.

    Parameters
    ----------
    backend : str or module
        numpy (the default of the simulators: plain numpy, no wrapper, so its numbers are
        unchanged), or a library whose arrays ``array_api_compat`` wraps (the ``gpu`` extra).
        torch runs on CUDA when it is available, cupy on its current device.

    Raises
    ------
    ParameterError
        An unknown name, or a library (or array_api_compat) that is not installed.
    """
    name = backend if isinstance(backend, str) else getattr(backend, "__name__", None)
    if not isinstance(name, str):
        raise ParameterError("backend", _BACKEND_ALLOWED, backend)
    name = name.strip().lower().removeprefix("array_api_compat.")
    if name == "numpy":
        return ArrayBackend("numpy", np)
    if isinstance(backend, str) and name not in BACKENDS:
        raise ParameterError("backend", _BACKEND_ALLOWED, backend)
    try:
        compat = importlib.import_module("array_api_compat")
        module = importlib.import_module(name)
    except ImportError as exc:
        raise ParameterError("backend", f"an installed library ({exc.name} is missing: "
                             "pip install 'rmtsolve[gpu]' and the array library)", backend) from None
    try:
        xp = compat.array_namespace(module.asarray([0.0]))
    except (AttributeError, TypeError):  # not an array library
        raise ParameterError("backend", _BACKEND_ALLOWED, backend) from None
    device = None
    if name == "torch" and module.cuda.is_available():
        device = "cuda"
    return ArrayBackend(name, xp, device)
