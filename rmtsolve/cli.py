"""The ``rmtsolve`` command line (conventions section 3).

Exit status: 0 on success, 2 on bad input (one line naming the parameter and its range),
3 when a solver does not converge.  ``--json`` prints one JSON object; ``--dps N`` solves
with mpmath at N decimal digits (default: double precision).
"""
from __future__ import annotations

import argparse
import math
import sys

import mpmath
import numpy as np

from .errors import ConvergenceError, ParameterError

RF_TABLE_PSI_P = np.round(np.logspace(-1, 1, 17), 4)


class _Parser(argparse.ArgumentParser):
    """argparse with the one-line bad-input message and exit status 2 of conventions section 3."""

    def error(self, message):
        sys.stderr.write(f"rmtsolve: error: {_one_line(message)}\n")
        raise SystemExit(2)


def _one_line(message) -> str:
    """The message on one line: arguments may carry newlines or tabs of their own."""
    return " ".join(str(message).split())


def _real(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a real number, got {text!r}") from None


def _m(text: str) -> float:
    if text.strip().lower() in ("inf", "infinity"):
        return math.inf
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if value == math.inf:  # beyond double range (e.g. 1e400): 1/m is 0 to double precision
        return math.inf
    if not (value >= 1 and value == round(value)):
        raise argparse.ArgumentTypeError(f"must be an integer >= 1 or inf, got {text!r}")
    return value


def _int(low: int):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = low - 1
        if value < low:
            raise argparse.ArgumentTypeError(f"must be an integer >= {low}, got {text!r}")
        return value
    return parse


def _complex(text: str) -> complex:
    try:
        return complex(text.replace(" ", ""))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"must be a complex number in Python syntax such as 1+0.5j, got {text!r}") from None


def _common(p: argparse.ArgumentParser, dps=True):
    p.add_argument("--json", action="store_true", help="print one JSON object")
    if dps:
        p.add_argument("--dps", type=_int(16), default=None,
                       help="mpmath decimal digits (default: double precision)")


def _rf_flags(p: argparse.ArgumentParser, table_default: bool):
    p.add_argument("--psi-n", type=_real, default=1.0, help="n/d > 0 (default 1)")
    p.add_argument("--psi-p", type=_real, default=None,
                   help="p/d > 0" + (" (default: a table over psi_p in [0.1, 10])" if table_default else ""))
    p.add_argument("--m", type=_m, default=1.0, help="noise draws per data point: integer >= 1 or inf (default 1)")
    p.add_argument("--t", type=_real, default=0.5, help="diffusion time t > 0 (default 0.5)")
    p.add_argument("--lam", type=_real, default=1e-3, help="ridge lam >= 0 (default 1e-3)")
    p.add_argument("--activation", default="relu",
                   help="relu, tanh, erf, sigmoid, softplus, gelu, linear, or an expression in x (default relu)")
    p.add_argument("--tau", type=_real, default=None,
                   help="gradient-flow time from B = 0, B(tau) = B_ridge (I - exp(-tau (U + lam))) "
                        "(conventions 1.4 time divided by d; default: converged ridge solution)")
    p.add_argument("--spectrum", default="isotropic", help=_SPECTRUM_HELP)


_SPECTRUM_HELP = ("population spectrum of the data covariance Sigma: isotropic (default), powerlaw:K "
                  "(0 <= K < 1: lambda(u) = (1 - K) u^-K, u uniform on (0, 1]), or file:PATH of "
                  "eigenvalues >= 0 (equally weighted; zeros: data on a subspace; not renormalised)")


def _scaleout_flags(p: argparse.ArgumentParser):
    p.add_argument("--jobs", type=_int(1), default=None, metavar="N",
                   help="run the seeds on N local worker processes (Dask; the distributed extra); "
                        "the serial numbers bit for bit (default: serial)")
    p.add_argument("--scheduler", default=None, metavar="ADDRESS",
                   help="run the seeds on an existing Dask cluster, e.g. tcp://127.0.0.1:8786 (not with --jobs)")


def _ldm_flags(p: argparse.ArgumentParser):
    p.add_argument("--n-over-d", type=_real, default=2.0, help="N/d > 0 (default 2)")
    p.add_argument("--spectrum", default="isotropic", help="isotropic | powerlaw:K | file:PATH")
    p.add_argument("--lam", type=_real, default=0.0, help="ridge lam >= 0 (default 0)")
    p.add_argument("--tau", type=_real, default=None, help="gradient-flow time (default: converged)")
    p.add_argument("--T", type=_int(1), default=1000, help="diffusion steps (default 1000)")
    p.add_argument("--beta-min", type=_real, default=1e-4, help="default 1e-4")
    p.add_argument("--beta-max", type=_real, default=1e-2, help="default 1e-2")
    p.add_argument("--mean-norm", type=_real, default=0.0, help="||mu||^2/d >= 0 (default 0)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="rmtsolve",
        description="Precise high-dimensional learning curves of diffusion models "
                    "(conventions: docs/conventions.md; errors are per dimension, KLs in nats).")
    from . import __version__

    parser.add_argument("--version", action="version", version=f"rmtsolve {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    p = sub.add_parser("rf-dsm", help="asymptotic RF-DSM train/test/score errors",
                       description="Random-features denoising score matching, d -> inf with "
                                   "n = psi_n d, p = psi_p d. y = e^{-t} x + sqrt(1 - e^{-2t}) z, "
                                   "x ~ N(0, Sigma); errors per dimension; test_error_floor = mean of "
                                   "e^{-2t} l/(e^{-2t} l + 1 - e^{-2t}) over the eigenvalues l of Sigma "
                                   "(e^{-2t} for isotropic data); score_error = test_error - test_error_floor; "
                                   "gap = test_error - train_error; test_error_by_eigenvalue for spectra "
                                   "with finitely many distinct eigenvalues. Without --psi-p: a table over psi_p.")
    _rf_flags(p, table_default=True)
    _common(p)

    p = sub.add_parser("ldm", help="linear diffusion model: KL divergences of the DDPM sampler",
                       description="Linear denoisers eps = W_t x + b_t trained on N samples of "
                                   "N(mu, Sigma); exact Gaussian law of the DDPM sampler; KLs in nats "
                                   "per dimension (d -> inf) or with --d the finite-d equivalent.")
    _ldm_flags(p)
    p.add_argument("--d", type=_int(1), default=None, help="finite dimension (default: d -> inf)")
    _common(p)

    p = sub.add_parser("mp", help="Marchenko-Pastur Stieltjes transform and density",
                       description="s(z) = int dmu(x)/(x - z) for the MP law of X^T X/N, X in R^{N x d} "
                                   "iid N(0,1), ratio = d/N (atom 1 - 1/ratio at 0 when ratio > 1); "
                                   "Im s > 0 for Im z > 0; real z inside the support gives s(x + i0).")
    p.add_argument("--ratio", type=_real, default=0.5, help="d/N > 0 (default 0.5)")
    p.add_argument("--z", type=_complex, default=complex(1, 0.5), help="complex z, e.g. 1+0.5j (default)")
    _common(p)

    p = sub.add_parser("coeffs", help="Gaussian-equivalence coefficients of an activation",
                       description="g ~ N(0,1): mu0 = E s(g), mu1 = E g s(g), mustar^2 = E s(g)^2 - mu0^2 - mu1^2; "
                                   "mu_s^2 = E s_t(g)^2 - mu0^2 - e^{-2t} mu1^2 with s_t(a) = E s(e^{-t} a + "
                                   "sqrt(1-e^{-2t}) g), mu_e^2 = mustar^2 - mu_s^2.")
    p.add_argument("--activation", default="relu", help="name or expression in x (default relu)")
    p.add_argument("--t", type=_real, default=0.5, help="diffusion time t > 0 (default 0.5)")
    p.add_argument("--spectrum", default="isotropic",
                   help="spectrum of Sigma (as for rf-dsm): the coefficients are taken at preactivation "
                        "variance v_t = e^{-2t} tr Sigma/d + 1 - e^{-2t} (default isotropic: v_t = 1)")
    _common(p)

    p = sub.add_parser("derive", help="print the derivation of a model's equations",
                       description="The derivation as the sympy code performs it: every symbol defined "
                                   "in words, each step with the equations it establishes, and the "
                                   "final system the solvers evaluate.")
    p.add_argument("model", choices=["rf-dsm", "ldm", "mp"])
    p.add_argument("--latex", action="store_true",
                   help="a complete LaTeX document (compiles with pdflatex) instead of plain text")

    p = sub.add_parser("simulate", help="finite-size simulations of the real models",
                       description="Seeded finite-d simulations (real nonlinear features for rf-dsm; "
                                   "the exact sampler law for ldm), means and standard errors over seeds.")
    ssub = p.add_subparsers(dest="model", required=True, parser_class=_Parser)
    sp_ = ssub.add_parser("rf-dsm", help="simulate RF-DSM with real nonlinear features")
    _rf_flags(sp_, table_default=False)
    sp_.add_argument("--d", type=_int(2), default=200, help="input dimension (default 200)")
    sp_.add_argument("--seeds", type=_int(1), default=3, help="independent repetitions (default 3)")
    sp_.add_argument("--seed", type=_int(0), default=0, help="base random seed (default 0)")
    sp_.add_argument("--generate", type=_int(2), default=None, metavar="K",
                     help="train the score on a time grid t0..T, generate K samples (reverse SDE and "
                          "probability-flow ODE) and report memorized_fraction, generated_kl_gaussian_fit "
                          "and score_error_integral (--t and --tau are then not used)")
    sp_.add_argument("--t0", type=_real, default=0.01, help="with --generate: smallest time (default 0.01)")
    sp_.add_argument("--T", type=_real, default=5.0, help="with --generate: largest time (default 5)")
    sp_.add_argument("--steps", type=_int(2), default=60, help="with --generate: time-grid points (default 60)")
    _scaleout_flags(sp_)
    sp_.add_argument("--backend", default="numpy",
                     help="array library of each seed's linear algebra: numpy (default), cupy, torch or "
                          "array_api_strict (needs the gpu extra); the same numbers up to rounding")
    _common(sp_, dps=False)
    sp_ = ssub.add_parser("ldm", help="simulate the linear diffusion model")
    _ldm_flags(sp_)
    sp_.add_argument("--d", type=_int(1), default=100, help="dimension (default 100)")
    sp_.add_argument("--seeds", type=_int(1), default=3, help="independent repetitions (default 3)")
    sp_.add_argument("--seed", type=_int(0), default=0, help="base random seed (default 0)")
    _scaleout_flags(sp_)
    _common(sp_, dps=False)

    p = sub.add_parser("sweep", help="grids of parameters to CSV / JSON lines",
                       description="Any numeric flag may be a range start:stop:count (linear) or "
                                   "start:stop:count:log; the grid is their product. Output: CSV on "
                                   "stdout by default, or --csv FILE / --jsonl FILE. Columns: parameter "
                                   "names as in the Python API, then the output keys.")
    ssub = p.add_subparsers(dest="model", required=True, parser_class=_Parser)
    for model, flags in SWEEP_FLAGS.items():
        q = ssub.add_parser(model, help=f"sweep {model}")
        for name, (default, _kind) in flags.items():
            q.add_argument("--" + name.replace("_", "-"), default=default, help=f"value or range (default {default})")
        if model == "rf-dsm":
            q.add_argument("--activation", default="relu", help="name or expression in x (default relu)")
            q.add_argument("--spectrum", default="isotropic", help=_SPECTRUM_HELP)
        else:
            q.add_argument("--spectrum", default="isotropic", help="isotropic | powerlaw:K | file:PATH")
        q.add_argument("--csv", default=None, help="write CSV to FILE")
        q.add_argument("--jsonl", default=None, help="write JSON lines to FILE")
        q.add_argument("--quiet", action="store_true", help="no progress display")
        q.add_argument("--comment", action="store_true",
                       help="start the CSV with a line '# rmtsolve VERSION: COMMAND' (read it with "
                            "pandas.read_csv(..., comment='#')); CSV only")
        q.add_argument("--dps", type=_int(16), default=None, help="mpmath decimal digits")

    p = sub.add_parser("optimize", help="the ridge or training time minimising the test error",
                       description="Minimise the theory's test error over the ridge (--over lam: the "
                                   "converged solution, lam in [1e-10, 1e4] and lam = 0) or over the "
                                   "gradient-flow time (--over tau at the given --lam: tau in [1e-3, 1e4] "
                                   "and tau = inf), by a log-grid scan and bounded Brent's method. Reports "
                                   "argmin, test_error, train_error and boundary (lam -> 0, lam -> inf, "
                                   "tau -> 0 or tau -> inf when the optimum sits at an end). Numeric flags "
                                   "may be ranges as in sweep: the rows form the lower envelope.")
    ssub = p.add_subparsers(dest="model", required=True, parser_class=_Parser)
    q = ssub.add_parser("rf-dsm", help="optimise RF-DSM")
    q.add_argument("--over", choices=["lam", "tau"], required=True, help="the parameter to optimise")
    for name, (default, _kind) in OPTIMIZE_FLAGS.items():
        q.add_argument("--" + name.replace("_", "-"), default=default,
                       help=f"value or range start:stop:count[:log] (default {default or '1e-3 with --over tau'})")
    q.add_argument("--activation", default="relu", help="name or expression in x (default relu)")
    q.add_argument("--spectrum", default="isotropic", help=_SPECTRUM_HELP)
    q.add_argument("--json", action="store_true", help="one JSON object (a single point) or JSON lines")
    q.add_argument("--csv", default=None, help="write CSV to FILE")

    p = sub.add_parser("figure", help="draw a named figure (needs the plot extra)",
                       description="Figures: rf-dsm-phase-diagram, rf-dsm-learning-curves, rf-dsm-memorisation, "
                                   "rf-dsm-training-dynamics, ldm-kl, ldm-regularisation. Needs matplotlib: "
                                   "pip install 'rmtsolve[plot]'.")
    p.add_argument("name", help="figure name")
    p.add_argument("--out", required=True, help="output FILE: .png (300 dpi), .pdf or .svg")
    p.add_argument("--csv", default=None, help="also write the plotted numbers to FILE")
    return parser


# name: (default, kind) with kind "real", "int" or "m" (integer or inf).
SWEEP_FLAGS = {
    "rf-dsm": {"psi_n": ("1", "real"), "psi_p": ("0.1:10:50:log", "real"), "m": ("1", "m"),
               "t": ("0.5", "real"), "lam": ("1e-3", "real"), "tau": ("inf", "real")},
    "ldm": {"n_over_d": ("0.25:16:20:log", "real"), "lam": ("0", "real"), "tau": ("inf", "real"),
            "mean_norm": ("0", "real"), "T": ("1000", "int"), "beta_min": ("1e-4", "real"),
            "beta_max": ("1e-2", "real"), "d": ("inf", "int")},
}


OPTIMIZE_FLAGS = {"psi_n": ("1", "real"), "psi_p": ("2", "real"), "m": ("1", "m"), "t": ("0.5", "real"),
                  "lam": (None, "real")}  # lam: 1e-3 with --over tau; not an input with --over lam


def _emit(result: dict, as_json: bool, keys=None, dps=None):
    from ._output import dumps, table

    if as_json:
        print(dumps(result, dps))
        return
    for k in keys or result:
        v = result[k]
        if isinstance(v, dict):
            print(f"{k}: " + ", ".join(f"{a}={b}" for a, b in v.items()))
        elif isinstance(v, np.ndarray) and v.ndim:
            print(table({k: v}))
        elif dps and hasattr(v, "_mpf_"):
            print(f"{k}: {mpmath.nstr(v, dps)}")
        else:
            print(f"{k}: {v}")


def _cmd_rf_dsm(a):
    from .rf_dsm import rf_dsm

    psi_p = RF_TABLE_PSI_P if a.psi_p is None else a.psi_p
    r = rf_dsm(psi_n=a.psi_n, psi_p=psi_p, m=a.m, t=a.t, lam=a.lam, activation=a.activation,
               tau=a.tau, dps=a.dps, spectrum=a.spectrum)
    # the command prints the outputs of conventions section 3.2; the order parameters stay in Python
    out = {k: v for k, v in r.as_dict().items() if k not in ("k0", "k1", "G")}
    if a.psi_p is None and not a.json:
        from ._output import table

        m = "inf" if math.isinf(a.m) else int(a.m)
        floor = float(np.ravel(r.test_error_floor)[0])
        title = (f"RF-DSM learning curve: psi_n={a.psi_n:g}, m={m}, t={a.t:g}, lam={a.lam:g}, "
                 f"activation={out['params']['activation']}, spectrum={out['params']['spectrum']}; "
                 f"p = n at psi_p = {a.psi_n:g}, p = n m at psi_p = {a.psi_n * a.m:g}; "
                 f"test_error_floor = {floor:.6g}")
        print(table({"psi_p": psi_p, **{k: out[k] for k in ("test_error", "train_error", "score_error", "gap")}},
                    title=title))
        return
    _emit(out, a.json, dps=a.dps)


def _cmd_mp(a):
    from .spectral import MarchenkoPastur

    law = MarchenkoPastur(a.ratio)
    r = law.stieltjes(a.z, dps=a.dps)
    out = {"stieltjes": r.value}
    if a.z.imag == 0:
        out["density"] = float(np.asarray(law.density(np.array([a.z.real])))[0])
    out["params"] = {"ratio": a.ratio, "z": a.z, "dps": a.dps, "residual": r.residual}
    _emit(out, a.json, dps=a.dps)


def _cmd_coeffs(a):
    from .coeffs import coefficients

    from .population import parse_spectrum

    spec = parse_spectrum(a.spectrum)
    s2 = spec.s2 if a.dps is None else repr(spec.s2)
    c = coefficients(a.activation, a.t, dps=a.dps, s2=s2)
    out = dict(c.as_dict())
    out["params"] = {"activation": c.activation, "t": a.t, "dps": a.dps, "spectrum": spec.label,
                     "s2": spec.s2, "v_t": math.exp(-2 * a.t) * spec.s2 - math.expm1(-2 * a.t)}
    _emit(out, a.json, dps=a.dps)


def _cmd_derive(a):
    from . import derive

    print(derive.latex(a.model) if a.latex else derive.text(a.model), end="")


def _ldm_kwargs(a) -> dict:
    return dict(n_over_d=a.n_over_d, spectrum=a.spectrum, lam=a.lam, tau=a.tau, T=a.T,
                beta_min=a.beta_min, beta_max=a.beta_max, mean_norm=a.mean_norm)


LDM_KEYS = ("kl_gen_data_per_dim", "kl_data_gen_per_dim", "kl_oracle_per_dim", "excess_kl_per_dim",
            "span_fraction")


def _cmd_ldm(a):
    from .ldm import ldm

    r = ldm(**_ldm_kwargs(a), d=a.d, dps=a.dps).as_dict()
    keys = list(LDM_KEYS) + ["log_kl_data_gen_per_dim"]  # faithful even when the KL overflows
    if a.d is not None:
        keys += ["kl_gen_data", "kl_data_gen", "kl_oracle", "excess_kl"]
    out = {k: r[k] for k in keys if k in r} | {"params": r["params"]}
    _emit(out, a.json, dps=a.dps)


def _cmd_simulate(a):
    if a.model == "rf-dsm":
        from .rf_dsm.sim import simulate_rf_dsm

        if a.psi_p is None:
            raise ParameterError("psi_p", "given (> 0) for a simulation", None)
        if a.generate is not None:
            from .rf_dsm.generate import generate_rf_dsm

            # generation trains the converged ridge score on its own time grid: --tau has no role
            for flag, value, default in (("jobs", a.jobs, None), ("scheduler", a.scheduler, None),
                                         ("backend", a.backend, "numpy"), ("tau", a.tau, None)):
                if value != default:
                    raise ParameterError(flag, "omitted with --generate (generation trains the converged score, "
                                                "serially on numpy)", value)

            g = generate_rf_dsm(psi_n=a.psi_n, psi_p=a.psi_p, m=a.m, lam=a.lam, K=a.generate,
                                activation=a.activation, spectrum=a.spectrum, d=a.d, seeds=a.seeds, seed=a.seed,
                                t0=a.t0, T=a.T, steps=a.steps).as_dict()
            _emit({k: v for k, v in g.items() if k not in ("times", "score_error", "empirical_score_error")}, a.json)
            return
        r = simulate_rf_dsm(psi_n=a.psi_n, psi_p=a.psi_p, m=a.m, t=a.t, lam=a.lam,
                            activation=a.activation, d=a.d, seeds=a.seeds, seed=a.seed, tau=a.tau,
                            spectrum=a.spectrum, jobs=a.jobs, scheduler=a.scheduler, backend=a.backend)
    else:
        from .ldm_sim import simulate_ldm

        r = simulate_ldm(**_ldm_kwargs(a), d=a.d, seeds=a.seeds, seed=a.seed, jobs=a.jobs,
                         scheduler=a.scheduler)
    _emit(r.as_dict(), a.json)


def _cmd_sweep(a):
    from . import sweep

    flags = SWEEP_FLAGS[a.model]
    if a.comment and a.jsonl:
        raise ParameterError("--comment", "used with CSV output (a JSON lines file has no comment lines)", "--jsonl")
    ranges = {name: sweep.parse_value(name, getattr(a, name), integer=kind in ("int", "m"),
                                      allow_inf=kind == "m" or name in ("tau", "d", "psi_p"))
              for name, (_d, kind) in flags.items()}
    constants = {}
    if a.model == "rf-dsm":
        from .population import parse_spectrum
        from .rf_dsm import rf_dsm
        from .rf_dsm.equations import system_for

        spec = parse_spectrum(a.spectrum)
        if spec.kind == "powerlaw":
            spec.law()  # K < 1
        system = system_for(spec)
        constants = {"activation": a.activation, "spectrum": spec.label}
        by_names = []
        if spec.discrete and spec.kind != "isotropic":
            by_names = [f"test_error_by_eigenvalue[{float(v)!r}]" for v in system.eigenvalues]
        outputs = ["test_error", "train_error", "score_error", "gap", "test_error_floor", "empirical_score_error"] \
            + by_names + ["converged"]

        def solve(**cols):
            # on_error="nan": a failing or divergent point (lam = 0 at p = n m) is a NaN row
            # with converged False; the rest of the block is solved as usual.
            r = rf_dsm(**cols, activation=a.activation, dps=a.dps, spectrum=spec, on_error="nan")
            res = r.as_dict() | {"converged": np.broadcast_to(r.converged, cols["psi_n"].shape)}
            if by_names:
                by = np.asarray(r.test_error_by_eigenvalue).reshape(-1, len(by_names))
                res |= {name: by[:, i] for i, name in enumerate(by_names)}
            res["test_error_floor"] = np.broadcast_to(r.test_error_floor, cols["psi_n"].shape)
            return {k: res[k] for k in outputs}
    else:
        from .ldm import ldm
        from .population import parse_spectrum

        constants = {"spectrum": parse_spectrum(a.spectrum).label}
        outputs = list(LDM_KEYS) + ["converged"]

        def solve(**cols):
            # one vectorised call per (T, d); divergent or failing points are NaN rows with
            # converged false (conventions section 3)
            res = {k: np.full(len(cols["lam"]), np.nan) for k in LDM_KEYS}
            res["converged"] = np.zeros(len(cols["lam"]), bool)
            for T, d in sorted(set(zip(cols["T"].tolist(), cols["d"].tolist()))):
                idx = np.flatnonzero((cols["T"] == T) & (cols["d"] == d))
                r = ldm(n_over_d=cols["n_over_d"][idx], lam=cols["lam"][idx], tau=cols["tau"][idx],
                        mean_norm=cols["mean_norm"][idx], beta_min=cols["beta_min"][idx],
                        beta_max=cols["beta_max"][idx], T=int(T), d=None if math.isinf(d) else int(d),
                        spectrum=a.spectrum, dps=a.dps, on_error="nan")
                for k in LDM_KEYS:
                    res[k][idx] = np.asarray(getattr(r, k), dtype=float).ravel()
                res["converged"][idx] = np.asarray(r.converged).ravel()
            return res

    fh, fmt = sweep.open_output(a.csv, a.jsonl)
    if a.comment:
        import shlex

        from . import __version__

        # off by default: the conventions put the column header on the first line
        fh.write(f"# rmtsolve {__version__}: {shlex.join(['rmtsolve', *a.argv])}\n")
    try:
        sweep.run(solve, ranges, outputs, fh, fmt, progress=not a.quiet and sys.stderr.isatty(),
                  integer_columns=[n for n, (_d, kind) in flags.items() if kind in ("int", "m")],
                  constants=constants)
    except KeyboardInterrupt:
        sys.stderr.write("rmtsolve: interrupted; the rows written so far are complete\n")
        return 130
    finally:
        if fh is not sys.stdout:
            fh.close()
    return 0


def check_writable(path: str, flag: str) -> None:
    """Refuse an output file that cannot be written, before any computing."""
    import os

    existed = os.path.exists(path)
    try:
        with open(path, "a"):
            pass
    except OSError as exc:
        raise ParameterError(flag, f"a writable file ({exc.strerror})", path) from None
    if not existed:
        os.remove(path)


def _cmd_optimize(a):
    from . import sweep
    from .rf_dsm import optimize_rf_dsm

    # every flag is parsed (a malformed one is exit status 2 even where it is unused) ...
    if a.over == "lam" and a.lam is not None:  # as in the Python API
        raise ParameterError("lam", "omitted with --over lam (it is the optimised variable)", a.lam)
    a.lam = "1e-3" if a.lam is None else a.lam
    ranges = {name: sweep.parse_value(name, getattr(a, name), integer=kind == "m", allow_inf=kind == "m")
              for name, (_d, kind) in OPTIMIZE_FLAGS.items()}
    if a.over == "lam":  # the optimised variable is not an input
        del ranges["lam"]
    outputs = ["argmin", "test_error", "train_error", "boundary", "converged"]
    if all(len(v) == 1 for v in ranges.values()) and not a.csv:
        r = optimize_rf_dsm(over=a.over, **{k: float(v[0]) for k, v in ranges.items()}, activation=a.activation,
                            spectrum=a.spectrum).as_dict()
        _emit({k: r[k] for k in ["over"] + outputs} | {"params": r["params"]}, a.json)
        return 0

    def solve(**cols):
        r = optimize_rf_dsm(over=a.over, **cols, activation=a.activation, spectrum=a.spectrum)
        return {k: getattr(r, k) for k in outputs}

    fh, fmt = sweep.open_output(a.csv, None)
    try:
        sweep.run(solve, ranges, outputs, fh, fmt if not a.json else "jsonl", progress=sys.stderr.isatty(),
                  integer_columns=["m"], constants={"over": a.over, "activation": a.activation, "spectrum": a.spectrum},
                  block=50)
    finally:
        if fh is not sys.stdout:
            fh.close()
    return 0


def _cmd_figure(a):
    from .figures import check_name, draw

    check_name(a.name, a.out)
    check_writable(a.out, "--out")
    if a.csv:
        check_writable(a.csv, "--csv")
    draw(a.name, a.out, a.csv, progress=True)
    print(a.out)


COMMANDS = {"rf-dsm": _cmd_rf_dsm, "mp": _cmd_mp, "coeffs": _cmd_coeffs, "derive": _cmd_derive,
            "ldm": _cmd_ldm, "simulate": _cmd_simulate, "sweep": _cmd_sweep, "optimize": _cmd_optimize,
            "figure": _cmd_figure}


def _attach_negative_values(argv: list[str]) -> list[str]:
    """``--lam -1e-3`` -> ``--lam=-1e-3``: argparse takes a value like -1e-3 or -inf for an
    option, so the range check (and its one-line message) would never see it."""
    out, i = [], 0
    while i < len(argv):
        tok = argv[i]
        nxt = argv[i + 1] if i + 1 < len(argv) else None
        if tok.startswith("--") and "=" not in tok and nxt is not None and nxt.startswith("-") and _numeric(nxt):
            out.append(f"{tok}={nxt}")
            i += 2
            continue
        out.append(tok)
        i += 1
    return out


def _numeric(text: str) -> bool:
    try:
        float(text.split(":")[0])
    except ValueError:
        return False
    return True


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(_attach_negative_values(argv))
    args.argv = argv
    try:
        status = COMMANDS[args.command](args)
    except ParameterError as e:
        sys.stderr.write(f"rmtsolve: error: {_one_line(e)}\n")
        return 2
    except ConvergenceError as e:
        sys.stderr.write(f"rmtsolve: did not converge: {_one_line(e)}\n")
        return 3
    except BrokenPipeError:
        return 0
    return status or 0


if __name__ == "__main__":
    raise SystemExit(main())
