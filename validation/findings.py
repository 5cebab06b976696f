"""The reference works' findings, quantified with rmtsolve's public API.

    python validation/findings.py      # writes validation/results/findings.{md,json}

RF-DSM (George, Veiga & Macris 2025): generalisation for p < n, memorisation for p > n with
a crossover at p = n (m = 1); a larger m helps when under-parameterised and amplifies
memorisation when over-parameterised.  LDM (Merger & Goldt 2025): transition at N of order
d; for N > d the excess KL per dimension is linear in d/N with a spectrum-independent slope.
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

from rmtsolve import ldm, rf_dsm  # noqa: E402

T, LAM = 0.5, 1e-3
FLOOR = math.exp(-2 * T)


def rf_findings() -> dict:
    out = {}
    psi_n = 1.0
    pp = np.geomspace(0.05, 20, 2001)
    for m in (1, 2, 5, math.inf):
        r = rf_dsm(psi_n=psi_n, psi_p=pp, m=m, t=T, lam=LAM)
        peak = float(pp[np.argmax(r.test_error)])
        # Memorisation onset: train error below 10 % of its p -> 0 value (1 - ...).
        mem = pp[np.argmax(r.train_error < 0.1 * r.train_error[0])] if np.any(r.train_error < 0.1 * r.train_error[0]) else math.inf
        key = "inf" if math.isinf(m) else str(m)
        out[key] = dict(test_peak_psi_p=peak, peak_test_error=float(r.test_error.max()),
                        train_below_10pct_at_psi_p=float(mem),
                        test_error_at_psi_p_0_5=float(np.interp(0.5, pp, r.test_error)),
                        train_error_at_psi_p_0_5=float(np.interp(0.5, pp, r.train_error)),
                        test_error_at_psi_p_1_5=float(np.interp(1.5, pp, r.test_error)),
                        train_error_at_psi_p_1_5=float(np.interp(1.5, pp, r.train_error)),
                        gap_at_psi_p_0_5=float(np.interp(0.5, pp, r.gap)),
                        gap_at_psi_p_1_5=float(np.interp(1.5, pp, r.gap)))
    return out


def rf_flow_findings() -> dict:
    """Early stopping (Bonnaire et al.): a generalisation time, then memorisation at a time
    that grows with n.  p = 4 d, m = 1, lam = 1e-3, relu, t = 0.5."""
    taus = np.geomspace(0.05, 3e3, 90)
    out = {}
    for psi_n in (0.5, 1.0, 2.0):
        r = rf_dsm(psi_n=psi_n, psi_p=4.0, m=1, t=T, lam=LAM, tau=taus)
        conv = float(rf_dsm(psi_n=psi_n, psi_p=4.0, m=1, t=T, lam=LAM).test_error)
        i = int(np.argmin(r.test_error))
        half = r.test_error[i] + 0.5 * (conv - r.test_error[i])
        j = i + int(np.argmax(r.test_error[i:] > half))
        out[str(psi_n)] = dict(tau_gen=float(taus[i]), test_min=float(r.test_error[i]), test_converged=conv,
                               tau_mem_half=float(taus[j]))
    return out


LDM_D = 1000  # power laws with K >= 1 have no d -> inf limit: compare all spectra at this d


def ldm_findings() -> dict:
    out = {"slopes": {}, "d": LDM_D}
    big = np.array([16.0, 32.0, 64.0, 128.0])
    for spec in ("isotropic", "powerlaw:0.5", "powerlaw:1", "powerlaw:2"):
        ex = np.array([float(ldm(n_over_d=x, spectrum=spec, d=LDM_D).excess_kl_per_dim) for x in big])
        slope, icpt = np.polyfit(1 / big, ex, 1)
        out["slopes"][spec] = dict(slope=float(slope), intercept=float(icpt))
    grid = np.geomspace(0.25, 16, 25)
    curves = {}
    for lam, tau in ((0.0, None), (1e-2, None), (1e-1, None), (0.0, 100.0), (0.0, 10.0)):
        vals = []
        for x in grid:
            try:
                vals.append(float(ldm(n_over_d=x, lam=lam, tau=tau).kl_gen_data_per_dim))
            except Exception:  # divergent ridgeless points (N <= d + 1) are reported as inf
                vals.append(math.inf)
        curves[f"lam={lam},tau={tau}"] = vals
    out["kl_gen_data_per_dim_vs_n_over_d"] = dict(n_over_d=grid.tolist(), curves=curves)
    return out


def main():
    rf = rf_findings()
    res = {"rf_dsm": rf, "settings": dict(psi_n=1.0, t=T, lam=LAM, activation="relu"),
           "rf_dsm_flow": rf_flow_findings()}
    try:
        res["ldm"] = ldm_findings()
    except Exception as e:  # keep the RF-DSM findings if the LDM solver is unavailable
        res["ldm_error"] = repr(e)
    (ROOT / "results").mkdir(exist_ok=True)
    (ROOT / "results" / "findings.json").write_text(json.dumps(res, indent=1, default=str))
    lines = ["# Findings of the reference works, reproduced with rmtsolve", "",
             f"RF-DSM, relu, psi_n = 1, t = {T}, lam = {LAM} (test error floor e^-2t = {FLOOR:.4f}):", "",
             "| m | test peak at psi_p | peak test | train < 10% of its p->0 value from psi_p | "
             "test / train / gap at psi_p = 0.5 | test / train / gap at psi_p = 1.5 |", "|---|---|---|---|---|---|"]
    for m, v in rf.items():
        lines.append(f"| {m} | {v['test_peak_psi_p']:.3g} | {v['peak_test_error']:.3g} | "
                     f"{v['train_below_10pct_at_psi_p']:.3g} | {v['test_error_at_psi_p_0_5']:.4f} / "
                     f"{v['train_error_at_psi_p_0_5']:.4f} / {v['gap_at_psi_p_0_5']:.4f} | "
                     f"{v['test_error_at_psi_p_1_5']:.4f} / {v['train_error_at_psi_p_1_5']:.4f} / "
                     f"{v['gap_at_psi_p_1_5']:.4f} |")
    lines += ["", f"RF-DSM gradient flow (p = 4d, m = 1, lam = {LAM}, relu, t = {T}): time of the best "
                  "test error, and the time at which the test error has risen half-way to its converged value:", "",
              "| psi_n | tau_gen | test at tau_gen | converged test | tau_mem (half-way) |", "|---|---|---|---|---|"]
    for pn, v in res["rf_dsm_flow"].items():
        lines.append(f"| {pn} | {v['tau_gen']:.3g} | {v['test_min']:.4f} | {v['test_converged']:.4f} | "
                     f"{v['tau_mem_half']:.3g} |")
    if "ldm" in res:
        lines += ["", f"LDM: excess KL per dimension against d/N, fitted on N/d in {{16, 32, 64, 128}} "
                      f"(finite-d deterministic equivalent, d = {LDM_D}):", "",
                  "| spectrum | slope | intercept |", "|---|---|---|"]
        for spec, v in res["ldm"]["slopes"].items():
            lines.append(f"| {spec} | {v['slope']:.4f} | {v['intercept']:.2e} |")
    (ROOT / "results" / "findings.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    # no options: --help prints what the script does and writes
    argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter).parse_args()
    main()
