"""Named figures (``rmtsolve figure NAME --out FILE``); matplotlib from the ``plot`` extra.

Every figure's data comes from the public API (rf_dsm, simulate_rf_dsm, ldm); ``--csv``
also writes the plotted numbers.  Each ``rmtsolve.figures.NAME(out=None, csv_path=None, *,
progress=False, ...)`` returns the matplotlib Figure; it is drawn without pyplot, so the
user's backend and pyplot state are left alone.  The output format follows the extension of
``out``: ``.png`` (300 dpi), ``.pdf`` or ``.svg``.  Simulation points are cached in
``$RMTSOLVE_CACHE`` (default ``~/.cache/rmtsolve``), keyed by the rmtsolve version and every
simulation parameter, so that redrawing is instant; ``progress`` reports each simulation
that has to run on stderr.
"""
from __future__ import annotations

import csv
import hashlib
import json
import math
import os
import pathlib
import sys

import numpy as np

from .errors import ParameterError

FIGURES = ("rf-dsm-phase-diagram", "rf-dsm-learning-curves", "rf-dsm-training-dynamics", "rf-dsm-memorisation",
           "ldm-kl", "ldm-regularisation")
FORMATS = {".png": {"dpi": 300}, ".pdf": {}, ".svg": {}}


def _new_figure(figsize):
    """A matplotlib Figure not registered with pyplot (no backend switch, no global state)."""
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise ParameterError("figure", "drawable only with matplotlib installed: pip install 'rmtsolve[plot]'",
                             None) from None
    return Figure(figsize=figsize)


def _save(fig, out) -> None:
    if out is not None:
        suffix = pathlib.Path(out).suffix.lower()
        fig.savefig(out, format=suffix[1:], bbox_inches="tight", **FORMATS[suffix])


def _outside_legend(ax, handles=None, labels=None, **kw):
    """Legend to the right of the axes: it never covers data."""
    args = () if handles is None else (handles, labels)
    ax.legend(*args, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0, fontsize=8, **kw)


class _Progress:
    """One stderr line per simulation that has to run (cached points are silent)."""

    def __init__(self, name: str, total: int, enabled: bool):
        self.name, self.total, self.enabled, self.done = name, total, enabled, 0

    def __call__(self, label: str) -> None:
        self.done += 1
        if self.enabled:
            sys.stderr.write(f"rmtsolve figure {self.name}: simulation {self.done}/{self.total} ({label})\n")
            sys.stderr.flush()


def _cache_dir() -> pathlib.Path:
    path = pathlib.Path(os.environ.get("RMTSOLVE_CACHE", pathlib.Path.home() / ".cache" / "rmtsolve"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def _cached_simulation(progress=None, **kw) -> dict:
    from .rf_dsm.sim import simulate_rf_dsm

    from . import __version__
    from ._output import jsonable

    # the version is part of the key: a changed simulator must not reuse stale points
    key = json.dumps({"rmtsolve": __version__, **kw}, sort_keys=True)
    path = _cache_dir() / ("sim_" + hashlib.sha1(key.encode()).hexdigest()[:16] + ".json")
    if path.exists():
        return json.loads(path.read_text())
    if progress is not None:
        progress(", ".join(f"{k}={v}" for k, v in kw.items() if k in ("psi_n", "psi_p", "m", "tau", "d")))
    data = simulate_rf_dsm(**kw).as_dict()
    data.pop("params")
    path.write_text(json.dumps(jsonable(data)))
    return data


def _write_csv(path, columns: dict):
    if path is None:
        return
    names = list(columns)
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(names)
        for row in zip(*(np.ravel(columns[n]) for n in names)):
            w.writerow([repr(float(v)) if not isinstance(v, str) else v for v in row])


def rf_dsm_phase_diagram(out=None, csv_path=None, *, progress=False, t=0.5, lam=1e-3, n=60):
    """Generalisation gap over (psi_n, psi_p) for m in {1, 4, inf}, lines p = n and p = n m."""
    from .rf_dsm import rf_dsm

    pn = np.geomspace(0.1, 10, n)
    pp = np.geomspace(0.1, 10, n)
    PN, PP = np.meshgrid(pn, pp)
    ms = (1, 4, math.inf)
    fig = _new_figure((13, 4))
    axes = fig.subplots(1, 3, sharey=True)
    cols = {"psi_n": [], "psi_p": [], "m": [], "gap": []}
    for ax, m in zip(axes, ms):
        gap = rf_dsm(psi_n=PN, psi_p=PP, m=m, t=t, lam=lam).gap
        im = ax.pcolormesh(PN, PP, np.log10(np.maximum(gap, 1e-6)), shading="auto", vmin=-4, vmax=1,
                           cmap="viridis")
        ax.plot(pn, pn, "w--", lw=1.2, label="$p = n$")
        if math.isfinite(m) and m > 1:
            ax.plot(pn, m * pn, "w:", lw=1.5, label="$p = nm$")
        ax.set(xscale="log", yscale="log", xlim=(pn[0], pn[-1]), ylim=(pp[0], pp[-1]),
               xlabel=r"$\psi_n = n/d$", title=r"$m = \infty$" if math.isinf(m) else f"$m = {m}$")
        # below the panel, on the colour of the lines' background: the legend covers no data
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2, fontsize=8, facecolor="0.35",
                  labelcolor="white")
        cols["psi_n"] += list(PN.ravel())
        cols["psi_p"] += list(PP.ravel())
        cols["m"] += [m] * PN.size
        cols["gap"] += list(gap.ravel())
    axes[0].set_ylabel(r"$\psi_p = p/d$")
    fig.colorbar(im, ax=axes, label=r"$\log_{10}\,(\mathcal{E}_{\rm test} - \mathcal{E}_{\rm train})$")
    fig.suptitle(rf"RF-DSM generalisation gap, relu, $t = {t}$, $\lambda = {lam}$")
    _save(fig, out)
    _write_csv(csv_path, cols)
    return fig


def _family(ax, cols, color, label, fixed, xname, grid, theory, sims, d):
    """One family of curves: theory test/train lines over ``grid`` and simulation points
    ``sims = [(x, simulation dict)]`` with error bars; every plotted number goes to ``cols``."""
    ax.plot(grid, theory.test_error, color=color, ls="-", label=f"test, {label}")
    ax.plot(grid, theory.train_error, color=color, ls="--", label=f"train, {label}")
    for x, s in sims:
        for q, mk in (("test_error", "o"), ("train_error", "s")):
            ax.errorbar(x, s[q], yerr=s[q + "_stderr"], fmt=mk, color=color, ms=4, capsize=2)
    rows = [(x, s["test_error"], s["train_error"], f"simulation d={d}") for x, s in sims]
    rows += [(x, te, tr, "theory") for x, te, tr in zip(grid, theory.test_error, theory.train_error)]
    for x, te, tr, kind in rows:
        for k, v in fixed.items():
            cols[k].append(v)
        cols[xname].append(x)
        cols["test_error"].append(te)
        cols["train_error"].append(tr)
        cols["kind"].append(kind)


def rf_dsm_learning_curves(out=None, csv_path=None, *, progress=False, psi_n=0.5, t=0.5, lam=1e-3, d=200,
                           seeds=4):
    """Test and train error against psi_p for several m: theory lines, simulation points."""
    from .rf_dsm import rf_dsm

    grid = np.geomspace(0.1, 8, 150)
    sim_pp = (0.25, 0.5, 1.0, 2.0, 4.0)
    fig = _new_figure((8.5, 4.5))
    ax = fig.subplots()
    note = _Progress("rf-dsm-learning-curves", 3 * len(sim_pp), progress)
    cols = {"m": [], "psi_p": [], "test_error": [], "train_error": [], "kind": []}
    for i, m in enumerate((1, 2, 5)):
        th = rf_dsm(psi_n=psi_n, psi_p=grid, m=m, t=t, lam=lam)
        sims = [(pp, _cached_simulation(note, psi_n=psi_n, psi_p=pp, m=m, t=t, lam=lam, activation="relu", d=d,
                                        seeds=seeds, seed=7)) for pp in sim_pp]
        _family(ax, cols, f"C{i}", f"$m = {m}$", {"m": m}, "psi_p", grid, th, sims, d)
    ax.axhline(math.exp(-2 * t), color="gray", lw=0.8, ls=":", label=r"$e^{-2t}$")
    ax.axvline(psi_n, color="gray", lw=0.8)
    ax.set(xscale="log", xlabel=r"$\psi_p = p/d$", ylabel="error per dimension",
           title=rf"RF-DSM, relu, $\psi_n = {psi_n}$, $t = {t}$, $\lambda = {lam}$; points: simulations $d = {d}$")
    _outside_legend(ax)
    _save(fig, out)
    _write_csv(csv_path, cols)
    return fig


def rf_dsm_training_dynamics(out=None, csv_path=None, *, progress=False, psi_p=4.0, t=0.5, lam=1e-3, d=200,
                             seeds=4):
    """Test and train error against the gradient-flow time tau for several n (p = 4 d, m = 1):
    a generalisation time, then memorisation at a time growing with n; simulation points."""
    from .rf_dsm import rf_dsm

    taus = np.geomspace(0.05, 1e3, 80)
    sim_taus = (0.2, 1.0, 5.0, 25.0, 125.0)
    fig = _new_figure((8.5, 4.5))
    ax = fig.subplots()
    note = _Progress("rf-dsm-training-dynamics", 3 * len(sim_taus), progress)
    cols = {"psi_n": [], "tau": [], "test_error": [], "train_error": [], "kind": []}
    for i, psi_n in enumerate((0.5, 1.0, 2.0)):
        th = rf_dsm(psi_n=psi_n, psi_p=psi_p, m=1, t=t, lam=lam, tau=taus)
        sims = [(tau, _cached_simulation(note, psi_n=psi_n, psi_p=psi_p, m=1, t=t, lam=lam, activation="relu",
                                         d=d, seeds=seeds, seed=7, tau=tau)) for tau in sim_taus]
        _family(ax, cols, f"C{i}", rf"$\psi_n = {psi_n}$", {"psi_n": psi_n}, "tau", taus, th, sims, d)
    ax.axhline(math.exp(-2 * t), color="gray", lw=0.8, ls=":", label=r"$e^{-2t}$")
    ax.set(xscale="log",
           xlabel=r"gradient-flow time $\tau$:  $B(\tau) = B_{\rm ridge}\,(I - e^{-\tau (U + \lambda)})$",
           ylabel="error per dimension",
           title=rf"RF-DSM training dynamics, relu, $\psi_p = {psi_p}$, $m = 1$, $t = {t}$, $\lambda = {lam}$; "
                 rf"points: $d = {d}$")
    _outside_legend(ax)
    _save(fig, out)
    _write_csv(csv_path, cols)
    return fig


def _cached_generation(progress=None, **kw) -> dict:
    from . import __version__
    from .rf_dsm.generate import generate_rf_dsm

    key = json.dumps({"rmtsolve": __version__, "generate": True, **kw}, sort_keys=True)
    path = _cache_dir() / ("gen_" + hashlib.sha1(key.encode()).hexdigest()[:16] + ".json")
    if path.exists():
        return json.loads(path.read_text())
    if progress is not None:
        progress(f"generation at psi_p={kw['psi_p']}, d={kw['d']}, K={kw['K']}")
    g = generate_rf_dsm(**kw, theory=False)
    data = {"sde": g.memorized_fraction["sde"], "ode": g.memorized_fraction["ode"],
            "sde_se": g.memorized_fraction_stderr["sde"], "ode_se": g.memorized_fraction_stderr["ode"]}
    path.write_text(json.dumps(data))
    return data


def rf_dsm_memorisation(out=None, csv_path=None, *, progress=False, psi_n=0.05, m=50, lam=1e-4, t=0.1, d=100,
                        K=500, seeds=3):
    """Against psi_p at fixed psi_n: the theory's train error, gap and empirical-score error at
    time t, and the memorised fraction of K generated samples (reverse SDE and probability-flow
    ODE, one score trained per time on n = psi_n d points with m noise draws each)."""
    from .rf_dsm import rf_dsm

    grid = np.geomspace(1.0, 20.0, 120)
    th = rf_dsm(psi_n=psi_n, psi_p=grid, m=m, t=t, lam=lam)
    sim_pp = (1.0, 2.0, 3.0, 4.0, 6.0, 8.0, 12.0, 20.0)
    note = _Progress("rf-dsm-memorisation", len(sim_pp), progress)
    sims = [_cached_generation(note, psi_n=psi_n, psi_p=pp, m=m, lam=lam, d=d, K=K, seeds=seeds, seed=11)
            for pp in sim_pp]
    fig = _new_figure((9.5, 4.5))
    ax = fig.subplots()
    ax.plot(grid, th.gap, "C0-", label=rf"gap (theory, $t = {t}$)")
    ax.plot(grid, th.empirical_score_error, "C1-", label=rf"empirical-score error (theory, $t = {t}$)")
    ax.plot(grid, th.train_error, "C2--", label=rf"train error (theory, $t = {t}$)")
    ax.axvline(psi_n * m, color="gray", lw=0.8, ls=":", label="$p = nm$")
    ax.set(xscale="log", yscale="log", xlabel=r"$\psi_p = p/d$", ylabel="error per dimension")
    ax2 = ax.twinx()
    for key, mk, col in (("sde", "o", "C3"), ("ode", "s", "C4")):
        ax2.errorbar(sim_pp, [s[key] for s in sims], yerr=[s[key + "_se"] for s in sims], fmt=mk + "-", color=col,
                     ms=4, capsize=2, label=f"memorised fraction ({key.upper()}, $d = {d}$)")
    ax2.set(ylabel="memorised fraction of generated samples", ylim=(-0.02, 1))
    h1, l1 = ax.get_legend_handles_labels()
    h2, l2 = ax2.get_legend_handles_labels()
    # beyond the right-hand axis and its label
    ax.legend(h1 + h2, l1 + l2, loc="upper left", bbox_to_anchor=(1.12, 1.0), borderaxespad=0.0, fontsize=8)
    ax.set_title(rf"RF-DSM memorisation: $\psi_n = {psi_n}$ ($n = {round(psi_n * d)}$), $m = {m}$, "
                 rf"$\lambda = {lam}$, relu", fontsize=9)
    _save(fig, out)
    cols = {"psi_p": list(grid) + list(sim_pp), "gap": list(th.gap) + [math.nan] * len(sim_pp),
            "empirical_score_error": list(th.empirical_score_error) + [math.nan] * len(sim_pp),
            "train_error": list(th.train_error) + [math.nan] * len(sim_pp),
            "memorized_fraction_sde": [math.nan] * grid.size + [s["sde"] for s in sims],
            "memorized_fraction_ode": [math.nan] * grid.size + [s["ode"] for s in sims]}
    _write_csv(csv_path, cols)
    return fig


LDM_D = 1000  # power laws with K >= 1 have no d -> inf limit; all spectra compared at this d


def ldm_kl(out=None, csv_path=None, *, progress=False):
    """Excess KL per dimension against N/d (log-log) for several spectra, with the d/N fit."""
    from .ldm import ldm

    grid = np.geomspace(2, 128, 12)
    fig = _new_figure((8.5, 4.5))
    ax = fig.subplots()
    cols = {"spectrum": [], "n_over_d": [], "excess_kl_per_dim": []}
    for i, spec in enumerate(("isotropic", "powerlaw:0.5", "powerlaw:1", "powerlaw:2")):
        ex = np.array([float(ldm(n_over_d=x, spectrum=spec, d=LDM_D).excess_kl_per_dim) for x in grid])
        big = grid >= 16
        slope = np.polyfit(1 / grid[big], ex[big], 1)[0]
        ax.loglog(grid, ex, "o-", color=f"C{i}", ms=4, label=f"{spec}: slope ${slope:.3f}\\,d/N$")
        cols["spectrum"] += [spec] * grid.size
        cols["n_over_d"] += list(grid)
        cols["excess_kl_per_dim"] += list(ex)
    ax.loglog(grid, 0.25 / grid, "k--", lw=1, label="$d/(4N)$")
    ax.set(xlabel="$N/d$",
           ylabel=r"excess KL per dimension, $[\mathrm{KL}(\hat p\,\|\,p) - \mathrm{KL}_{\rm oracle}]/d$ (nats)",
           title=rf"Linear diffusion model, $\lambda = 0$, converged, $d = {LDM_D}$")
    _outside_legend(ax)
    _save(fig, out)
    _write_csv(csv_path, cols)
    return fig


def ldm_regularisation(out=None, csv_path=None, *, progress=False):
    """KL(generated || data) per dimension against N/d for several lam and tau (isotropic)."""
    from .errors import ParameterError as _PE
    from .ldm import ldm

    grid = np.geomspace(0.25, 16, 30)
    fig = _new_figure((8.5, 4.5))
    ax = fig.subplots()
    cols = {"lam": [], "tau": [], "n_over_d": [], "kl_gen_data_per_dim": []}
    settings = ((0.0, None), (1e-2, None), (1e-1, None), (0.0, 100.0), (0.0, 10.0))
    for i, (lam, tau) in enumerate(settings):
        vals = []
        for x in grid:
            try:
                vals.append(float(ldm(n_over_d=x, lam=lam, tau=tau).kl_gen_data_per_dim))
            except _PE:  # lam = 0, tau = inf and N <= d + 1: the KL is infinite
                vals.append(np.inf)
        vals = np.array(vals)
        label = rf"$\lambda = {lam:g}$, " + ("converged" if tau is None else rf"$\tau = {tau:g}$")
        style = dict(color="k", ls="--", lw=2, zorder=5) if lam == 0 and tau is None else dict(color=f"C{i}")
        ax.loglog(grid, np.where(np.isfinite(vals), vals, np.nan),
                  label=label + (r" ($\infty$ for $N \leq d + 1$)" if i == 0 else ""), **style)
        cols["lam"] += [lam] * grid.size
        cols["tau"] += [np.inf if tau is None else tau] * grid.size
        cols["n_over_d"] += list(grid)
        cols["kl_gen_data_per_dim"] += list(vals)
    ax.axvline(1, color="gray", lw=0.8, ls=":")
    ax.set(xlabel="$N/d$", ylabel=r"$\mathrm{KL}(\hat p\,\|\,p)/d$ (nats)",
           title=r"Ridge and early stopping rescue $N < d$ (isotropic, $d \to \infty$)")
    _outside_legend(ax)
    _save(fig, out)
    _write_csv(csv_path, cols)
    return fig


def check_name(name: str, out: str) -> None:
    """ParameterError unless ``name`` is a figure and ``out`` ends in a supported extension."""
    if name not in FIGURES:
        raise ParameterError("NAME", "one of " + ", ".join(FIGURES), name)
    if pathlib.Path(str(out)).suffix.lower() not in FORMATS:
        raise ParameterError("--out", "a file name ending in " + ", ".join(FORMATS), out)


def draw(name: str, out: str, csv_path: str | None = None, progress: bool = False):
    """Draw figure ``name`` into ``out`` (format from the extension); returns the Figure."""
    check_name(name, out)
    return globals()[name.replace("-", "_")](out, csv_path, progress=progress)
