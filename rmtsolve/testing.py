"""Property-based testing with rmtsolve: hypothesis strategies and a check against simulations.

This module needs hypothesis (the ``test`` extra: ``pip install 'rmtsolve[test]'``).
``import rmtsolve`` never imports it.  The user guide is ``docs/testing.md``; the conventions
(parameter names, ranges, outputs) are those of ``docs/conventions.md``.

Strategies
----------
Each strategy draws **keyword dicts** for one function of the API. Every point it draws is
valid, and the default ranges keep every point well-conditioned, so a solve takes
milliseconds (RF-DSM) or a fraction of a second (LDM, T <= 200):

- :func:`rf_dsm_params` for :func:`rmtsolve.rf_dsm`, and :func:`ldm_params` for
  :func:`rmtsolve.ldm`;
- :func:`rf_dsm_simulation_params` for :func:`rmtsolve.simulate_rf_dsm`, and
  :func:`ldm_simulation_params` for :func:`rmtsolve.simulate_ldm` (small sizes, d <= 100).
  :func:`theory_kwargs` turns one of these dicts into the matching theory call;
- building blocks: :func:`log_uniform`, :func:`activations`, :func:`rf_dsm_spectra`,
  :func:`ldm_spectra`.

Each keyword of a ``*_params`` strategy controls one parameter:

- a **range** ``(low, high)``, for a numeric parameter: drawn in that range. Scale
  parameters (psi_n, psi_p, t, lam, tau, n_over_d, beta_min, beta_max) are drawn
  log-uniformly, and integers (m, T, d, seeds, seed) uniformly;
- a hypothesis **strategy**: drawn from it;
- ``True`` or ``False``, for the optional parameters (``activation``, ``spectrum`` and
  ``tau``, and also ``d`` for LDM): draw it from its default strategy, or leave the keyword
  out so that the function's default applies;
- **any other value**: a fixed value. It is passed through unchanged (the same object).

A keyword that is not a parameter of the target function raises ``TypeError``.

Assertion
---------
:func:`assert_matches_simulation` compares a theory result with a finite-size simulation
under the tolerance the project's validation uses (docs/conventions.md, section 4):
``|sim - theory| <= max(rel |theory|, n_se se)``, where se is the simulation's standard
error.

Example (a test module you can copy; also in ``docs/testing.md``)::

    import rmtsolve
    from hypothesis import given, settings
    from rmtsolve.testing import assert_matches_simulation, rf_dsm_params


    @settings(max_examples=30, deadline=None)
    @given(rf_dsm_params(psi_n=(0.5, 4), spectrum=False))
    def test_test_error_above_floor(kw):
        r = rmtsolve.rf_dsm(**kw)
        assert r.test_error >= r.test_error_floor * (1 - 1e-12)
        assert r.train_error >= 0


    def test_theory_matches_simulation():
        kw = dict(psi_n=2, psi_p=1, m=2, t=0.5, lam=0.1, activation="tanh")
        assert_matches_simulation(rmtsolve.rf_dsm(**kw),
                                  rmtsolve.simulate_rf_dsm(**kw, d=100, seeds=6, seed=0))
"""
from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import numpy as np

try:
    from hypothesis import strategies as st
    from hypothesis.strategies import SearchStrategy
except ImportError as exc:  # pragma: no cover - exercised in a subprocess by the tests
    raise ImportError("rmtsolve.testing needs hypothesis: pip install 'rmtsolve[test]'") from exc

from .activations import ACTIVATIONS
from .ldm import ldm as ldm_solver
from .ldm_sim import simulate_ldm
from .population import parse_spectrum
from .rf_dsm.sim import simulate_rf_dsm
from .rf_dsm.solver import rf_dsm as rf_dsm_solver

__all__ = [
    "RF_DSM_RANGES", "LDM_RANGES", "RF_DSM_SIMULATION_RANGES", "LDM_SIMULATION_RANGES",
    "RIDGELESS_MARGIN", "log_uniform", "activations", "rf_dsm_spectra", "ldm_spectra",
    "rf_dsm_params", "ldm_params", "rf_dsm_simulation_params", "ldm_simulation_params",
    "theory_kwargs", "assert_matches_simulation",
]

#: Default ranges of :func:`rf_dsm_params` (m: integers in the range, and also m = inf).
RF_DSM_RANGES: dict[str, tuple[float, float]] = {
    "psi_n": (0.1, 10.0), "psi_p": (0.1, 10.0), "m": (1, 20), "t": (0.01, 5.0),
    "lam": (1e-4, 10.0), "tau": (0.1, 100.0),
}
#: Default ranges of :func:`rf_dsm_simulation_params` (m finite).
RF_DSM_SIMULATION_RANGES: dict[str, tuple[float, float]] = {
    "psi_n": (0.2, 4.0), "psi_p": (0.2, 4.0), "m": (1, 8), "t": (0.05, 3.0),
    "lam": (1e-3, 10.0), "tau": (0.1, 100.0), "d": (20, 100), "seeds": (2, 4),
    "seed": (0, 2**32 - 1),
}
#: Default ranges of :func:`ldm_params` (d, when drawn: integers).
LDM_RANGES: dict[str, tuple[float, float]] = {
    "n_over_d": (0.25, 16.0), "lam": (1e-4, 1.0), "tau": (0.1, 100.0), "T": (10, 200),
    "beta_min": (1e-5, 1e-3), "beta_max": (1e-3, 5e-2), "mean_norm": (0.0, 2.0),
    "d": (10, 100),
}
#: Default ranges of :func:`ldm_simulation_params`.
LDM_SIMULATION_RANGES: dict[str, tuple[float, float]] = {
    **LDM_RANGES, "n_over_d": (0.5, 8.0), "d": (10, 60), "seeds": (2, 4), "seed": (0, 2**32 - 1),
}
#: Ridgeless points (lam = 0) keep this relative distance from their divergence: RF-DSM
#: ``|psi_p - m psi_n| >= margin m psi_n``; LDM N - 1 >= (1 + margin) d (n_over_d >= 1 + margin
#: for d -> inf) unless tau is finite.
RIDGELESS_MARGIN = 0.05

_LOG_KEYS = frozenset({"psi_n", "psi_p", "t", "lam", "tau", "n_over_d", "beta_min", "beta_max"})
_INT_KEYS = frozenset({"m", "T", "d", "seeds", "seed"})
_OMIT = object()  # a part of the dict left out (the function's default applies)


# -- building blocks -------------------------------------------------------------------------
def log_uniform(low: float, high: float) -> SearchStrategy[float]:
    """Floats spread uniformly in log between ``low`` and ``high`` (both included, 0 < low <= high).

    Shrinks towards the value closest to 1 in the range.
    """
    low, high = float(low), float(high)
    if not (0 < low <= high < math.inf):
        raise ValueError(f"log_uniform needs 0 < low <= high < inf (got {low!r}, {high!r})")
    if low == high:
        return st.just(low)
    a, b = math.log(low), math.log(high)
    return st.floats(a, b).map(lambda y: min(max(math.exp(y), low), high))


def activations(names: Iterable[str] = ACTIVATIONS) -> SearchStrategy[str]:
    """Named activations (conventions section 1.3); all seven by default."""
    names = tuple(names)
    unknown = [n for n in names if n.lower() not in ACTIVATIONS]
    if not names or unknown:
        raise ValueError(f"activations: names among {ACTIVATIONS} (got {names!r})")
    return st.sampled_from(names)


_SPECTRUM_KINDS = ("isotropic", "powerlaw", "values")


def _kinds(kinds) -> tuple[str, ...]:
    kinds = (kinds,) if isinstance(kinds, str) else tuple(kinds)
    if not kinds or any(k not in _SPECTRUM_KINDS for k in kinds):
        raise ValueError(f"spectrum kinds: a non-empty selection of {_SPECTRUM_KINDS} (got {kinds!r})")
    return kinds


def _powerlaws(K: tuple[float, float]) -> SearchStrategy[str]:
    lo, hi = map(float, K)
    if not 0 <= lo <= hi < 1:
        raise ValueError(f"K: a range within [0, 1) (got {K!r})")
    # K to 4 decimals: readable labels, and no subnormal exponents
    return st.floats(lo, hi).map(lambda k: f"powerlaw:{min(max(round(k, 4), lo), hi)!r}")


def rf_dsm_spectra(kinds: str | Iterable[str] = _SPECTRUM_KINDS, *, K: tuple[float, float] = (0.0, 0.9),
                   values: tuple[float, float] = (0.01, 10.0), max_values: int = 5, mean_one: bool = False
                   ) -> SearchStrategy[str | list[float]]:
    """RF-DSM spectra of the data covariance (conventions section 1.5).

    Parameters
    ----------
    kinds : str or iterable of str
        Among ``"isotropic"``, ``"powerlaw"`` (``"powerlaw:K"`` with K in ``K``) and
        ``"values"`` (a list of 1 to ``max_values`` positive eigenvalues drawn log-uniformly
        in ``values``, plus up to two zeros: data on a subspace; never all zero).
    K : (float, float)
        Range of the power-law exponent, within [0, 1).
    values : (float, float)
        Range of the positive listed eigenvalues (before the rescaling of ``mean_one``).
    max_values : int
        Most positive listed eigenvalues.
    mean_one : bool
        Rescale listed eigenvalues to mean 1 (tr Sigma = d, as for ``isotropic`` and every
        power law; to rounding). False (default) keeps them as drawn, so that s2 = tr Sigma/d
        ranges over about [0.01, 10] and the Gaussian-equivalence coefficients are taken at a
        preactivation variance v_t != 1.
    """
    positive = st.lists(log_uniform(*values), min_size=1, max_size=max_values)
    listed = st.tuples(st.integers(0, 2), positive).map(lambda zp: [0.0] * zp[0] + zp[1])
    if mean_one:
        listed = listed.map(lambda v: [x * len(v) / math.fsum(v) for x in v])
    return _spectrum_choice(kinds, K, listed)


def ldm_spectra(kinds: str | Iterable[str] = _SPECTRUM_KINDS, *, d: int | None = None,
                K: tuple[float, float] = (0.0, 0.9), values: tuple[float, float] = (0.01, 10.0),
                max_values: int = 5) -> SearchStrategy[str | list[float]]:
    """LDM spectra (conventions section 2.5): eigenvalues > 0.

    Parameters
    ----------
    kinds : str or iterable of str
        Among ``"isotropic"``, ``"powerlaw"`` and ``"values"``.
    d : int or None
        For a finite d, a ``"values"`` spectrum lists exactly d eigenvalues: 1 to
        ``max_values`` distinct values drawn log-uniformly in ``values``, each repeated over an
        equal share of the d directions. For None (d -> inf), the distinct values themselves.
    K, values, max_values
        As in :func:`rf_dsm_spectra` (K within [0, 1): LDM's d -> inf limit needs K < 1).
    """
    distinct = st.lists(log_uniform(*values), min_size=1, max_size=max_values)
    if d is not None:
        dd = int(d)
        distinct = distinct.map(lambda v: [v[(i * len(v)) // dd] for i in range(dd)])
    return _spectrum_choice(kinds, K, distinct)


def _spectrum_choice(kinds, K, listed: SearchStrategy) -> SearchStrategy:
    """One of the requested kinds: ``isotropic``, ``powerlaw:K`` or the ``listed`` values."""
    kinds = _kinds(kinds)
    options = []
    if "isotropic" in kinds:
        options.append(st.just("isotropic"))
    if "powerlaw" in kinds:
        options.append(_powerlaws(K))
    if "values" in kinds:
        options.append(listed)
    return st.one_of(*options)


# -- keyword-dict strategies -----------------------------------------------------------------
def _is_range(value: Any) -> bool:
    return (isinstance(value, tuple) and len(value) == 2
            and all(isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)
                    for v in value))


def _range(name: str, value: tuple) -> SearchStrategy:
    lo, hi = value
    if name in _INT_KEYS:
        if not (float(lo).is_integer() and float(hi).is_integer()):
            raise ValueError(f"{name}: an integer range (got {value!r})")
        return st.integers(int(lo), int(hi))
    if name in _LOG_KEYS:
        return log_uniform(lo, hi)
    return st.floats(float(lo), float(hi))


def _part(name: str, fixed: dict, default: SearchStrategy | None, *, optional: bool = False,
          drawn_by_default: bool = True, ranged: bool = True):
    """The strategy (or _OMIT) for one keyword: range, strategy, True/False, or a fixed value."""
    if name not in fixed:
        return default if drawn_by_default else _OMIT
    value = fixed[name]
    if isinstance(value, SearchStrategy):
        return value
    if optional and isinstance(value, bool):
        return default if value else _OMIT
    if ranged and _is_range(value):
        return _range(name, value)
    return st.just(value)


def _check_keys(fixed: dict, funcs: tuple[Callable, ...], where: str) -> None:
    allowed = set().union(*(inspect.signature(f).parameters for f in funcs))
    unknown = sorted(set(fixed) - allowed)
    if unknown:
        raise TypeError(f"{where}: unknown keyword(s) {', '.join(unknown)}; parameters are "
                        f"{', '.join(sorted(allowed))}")


@st.composite
def _dicts(draw, parts: dict, late: dict, order: tuple[str, ...]):
    """Draw every part; ``late`` parts are functions of the dict drawn so far."""
    kw = {k: draw(s) for k, s in parts.items() if s is not _OMIT}
    for k, make in late.items():
        s = make(kw)
        if s is not _OMIT:
            kw[k] = draw(s)
    rank = {k: i for i, k in enumerate(order)}
    return dict(sorted(kw.items(), key=lambda kv: rank.get(kv[0], len(rank))))


def _all_fixed(fixed: dict, names: Iterable[str]) -> bool:
    return all(n in fixed and not isinstance(fixed[n], SearchStrategy) and not _is_range(fixed[n])
               for n in names)


def _floats(*values):
    try:
        return np.broadcast_arrays(*(np.asarray(v, dtype=float) for v in values))
    except (TypeError, ValueError):
        return None  # not numbers: passed through for the function to reject


def _rf_dsm_ok(kw: dict, margin: float = RIDGELESS_MARGIN) -> bool:
    """False for lam = 0 within ``margin`` of the interpolation threshold psi_p = m psi_n."""
    arr = _floats(kw.get("psi_n", 1.0), kw.get("psi_p", 1.0), kw.get("m", 1), kw.get("lam", 1.0))
    if arr is None:
        return True
    psi_n, psi_p, m, lam = arr
    with np.errstate(invalid="ignore", over="ignore"):
        near = np.abs(psi_p - m * psi_n) < margin * m * psi_n
    return not np.any((lam == 0) & np.isfinite(m) & np.isfinite(psi_p) & near)


def _rf_dsm_sim_ok(kw: dict) -> bool:
    """Also at the simulated sizes: lam = 0 keeps ``|p - n m| >= margin n m + 1``."""
    if not _rf_dsm_ok(kw):
        return False
    try:
        if float(kw.get("lam", 1.0)) != 0:
            return True
        d = int(kw.get("d", 200))
        n, p, m = max(1, round(float(kw["psi_n"]) * d)), max(1, round(float(kw["psi_p"]) * d)), float(kw["m"])
    except (TypeError, ValueError, KeyError, OverflowError):
        return True  # not scalars: passed through for the simulation to reject
    return abs(p - n * m) >= RIDGELESS_MARGIN * n * m + 1


def rf_dsm_params(*, ridgeless: bool = False, **fixed: Any) -> SearchStrategy[dict[str, Any]]:
    """Keyword dicts of valid, well-conditioned points for :func:`rmtsolve.rf_dsm`.

    Parameters
    ----------
    ridgeless : bool
        Also draw lam = 0 (the ridgeless limit, about half of the draws), away from its
        divergence at psi_p = m psi_n by :data:`RIDGELESS_MARGIN`.
    **fixed
        Any parameter of :func:`rmtsolve.rf_dsm` as a range ``(low, high)``, a hypothesis
        strategy, a fixed value, or (``activation``, ``spectrum``, ``tau``) True/False to
        draw it or leave it out (module docstring). Defaults (:data:`RF_DSM_RANGES`):
        psi_n, psi_p log-uniform in [0.1, 10]; m an integer in [1, 20] or inf; t log-uniform
        in [0.01, 5]; lam log-uniform in [1e-4, 10]; ``activation`` one of the seven names;
        ``spectrum`` from :func:`rf_dsm_spectra` (isotropic, powerlaw:K with K in [0, 0.9],
        or up to five positive eigenvalues and up to two zeros, as drawn; rescaled to mean 1 with
        ``spectrum=rf_dsm_spectra(mean_one=True)``); ``tau`` left out (``tau=True``:
        log-uniform in [0.1, 100]). ``dps`` and ``on_error`` only as fixed values.

    Returns
    -------
    SearchStrategy of dict
        ``rmtsolve.rf_dsm(**kw)`` solves every drawn ``kw``; psi_p is finite unless fixed
        or drawn otherwise (the kernel limit: ``psi_p=st.just(math.inf)``; in this version
        of rmtsolve, with nonlinear activations only: with ``linear`` features the kernel
        limit does not converge for psi_n m > 1).

    Raises
    ------
    TypeError
        A keyword that is not a parameter of :func:`rmtsolve.rf_dsm`.
    ValueError
        A malformed range, or psi_n, psi_p, m and lam all fixed at a divergent ridgeless point.
    """
    return _rf_dsm_strategy(fixed, ridgeless, RF_DSM_RANGES, (rf_dsm_solver,), "rf_dsm_params",
                            st.one_of(st.integers(*RF_DSM_RANGES["m"]), st.just(math.inf)), {})


def rf_dsm_simulation_params(*, ridgeless: bool = False, **fixed: Any) -> SearchStrategy[dict[str, Any]]:
    """Keyword dicts for :func:`rmtsolve.simulate_rf_dsm` at small sizes (d <= 100).

    Same keywords as :func:`rf_dsm_params`, plus ``d``, ``seeds``, ``seed`` and ``n_test``,
    with the defaults of :data:`RF_DSM_SIMULATION_RANGES`: psi_n, psi_p in [0.2, 4],
    m an integer in [1, 8] (simulations need a finite m), t in [0.05, 3], lam in [1e-3, 10],
    d in [20, 100], seeds in [2, 4], seed any 32-bit integer (``n_test``: left out).
    With ``ridgeless=True``, lam = 0 also keeps ``|p - n m| >= margin n m + 1`` at the
    simulated n = round(psi_n d), p = round(psi_p d). :func:`theory_kwargs` gives the
    matching :func:`rmtsolve.rf_dsm` call.
    """
    sim_parts = {k: _part(k, fixed, st.integers(*RF_DSM_SIMULATION_RANGES[k])) for k in ("d", "seeds", "seed")}
    sim_parts["n_test"] = _part("n_test", fixed, None, drawn_by_default=False)
    return _rf_dsm_strategy(fixed, ridgeless, RF_DSM_SIMULATION_RANGES, (simulate_rf_dsm,),
                            "rf_dsm_simulation_params", st.integers(*RF_DSM_SIMULATION_RANGES["m"]),
                            sim_parts)


def _rf_dsm_strategy(fixed, ridgeless, ranges, funcs, where, m_default, extra_parts):
    _check_keys(fixed, funcs, where)
    lam = log_uniform(*ranges["lam"])
    parts = {
        "psi_n": _part("psi_n", fixed, log_uniform(*ranges["psi_n"])),
        "psi_p": _part("psi_p", fixed, log_uniform(*ranges["psi_p"])),
        "m": _part("m", fixed, m_default),
        "t": _part("t", fixed, log_uniform(*ranges["t"])),
        "lam": _part("lam", fixed, st.one_of(lam, st.just(0.0)) if ridgeless else lam),
        "activation": _part("activation", fixed, activations(), optional=True, ranged=False),
        "spectrum": _part("spectrum", fixed, rf_dsm_spectra(), optional=True, ranged=False),
        "tau": _part("tau", fixed, log_uniform(*ranges["tau"]), optional=True, drawn_by_default=False),
        **extra_parts,
    }
    for k in fixed.keys() - parts.keys():  # dps, on_error: fixed values only
        parts[k] = st.just(fixed[k])
    sim = bool(extra_parts)
    if _all_fixed(fixed, ("psi_n", "psi_p", "m", "lam")) and not _rf_dsm_ok(fixed):
        raise ValueError(f"{where}: lam = 0 at psi_p = m psi_n (within {RIDGELESS_MARGIN:.0%}) "
                         "is the divergent ridgeless point")
    order = tuple(inspect.signature(funcs[0]).parameters)
    return _dicts(parts, {}, order).filter(_rf_dsm_sim_ok if sim else _rf_dsm_ok)


def _ldm_ok(kw: dict, margin: float = RIDGELESS_MARGIN) -> bool:
    """beta_min <= beta_max, N >= 2, and a ridgeless converged point away from its divergence."""
    arr = _floats(kw.get("n_over_d", 1.0), kw.get("lam", 0.0),
                  np.inf if kw.get("tau") is None else kw["tau"],
                  kw.get("beta_min", 1e-4), kw.get("beta_max", 1e-2))
    if arr is None:
        return True
    nd, lam, tau, bmin, bmax = arr
    if np.any(bmin > bmax):
        return False
    d = kw.get("d")
    ridgeless = (lam == 0) & np.isinf(tau)
    if d is None:
        return not np.any(ridgeless & (nd < 1 + margin))
    N = np.round(nd * d)
    return bool(np.all(N >= 2)) and not np.any(ridgeless & (N - 1 < (1 + margin) * d))


def ldm_params(*, ridgeless: bool = False, **fixed: Any) -> SearchStrategy[dict[str, Any]]:
    """Keyword dicts of valid, well-conditioned points for :func:`rmtsolve.ldm`.

    Parameters
    ----------
    ridgeless : bool
        Also draw lam = 0 (about half of the draws). A converged ridgeless point then keeps
        n_over_d >= 1 + :data:`RIDGELESS_MARGIN` (d -> inf) or N - 1 >= (1 + margin) d
        (finite d); with a finite tau any n_over_d is allowed.
    **fixed
        Any parameter of :func:`rmtsolve.ldm` as a range, a strategy, a fixed value, or
        (``spectrum``, ``tau``, ``d``) True/False to draw it or leave it out. Defaults
        (:data:`LDM_RANGES`): n_over_d log-uniform in [0.25, 16]; lam log-uniform in
        [1e-4, 1] (lam > 0: every KL finite, also below n_over_d = 1); T an integer in
        [10, 200] (short schedules keep a solve well under a second; pass ``T=1000`` for the
        default schedule); beta_min in [1e-5, 1e-3] and beta_max in [1e-3, 0.05]
        (log-uniform); mean_norm in [0, 2]; ``spectrum`` from :func:`ldm_spectra`
        (eigenvalues > 0; for a drawn finite d, exactly d of them); ``tau`` left out
        (``tau=True``: log-uniform in [0.1, 100]); ``d`` left out, i.e. d -> inf
        (``d=True``: an integer in [10, 100]). ``dps`` only as a fixed value.

    Returns
    -------
    SearchStrategy of dict
        Every ``rmtsolve.ldm(**kw)`` returns finite KLs, errors and span fraction.
    """
    return _ldm_strategy(fixed, ridgeless, LDM_RANGES, (ldm_solver,), "ldm_params", {})


def ldm_simulation_params(*, ridgeless: bool = False, **fixed: Any) -> SearchStrategy[dict[str, Any]]:
    """Keyword dicts for :func:`rmtsolve.simulate_ldm` at small sizes.

    Same keywords as :func:`ldm_params` with the defaults of :data:`LDM_SIMULATION_RANGES`:
    d (required by the simulation) an integer in [10, 60], n_over_d in [0.5, 8], seeds in
    [2, 4], seed any 32-bit integer. :func:`theory_kwargs` gives the matching
    :func:`rmtsolve.ldm` call (the finite-d deterministic equivalent at the same d).
    """
    extra = {k: _part(k, fixed, st.integers(*LDM_SIMULATION_RANGES[k])) for k in ("seeds", "seed")}
    fixed = {"d": True, **fixed}
    return _ldm_strategy(fixed, ridgeless, LDM_SIMULATION_RANGES, (simulate_ldm,),
                         "ldm_simulation_params", extra)


def _ldm_strategy(fixed, ridgeless, ranges, funcs, where, extra_parts):
    _check_keys(fixed, funcs, where)
    lam = log_uniform(*ranges["lam"])
    parts = {
        "n_over_d": _part("n_over_d", fixed, log_uniform(*ranges["n_over_d"])),
        "lam": _part("lam", fixed, st.one_of(lam, st.just(0.0)) if ridgeless else lam),
        "tau": _part("tau", fixed, log_uniform(*ranges["tau"]), optional=True, drawn_by_default=False),
        "T": _part("T", fixed, st.integers(*ranges["T"])),
        "beta_min": _part("beta_min", fixed, log_uniform(*ranges["beta_min"])),
        "beta_max": _part("beta_max", fixed, log_uniform(*ranges["beta_max"])),
        "mean_norm": _part("mean_norm", fixed, st.floats(*ranges["mean_norm"])),
        "d": _part("d", fixed, st.integers(*ranges["d"]), optional=True, drawn_by_default=False),
        **extra_parts,
    }
    for k in fixed.keys() - parts.keys() - {"spectrum"}:  # dps: fixed values only
        parts[k] = st.just(fixed[k])
    late = {"spectrum": lambda kw: _part("spectrum", fixed, ldm_spectra(d=kw.get("d")), optional=True,
                                         ranged=False)}
    order = tuple(inspect.signature(funcs[0]).parameters)
    return _dicts(parts, late, order).filter(_ldm_ok)


_RF_DSM_SIM_ONLY = ("d", "seeds", "seed", "n_test")
_LDM_SIM_ONLY = ("seeds", "seed")


def theory_kwargs(params: Mapping[str, Any], *, same_eigenvalues: bool = True) -> dict[str, Any]:
    """The theory call that matches a simulation's keyword dict.

    Parameters
    ----------
    params : mapping
        Keywords of :func:`rmtsolve.simulate_rf_dsm` (recognised by ``psi_n``) or of
        :func:`rmtsolve.simulate_ldm` (``n_over_d``), e.g. drawn by
        :func:`rf_dsm_simulation_params` or :func:`ldm_simulation_params`.
    same_eigenvalues : bool
        RF-DSM only: replace a non-isotropic spectrum by the d eigenvalues the simulation
        uses (conventions section 1.5: a power law's quantiles approach the continuum law
        only like d^(K-1)), which is the comparison the validation makes. False keeps the
        spectrum as given (the d -> inf population law).

    Returns
    -------
    dict
        For RF-DSM, ``params`` without d, seeds, seed and n_test; for LDM, without seeds and
        seed (d stays: :func:`rmtsolve.ldm` then gives the finite-d deterministic equivalent).
    """
    params = dict(params)
    if "psi_n" in params:
        d = params.get("d", 200)
        out = {k: v for k, v in params.items() if k not in _RF_DSM_SIM_ONLY}
        spec = out.get("spectrum", "isotropic")
        if same_eigenvalues and not (isinstance(spec, str) and spec.strip() == "isotropic"):
            out["spectrum"] = parse_spectrum(spec).rf_dsm_eigenvalues(int(d))
        return out
    if "n_over_d" in params:
        return {k: v for k, v in params.items() if k not in _LDM_SIM_ONLY}
    raise ValueError("theory_kwargs: params of simulate_rf_dsm (psi_n, ...) or simulate_ldm "
                     "(n_over_d, ...)")


# -- comparing a simulation with the theory --------------------------------------------------
_RF_DSM_QUANTITIES = ("test_error", "train_error")
_LDM_QUANTITIES = ("kl_gen_data_per_dim", "kl_data_gen_per_dim", "span_fraction")
_MISSING = object()


def _get(obj: Any, key: str, default: Any = _MISSING) -> Any:
    if isinstance(obj, Mapping):
        return obj[key] if key in obj or default is _MISSING else default
    try:
        return getattr(obj, key)
    except AttributeError:
        if default is _MISSING:
            raise
        return default


def _has(obj: Any, key: str) -> bool:
    return _get(obj, key, None) is not None


def _to_float(value: Any, what: str) -> np.ndarray:
    try:
        return np.asarray(value, dtype=float)
    except (TypeError, ValueError):
        try:  # object arrays of mpmath numbers, or nested lists of them
            return np.vectorize(float, otypes=[float])(np.asarray(value, dtype=object))
        except (TypeError, ValueError):
            raise ValueError(f"assert_matches_simulation: {what} is not numeric ({value!r:.60})") from None


def _fmt(x: float) -> str:
    return f"{x:.6g}"


def assert_matches_simulation(theory: Any, simulation: Any, *, rel: float = 0.01, n_se: float = 3.0,
                              quantities: str | Iterable[str] | None = None) -> None:
    """Assert that a finite-size simulation matches the theory within the validation's tolerance.

    A quantity passes when ``|sim - theory| <= max(rel |theory|, n_se se)``, with se the
    simulation's standard error of the mean over seeds (``<quantity>_stderr``); the default
    ``max(1 % of theory, 3 se)`` is the acceptance of the project's RF-DSM validation
    (docs/conventions.md, section 4). Arrays (LDM's per-step ``test_error_t``) are compared
    entry by entry. Equal values pass (also equal infinities); NaN never passes.

    Parameters
    ----------
    theory : result object or mapping
        An :class:`~rmtsolve.rf_dsm.solver.RFDSMResult` or :class:`~rmtsolve.ldm.LDMResult`
        (attributes), or a dict such as ``result.as_dict()`` or the parsed ``--json`` output
        (``"inf"``/``"nan"`` strings and mpmath numbers are read as floats).
    simulation : result object or mapping
        An :class:`~rmtsolve.rf_dsm.sim.RFDSMSimulation` or
        :class:`~rmtsolve.ldm_sim.LDMSimulation`, or its ``as_dict()`` / ``--json`` dict; it
        must carry ``<quantity>_stderr`` for every quantity compared. A NaN standard error
        (a single seed) counts as 0: only the relative tolerance is left.
    rel : float
        Relative tolerance, a fraction of ``|theory|``.
    n_se : float
        Tolerance in standard errors of the simulation.
    quantities : str, iterable of str or None
        Names of the outputs to compare. None: ``test_error`` and ``train_error`` for
        RF-DSM; ``kl_gen_data_per_dim``, ``kl_data_gen_per_dim`` and ``span_fraction`` for
        LDM.

    Raises
    ------
    AssertionError
        If any quantity fails: a header line, then one line per quantity (``ok`` or ``FAIL``,
        with the simulated value, its se, the theory, the deviation and the tolerance; for an
        array, its worst entry).
    ValueError
        A quantity or its standard error is missing or not numeric, or shapes do not broadcast.

    Notes
    -----
    This compares the simulation at **one** d with the theory, which is the d -> inf limit
    (or, for LDM with ``d``, the finite-d deterministic equivalent, accurate to O(1/d^2)).
    The project's validation instead simulates several d and extrapolates in 1/d before it
    applies this tolerance, so a finite-size bias of order 1/d never counts there. At a
    single small d that bias can exceed 1 %: for RF-DSM near the interpolation threshold,
    at small ridges or with power-law spectra (compare with the theory on the simulated
    eigenvalues, :func:`theory_kwargs`). Choose a well-conditioned point, enough seeds for a
    meaningful se (with 2 or 3 seeds the se itself is very uncertain) and, if needed, a
    ``rel`` stated for that d, as the continuous-integration subset does (5 % at d = 200).
    For LDM the validation's tolerance is ``max(2 % |sim|, 3 se)``: pass ``rel=0.02``.
    """
    if quantities is None:
        if _has(theory, "test_error") or _has(simulation, "test_error"):
            quantities = _RF_DSM_QUANTITIES
        elif _has(theory, "kl_gen_data_per_dim") or _has(simulation, "kl_gen_data_per_dim"):
            quantities = _LDM_QUANTITIES
        else:
            raise ValueError("assert_matches_simulation: pass quantities= (neither an RF-DSM nor an "
                             "LDM result)")
    elif isinstance(quantities, str):
        quantities = (quantities,)
    quantities = tuple(quantities)
    if not quantities:
        raise ValueError("assert_matches_simulation: no quantities to compare")
    if not (rel >= 0 and n_se >= 0):
        raise ValueError(f"assert_matches_simulation: rel and n_se must be >= 0 (got {rel!r}, {n_se!r})")
    lines, failed = [], False
    for q in quantities:
        try:
            th_raw, sim_raw = _get(theory, q), _get(simulation, q)
        except (KeyError, AttributeError):
            raise ValueError(f"assert_matches_simulation: {q!r} is missing from the theory or the "
                             "simulation") from None
        se_raw = _get(simulation, q + "_stderr", None)
        if se_raw is None:
            raise ValueError(f"assert_matches_simulation: the simulation has no standard error "
                             f"{q + '_stderr'!r}")
        try:
            th, sim, se = np.broadcast_arrays(_to_float(th_raw, q), _to_float(sim_raw, q),
                                              _to_float(se_raw, q + "_stderr"))
        except ValueError as exc:
            raise ValueError(f"assert_matches_simulation: {q}: {exc}") from None
        se = np.where(np.isnan(se), 0.0, np.abs(se))
        with np.errstate(invalid="ignore", over="ignore"):
            diff = np.abs(sim - th)
            tol = np.maximum(rel * np.abs(th), n_se * se)
            ok = (diff <= tol) | (sim == th)
            ratio = np.where(ok, np.where(tol > 0, diff / tol, 0.0), np.inf)
        ratio = np.where(np.isnan(ratio), np.inf, ratio)
        i = np.unravel_index(int(np.argmax(ratio)), ratio.shape) if ratio.ndim else ()
        name = q + (f"[{', '.join(map(str, i))}]" if ratio.ndim else "")
        count = f" ({int((~ok).sum())} of {ok.size} entries fail)" if ratio.ndim and not ok.all() else ""
        line = (f"{name}: simulation {_fmt(sim[i])} (se {se[i]:.3g}) vs theory {_fmt(th[i])}: "
                f"|diff| {diff[i]:.3g} {'<=' if ok[i] else '>'} {tol[i]:.3g} = max({rel:g} |theory|, "
                f"{n_se:g} se){count}")
        failed |= not bool(ok.all())
        lines.append(("ok    " if ok.all() else "FAIL  ") + line)
    if failed:
        params = _get(simulation, "params", None)
        d = params.get("d") if isinstance(params, Mapping) else None
        where = f" (d = {d})" if d is not None else ""
        raise AssertionError(f"simulation{where} does not match the theory "
                             f"(tolerance max({rel:g} |theory|, {n_se:g} se)):\n" + "\n".join(lines))
