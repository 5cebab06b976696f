"""Anisotropic data (conventions 1.5): the follow-up works' findings, quantified with rmtsolve.

    python validation/findings_aniso.py   # writes validation/results/findings_aniso.{md,json}

1. Data on a linear subspace (George & Macris 2026): the sample complexity of the error along
   the data is set by the intrinsic dimension.  Data on a fraction f of the d directions
   (eigenvalue 1/f there, 0 elsewhere, tr Sigma/d = 1); the score error along the data and
   orthogonal to it as functions of psi_n = n/d.
2. Two-atom Sigma (Bonnaire et al. 2025, Thm 3.1): the spectral law of U and the time scales
   its parts set for gradient-flow training.
3. Power-law spectra (Urfin et al. 2026): where the interpolation features at p = n and
   p = n m sit and how high they are, against isotropic data.
"""
from __future__ import annotations

import argparse
import json
import math
import pathlib
import sys

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT.parent))

from rmtsolve import feature_spectrum, rf_dsm  # noqa: E402

T = 0.5


def crossing(x, y, level):
    """First x where the decreasing curve y falls below level (log-linear interpolation)."""
    i = int(np.argmax(y < level))
    if y[i] >= level or i == 0:
        return math.nan
    return float(np.exp(np.interp(level, [y[i], y[i - 1]], [np.log(x[i]), np.log(x[i - 1])])))


def subspace_findings() -> dict:
    """Score error along / orthogonal to the data against n/d, for data on a fraction f of d."""
    psi_n = np.geomspace(0.01, 100, 400)
    out = {}
    for f in (1.0, 0.5, 0.25, 0.125):
        spec = [1 / f] if f == 1 else [0.0] * round(1 / f - 1) + [1 / f]
        r = rf_dsm(psi_n=psi_n, psi_p=20.0, m=math.inf, t=T, lam=1e-3, spectrum=spec)
        by = np.asarray(r.test_error_by_eigenvalue)
        fl = np.asarray(r.as_dict()["test_error_by_eigenvalue"]["test_error_floor"])
        par = by[:, -1] - fl[:, -1]  # score error along the data (eigenvalue 1/f)
        orth = by[:, 0] - fl[:, 0] if f < 1 else None
        lim = par[-1]  # large-n limit of the parallel score error (finite p, lam)
        half = lim + 0.5 * (par[0] - lim)
        row = dict(parallel_at_psi_n_small=float(par[0]), parallel_at_psi_n_large=float(lim),
                   psi_n_half_parallel=crossing(psi_n, par, half))
        row["psi_n_half_parallel_over_f"] = row["psi_n_half_parallel"] / f
        if orth is not None:
            row["orthogonal_at_psi_n_small"] = float(orth[0])
            row["orthogonal_at_psi_n_large"] = float(orth[-1])
            row["orthogonal_at_psi_n_1"] = float(np.interp(0.0, np.log(psi_n), orth))
        row["parallel_at_psi_n_1"] = float(np.interp(0.0, np.log(psi_n), par))
        out[str(f)] = row
    return out


U_KW = dict(psi_n=4.0, psi_p=32.0, m=1, t=T, activation="relu", spectrum=[0.2, 5.0])


def spectrum_findings() -> dict:
    """Spectral law of U for Sigma with eigenvalues 0.2 and 5 (half each), n = 4 d, p = 32 d."""
    kw = U_KW
    x = np.geomspace(1e-4, 200, 20000)
    fs = feature_spectrum(x, **kw)
    dens = fs.density
    on = dens > 1e-5  # above the tail of the evaluation height eta = 1e-9 scale outside the support
    starts = np.flatnonzero(np.diff(on.astype(int)) == 1) + 1
    ends = np.flatnonzero(np.diff(on.astype(int)) == -1)
    if on[0]:
        starts = np.r_[0, starts]
    bulks = []
    for a, b in zip(starts, ends):
        xs, ds = x[a:b + 1], dens[a:b + 1]
        mass = float(np.trapezoid(ds, xs))
        mean = float(np.trapezoid(xs * ds, xs) / mass)
        bulks.append(dict(left=float(x[a]), right=float(x[b]), mass=mass, mean=mean, time_scale=1 / mean))
    iso = feature_spectrum(x, **(kw | {"spectrum": "isotropic"}))
    on_i = iso.density > 1e-5
    iso_bulks = int(np.sum(np.diff(on_i.astype(int)) == 1) + on_i[0])
    # gradient flow: test error against tau, with the times at which it changes fastest
    taus = np.geomspace(0.003, 3e3, 150)
    flow = rf_dsm(**{k: v for k, v in kw.items()}, lam=1e-3, tau=taus)
    slope = -np.gradient(np.asarray(flow.test_error), np.log(taus))
    peaks = [i for i in range(1, len(taus) - 1) if abs(slope[i]) > abs(slope[i - 1]) and abs(slope[i]) >= abs(slope[i + 1])
             and abs(slope[i]) > 0.02]
    return dict(settings=kw, atom=fs.atom, bulks=bulks, isotropic_bulks=iso_bulks,
                flow_tau=taus.tolist(), flow_test=np.asarray(flow.test_error).tolist(),
                flow_fast_change_taus=[float(taus[i]) for i in peaks],
                flow_fast_change_slopes=[float(slope[i]) for i in peaks])


def powerlaw_findings() -> dict:
    """Test-error features against psi_p at psi_n = 1, lam = 1e-4, relu, for m = 1 and 3: the
    peak at p = n m, the best under-parameterised point before it, and the train error at p = n."""
    pp = np.geomspace(0.05, 10, 2000)
    out = {}
    for spec in ("isotropic", "powerlaw:0.3", "powerlaw:0.5", "powerlaw:0.8"):
        for m in (1, 3):
            r = rf_dsm(psi_n=1.0, psi_p=pp, m=m, t=T, lam=1e-4, spectrum=spec)
            te, tr = np.asarray(r.test_error), np.asarray(r.train_error)
            floor = float(np.ravel(r.test_error_floor)[0])
            i = int(np.argmax(te))
            j = int(np.argmin(te[:i]))
            if j == 0:  # no interior minimum: the curve rises from p -> 0 to the peak
                j = -1
            out[f"{spec},m={m}"] = dict(
                peak_psi_p=float(pp[i]), peak_test_error=float(te[i]), floor=floor,
                min_before_peak_psi_p=float(pp[j]) if j >= 0 else math.nan,
                min_before_peak_test=float(te[j]) if j >= 0 else math.nan,
                min_before_peak_score=float(te[j] - floor) if j >= 0 else math.nan, train_at_p_eq_n=float(np.interp(0.0, np.log(pp), tr)),
                score_at_psi_p_10=float(te[-1] - floor))
    return out


def main():
    res = dict(subspace=subspace_findings(), u_spectrum=spectrum_findings(), powerlaw=powerlaw_findings())
    (ROOT / "results").mkdir(exist_ok=True)
    (ROOT / "results" / "findings_aniso.json").write_text(json.dumps(res, indent=1, default=float))
    L = ["# Anisotropic RF-DSM findings, reproduced with rmtsolve", "",
         "## 1. Data on a subspace: the error along the data needs n proportional to the intrinsic dimension",
         "", f"Data on a fraction f of the directions (eigenvalue 1/f, tr Sigma/d = 1), relu, t = {T}, "
             "p = 20 d, m = inf, lam = 1e-3. Score error = test error minus its floor, along the data and "
             "orthogonal to it; psi_n at which the score error along the data has fallen half-way from its "
             "small-n value to its large-n value:", "",
         "| f | psi_n half-way | psi_n half-way / f | along data: small n / psi_n = 1 / large n | "
         "orthogonal at psi_n = 1 |", "|---|---|---|---|---|"]
    for f, v in res["subspace"].items():
        orth = v.get("orthogonal_at_psi_n_1")
        L.append(f"| {f} | {v['psi_n_half_parallel']:.3g} | {v['psi_n_half_parallel_over_f']:.3g} | "
                 f"{v['parallel_at_psi_n_small']:.4f} / {v['parallel_at_psi_n_1']:.4f} / {v['parallel_at_psi_n_large']:.4f} | "
                 f"{'-' if orth is None else f'{orth:.4f}'} |")
    u = res["u_spectrum"]
    L += ["", "## 2. Two-atom Sigma: the parts of the spectrum of U and the training time scales", "",
          f"Sigma with eigenvalues 0.2 and 5 (half of the directions each), psi_n = 4, psi_p = 32, m = 1, relu, "
          f"t = {T}: U has an atom of mass {u['atom']:.4f} at 0 (p > n m) and {len(u['bulks'])} bulks "
          f"(isotropic data with the same settings: {u['isotropic_bulks']} bulks, the memorisation bulk of mass "
          "(n - d)/p and the generalisation bulk of mass d/p). The generalisation bulk splits into one bulk per "
          "eigenvalue of Sigma, each of mass (d/2)/p:", "",
          "| bulk | support | mass | mean eigenvalue | time scale 1/mean |", "|---|---|---|---|---|"]
    for i, b in enumerate(u["bulks"]):
        L.append(f"| {i + 1} | [{b['left']:.4g}, {b['right']:.4g}] | {b['mass']:.4f} | {b['mean']:.4g} | "
                 f"{b['time_scale']:.4g} |")
    L += ["", "Gradient flow at the same point (lam = 1e-3): the test error changes fastest (local maxima of "
              "|d test / d log tau|) at tau = " + ", ".join(f"{t:.3g}" for t in u["flow_fast_change_taus"]) +
          " (slopes " + ", ".join(f"{s:+.3g}" for s in u["flow_fast_change_slopes"]) + "; positive: falling)."]
    L += ["", "## 3. Power-law spectra and the interpolation features", "",
          f"psi_n = 1, lam = 1e-4, relu, t = {T}: the test-error peak in psi_p (p = n m: psi_p = m), the best test "
          "error before it, the train error at p = n, and the score error (test minus floor) at psi_p = 10:", "",
          "| spectrum | m | peak at psi_p | peak test | best before peak at psi_p | best test (score) | "
          "train at p = n | floor | score at psi_p = 10 |", "|---|---|---|---|---|---|---|---|---|"]
    for k, v in res["powerlaw"].items():
        spec, m = k.split(",m=")
        best = ("none: rises from p -> 0 | - " if math.isnan(v["min_before_peak_psi_p"]) else
                f"{v['min_before_peak_psi_p']:.3g} | {v['min_before_peak_test']:.4f} ({v['min_before_peak_score']:.4f}) ")
        L.append(f"| {spec} | {m} | {v['peak_psi_p']:.3g} | {v['peak_test_error']:.3f} | {best}| "
                 f"{v['train_at_p_eq_n']:.4f} | {v['floor']:.4f} | {v['score_at_psi_p_10']:.4f} |")
    (ROOT / "results" / "findings_aniso.md").write_text("\n".join(L) + "\n")
    print("\n".join(L))


if __name__ == "__main__":
    # no options: --help prints what the script does and writes
    argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter).parse_args()
    main()
