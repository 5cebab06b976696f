"""Scale-out of the simulators: seeds over processes or a cluster, linear algebra on a GPU.

Seeds are the unit of work (conventions section 1.6): each is one call of a module-level
(picklable) task function with its own seed stream, so serial, local-parallel and
distributed runs give the same numbers.  Dask is imported only when a run is parallel (the
``distributed`` extra).  :func:`array_backend` names the array namespace the heavy linear
algebra of a seed runs in (numpy, or through ``array_api_compat``: cupy, torch, ...).
"""
from __future__ import annotations

import dataclasses
import importlib
from typing import Callable, Sequence

import numpy as np

from .errors import ParameterError, check_integer

# BLAS splits its work, and so its rounding, by its thread count; dask pins worker processes to
# one thread through these variables, so local workers keep this process's values instead
_BLAS_THREADS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
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
        it afterwards; its workers inherit this process's BLAS threading, so that they round as
        the serial run does.  ``scheduler`` connects to an existing cluster and leaves it
        running (the serial numbers bit for bit where its workers use the serial run's BLAS
        threading: ``dask worker`` pins BLAS to one thread).

    Returns
    -------
    list
        The results, in the order of ``args_list``.
    """
    jobs = check_scaleout(jobs, scheduler)
    if jobs == 1 and scheduler is None:
        return [fn(*args) for args in args_list]
    Client, LocalCluster = _distributed("scheduler", scheduler)
    if scheduler is not None:
        with Client(scheduler) as client:
            return _gather(client, fn, args_list)
    import dask

    unpinned = {f"distributed.nanny.pre-spawn-environ.{name}": None for name in _BLAS_THREADS}
    # no dashboard: it needs bokeh and a free port, and nobody watches a run this short
    with dask.config.set(unpinned), \
            LocalCluster(n_workers=jobs, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        return _gather(client, fn, args_list)


def _gather(client, fn, args_list) -> list:
    # pure=False: every seed is a task of its own even where two argument lists hash alike
    futures = [client.submit(fn, *args, pure=False) for args in args_list]
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
