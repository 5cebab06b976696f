"""Fuzz campaign over every public function and command-line command of rmtsolve.

    python validation/fuzz.py --examples 20000          # writes validation/results/fuzz.{json,md}
    python validation/fuzz.py --examples 300 --seed 7 --only rf_dsm cli_rf_dsm --report-dir /tmp/fz
    python validation/fuzz.py --list                    # the targets and their weights

hypothesis draws the inputs with a random seed (not derandomised; the seed is printed and written
in the report, and --seed repeats a run) over the whole domain, valid and invalid: typical values,
edge values (0, -0, negative, 1e-300, 1e300, nan, +-inf; 1e400 and friends on the command line),
wrong types (strings, complex numbers, None, bools, ragged lists, arrays of mismatched shapes),
activations by name, as expressions (good and bad: 'x/0', '0**-1+x', 'exp(x**2)', syntax errors)
and as callables, every spectrum syntax ('isotropic', 'powerlaw:K', arrays with zeros, 'file:'
paths that exist, are empty or garbage, or do not exist), dps, on_error and tau.  The public
functions are rmtsolve.__all__; the commands are those `rmtsolve --help` lists.  Each target gets
a share of --examples by its weight (cheap targets get more); hypothesis runs only its generate
phase, and the property never fails: it classifies and records every example as

  clean       it returned; every reported number is finite and within its bounds, or NaN exactly
              where the result says converged is False (or +inf where the docs say so)
  documented  API: rmtsolve.ParameterError or rmtsolve.ConvergenceError with a one-line message;
              CLI: exit status 2 with one line 'rmtsolve: error: ...' on stderr, or 3 with one
              line 'rmtsolve: did not converge: ...' (argparse usage errors included: the
              project's parser prints them on one line)
  defect      anything else: another exception (a traceback), a hang (no answer within
              --time-limit seconds, SIGALRM), a silent non-finite or out-of-bounds value, an
              input the docs say must be refused that was accepted (strings for rf_dsm's numeric
              arguments, NaN or -inf on the command line), a multi-line error message or stderr
              (Python warnings are shown as a fresh process shows them), an exit status other
              than 0, 2 or 3, a MemoryError (the address space is limited to --memory-gb so that
              a giant allocation shows up here instead of taking the machine down)

Bounds checked (docs/conventions.md): rf_dsm test_error >= test_error_floor (1 - 1e-12),
train_error >= 0, score_error = test - floor, gap = test - train, test_error_by_eigenvalue above
its floors and averaging to test_error, k0, k1, G in [0, 1], empirical_score_error >= 0, outputs
of the broadcast shape; ldm KLs >= 0 (kl_data_gen +inf only where log_kl_data_gen_per_dim says it
overflows), excess = gen - oracle, span_fraction in [0, 1] (1 when the data span R^d), per-step
errors >= 0 with T entries, totals = d per-dim; simulations finite, errors >= 0, standard errors
NaN exactly for one seed; coefficients finite, mustar, mu_s, mu_e >= 0, mu_s^2 <= mustar^2,
mu_s^2 + mu_e^2 = mustar^2, name = expression and dps = double to 1e-8; spectral laws
Im s(z) Im z >= 0, density >= 0 and finite, generalised MP with one atom = scaled MP; sweeps:
every CSV/JSONL row (NaN rows must say converged false), the row count, and the first row
against the single call.  Two extra targets compare precisions on random valid points:
rf_dsm_flow_mp (gradient flow, dps=30 against double, relative 1e-10 on test and train error
and the test error per eigenvalue)
and ldm_dps (dps=30 against double, relative 1e-10 plus the documented absolute rounding, 1e-12 for
the KLs and 1e-14 otherwise).

The CLI runs in-process (rmtsolve.cli.main(argv), stdout and stderr captured, SystemExit caught);
every file is written under a temporary directory, whose fixture files the report lists.  CI
stays deterministic: this script is not part of the test suite.
"""
from __future__ import annotations

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")  # the machine is shared: keep every example on one core

import argparse  # noqa: E402
import atexit  # noqa: E402
import bisect  # noqa: E402
import collections  # noqa: E402
import contextlib  # noqa: E402
import csv  # noqa: E402
import dataclasses  # noqa: E402
import faulthandler  # noqa: E402
import fractions  # noqa: E402
import hashlib  # noqa: E402
import io  # noqa: E402
import itertools  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import pathlib  # noqa: E402
import platform  # noqa: E402
import random  # noqa: E402
import re  # noqa: E402
import resource  # noqa: E402
import shlex  # noqa: E402
import shutil  # noqa: E402
import signal  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import traceback  # noqa: E402
import warnings  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT.parent))

import hypothesis  # noqa: E402
import mpmath  # noqa: E402
import numpy as np  # noqa: E402
from hypothesis import HealthCheck, Phase, Verbosity, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import rmtsolve  # noqa: E402
from rmtsolve import ConvergenceError, ParameterError  # noqa: E402

NAN, INF = math.nan, math.inf
SLOW_SECONDS = 5.0  # examples slower than this are listed (not a defect unless over --time-limit)
MAX_DEFECTS = 50  # defect signatures with a reproducer in the report


# ================================================================ reproducers

_REPR: dict[int, str] = {}  # id -> source text of the prebuilt objects the strategies hand out
_KEEP: list = []  # keeps those objects alive, so that their ids stay theirs


def named(obj, text: str):
    _REPR[id(obj)] = text
    _KEEP.append(obj)
    return obj


class Fn:
    """A callable with a readable repr (activations and weights given as Python callables)."""

    def __init__(self, f, text: str):
        self.f, self.text, self.__name__ = f, text, text

    def __call__(self, *args):
        return self.f(*args)

    def __repr__(self):
        return self.text


class Opaque:
    """An object of no numeric meaning."""

    def __repr__(self):
        return "object()"


def fmt(v) -> str:
    """Python source for a value (nan, inf, arrays and the prebuilt objects included)."""
    if id(v) in _REPR:
        return _REPR[id(v)]
    if isinstance(v, bool) or v is None:
        return repr(v)
    if isinstance(v, float):
        return repr(v) if math.isfinite(v) else f"float('{v}')"
    if isinstance(v, complex):
        return f"complex({fmt(v.real)}, {fmt(v.imag)})"
    if isinstance(v, np.ndarray):
        return f"np.array({fmt(v.tolist())}, dtype={v.dtype.name!r})"
    if isinstance(v, np.generic):
        return f"np.{type(v).__name__}({fmt(v.item())})"
    if isinstance(v, list):
        return "[" + ", ".join(fmt(x) for x in v) + "]"
    if isinstance(v, tuple):
        return "(" + ", ".join(fmt(x) for x in v) + ("," if len(v) == 1 else "") + ")"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{fmt(k)}: {fmt(x)}" for k, x in v.items()) + "}"
    if isinstance(v, fractions.Fraction):
        return f"Fraction({v.numerator}, {v.denominator})"
    return repr(v)


def call_repr(fname: str, args=(), kwargs=None) -> str:
    parts = [fmt(a) for a in args] + [f"{k}={fmt(v)}" for k, v in (kwargs or {}).items()]
    return f"{fname}({', '.join(parts)})"


# ================================================================ strategy helpers

def weighted(*pairs):
    """One of the strategies, chosen with the given integer weights."""
    cum = list(itertools.accumulate(w for w, _ in pairs))
    strategies = [s for _, s in pairs]
    return st.integers(0, cum[-1] - 1).flatmap(lambda i: strategies[bisect.bisect_right(cum, i)])


def logu(lo: float, hi: float):
    """Log-uniform on [lo, hi], rounded to 4 significant digits (short reproducers)."""
    return st.floats(math.log10(lo), math.log10(hi)).map(lambda e: float(f"{10.0 ** e:.4g}"))


def unif(lo: float, hi: float):
    return st.floats(lo, hi).map(lambda x: float(f"{x:.4g}"))


EDGE = [0.0, -0.0, -1.0, 1e-300, -1e-300, 1e300, -1e300, NAN, INF, -INF, 5e-324,
        1.7976931348623157e308, 1e-12, 1e12, 1e13, 0.5, 1.0, 2.0]
BAD = [named(x, t) if t else x for x, t in (
    ("1", None), ("abc", None), ("", None), (None, None), (1 + 1j, None), (0j, None), ([1, 2], None),
    ([[1], [2, 3]], None), ({}, None), (b"1", None), (np.array([1.0, 2.0, 3.0]), None),
    (np.array([[1.0], [2.0]]), None), (True, None), (False, None), (np.float32(0.5), None),
    (np.int64(3), None), (Opaque(), "object()"), (np.array([]), None), ([], None), ("inf", None),
    (np.array([1 + 2j]), None), (fractions.Fraction(1, 3), None), (10**400, None), (-(10**400), None),
    (mpmath.mpf("0.5"), "mpmath.mpf('0.5')"))]


def num(typical, *, arrays=True, w_typ=90, w_edge=5, w_any=2, w_bad=3):
    """A numeric argument: mostly typical, sometimes an edge value, any float or a wrong type;
    with ``arrays`` sometimes a list or array of typical values (for broadcasting)."""
    parts = [(w_typ, typical), (w_edge, st.sampled_from(EDGE)), (w_any, st.floats()), (w_bad, st.sampled_from(BAD))]
    if arrays:
        parts.append((10, weighted(
            (3, st.lists(typical, min_size=1, max_size=4)),
            (3, st.lists(typical, min_size=1, max_size=4).map(np.array)),
            (1, st.lists(typical, min_size=1, max_size=3).map(lambda v: np.array(v)[:, None])),
            (1, st.lists(weighted((4, typical), (1, st.sampled_from(EDGE))), min_size=1, max_size=4).map(np.array)))))
    return weighted(*parts)


PSI = weighted((8, logu(0.05, 20)), (1, logu(1e-6, 1e6)), (1, st.sampled_from([1.0, 2.0, 0.5, 3.0])))
PSI_P = weighted((9, PSI), (1, st.just(INF)))
T_TYP = weighted((8, logu(1e-3, 10)), (1, logu(1e-9, 1e3)), (1, st.sampled_from([0.5, 0.1, 1.0])))
LAM_TYP = weighted((2, st.just(0.0)), (7, logu(1e-8, 1e3)), (1, st.sampled_from([1e-3, 1e-2, 1.0])))
TAU_TYP = weighted((8, logu(1e-2, 1e3)), (1, logu(1e-8, 1e8)), (1, st.just(INF)))
M_TYP = weighted((6, st.integers(1, 6)), (2, st.just(INF)), (1, st.integers(7, 10**6)), (1, st.sampled_from([1.0, 2.0, 3.0])))
M_API = weighted((85, M_TYP), (15, st.sampled_from([0, -1, 2.5, 0.5, NAN, -INF, "2", "inf", None, 1 + 0j, 1e300, 2**64,
                                                      True, [1, 2], np.array([1, 2, 3])])))
DPS_VALID = weighted((6, st.integers(16, 30)), (3, st.integers(31, 60)), (1, st.sampled_from([16, 50])))
DPS_BAD = st.sampled_from([15, 0, -1, 1001, 10**6, 20.5, 30.0, "30", "abc", True, NAN, INF, 1e300, 1 + 1j, [30],
                           np.int64(30), np.float64(30.0), named(mpmath.mpf(30), "mpmath.mpf(30)")])


# ---------------------------------------------------------------- activations

NAMES = ["relu", "tanh", "erf", "sigmoid", "softplus", "gelu", "linear"]
NAME_VARIANTS = ["RELU", " tanh ", "Relu", "GELU", "swish", "elu", "silu", "Linear", "sigmoid "]
GOOD_EXPR = ["x**3/3 + tanh(x)", "Max(x, 0)", "max(x, 0)", "abs(x)", "Abs(x)", "x", "2*x", "x^2", "x**2 - 1",
             "sin(x)", "cos(x)", "exp(-x**2)", "erf(x/2) + x", "Min(x, 1)", "Heaviside(x)", "sign(x)",
             "Piecewise((x, x > 0), (0, True))", "tanh(1000*x)", "x/(1 + abs(x))", "log(1 + exp(x))",
             "sqrt(1 + x**2)", "atan(x)", "asinh(x)", "erfc(x)", "exp(x)", "1", "0", "0*x", "pi*x + E", "x**4",
             "cosh(x)", "sinh(x)", "tan(x)", "x**50", "sin(100*x)", "Max(x, 0) - Max(x - 1, 0)",
             "Heaviside(x - 0.5)", "1e-300*x", "1e300*x", "tanh(x)**2", "exp(-abs(x))", "min(x, 0.3)",
             "Piecewise((x**2, x < 1), (2*x - 1, True))", "x**1000", "sign(x)*sqrt(abs(x))", "tanh(x) + 1e-8*x**3",
             "0.5*x + 0.5*abs(x)", "exp(x/3)", "sinh(x)/cosh(x)", "erf(x)"]
BAD_EXPR = ["x/0", "0**-1+x", "exp(x**2)", "y", "x +", "(x", "", "   ", "__import__('os')", "x.real", "log(x)",
            "sqrt(x)", "1/x", "x**1001", "9**9**9", "exp(exp(x))", "lambda: 1", "x; 1", "f(x)", "x**x", "1e400*x",
            "nan", "oo", "zoo", "x[0]", "'x'", "x if x else 0", "[x]", "(x, x)", "x == 0", "x**-1",
            "Piecewise((x, y > 0))", "Max()", "exp(1000*x)", "x**(1/2)", "log(0)*x", "tanh(x, x)", "x\x00",
            "x" * 3000, "1" + "+x" * 800, "abs(x)**-1", "x > 0", "True", "exp(x)**exp(x)", "sin(x)**-2",
            "1/(x - 0.5)", "log(abs(x))", "Heaviside(x)/x", "2**1001", "x**2**2", "erf", "tanh()", "x.__class__"]


def _expr_tree(depth: int):
    leaf = weighted((4, st.just("x")), (1, st.integers(-3, 5).map(str)), (1, unif(-3, 3).map(repr)))
    if depth == 0:
        return leaf
    sub = _expr_tree(depth - 1)
    funcs = ["exp", "log", "sqrt", "sin", "cos", "tan", "sinh", "cosh", "tanh", "asinh", "atan", "erf", "erfc",
             "Abs", "abs", "Heaviside", "sign"]
    return weighted(
        (3, leaf),
        (2, st.tuples(sub, st.sampled_from(["+", "-", "*", "/"]), sub).map(lambda t: f"({t[0]} {t[1]} {t[2]})")),
        (1, st.tuples(sub, st.integers(-3, 5)).map(lambda t: f"({t[0]})**{t[1]}")),
        (2, st.tuples(st.sampled_from(funcs), sub).map(lambda t: f"{t[0]}({t[1]})")),
        (1, st.tuples(st.sampled_from(["Max", "Min"]), sub, sub).map(lambda t: f"{t[0]}({t[1]}, {t[2]})")))


RANDOM_EXPR = _expr_tree(3)

CALLABLES = [named(Fn(f, t), t) for f, t in (
    (np.tanh, "np.tanh"),
    (lambda x: np.maximum(x, 0), "lambda x: np.maximum(x, 0)"),
    (math.tanh, "math.tanh"),
    (lambda x: x / (1 + abs(x)), "lambda x: x / (1 + abs(x))"),
    (lambda x: np.full(np.shape(x), np.nan), "lambda x: np.full(np.shape(x), np.nan)"),
    (lambda x: np.exp(np.asarray(x) ** 2), "lambda x: np.exp(np.asarray(x) ** 2)"),
    (lambda x: "a", "lambda x: 'a'"),
    (lambda x: [1, 2], "lambda x: [1, 2]"),
    (lambda x: 1.0, "lambda x: 1.0"),
    (lambda x: x, "lambda x: x"),
    (lambda x: np.sin(50 * np.asarray(x)), "lambda x: np.sin(50 * np.asarray(x))"),
    (lambda x: np.asarray(x) ** 2, "lambda x: np.asarray(x) ** 2"),
    (lambda x: mpmath.tanh(x) if isinstance(x, mpmath.mpf) else np.tanh(x),
     "lambda x: mpmath.tanh(x) if isinstance(x, mpmath.mpf) else np.tanh(x)"),
    (lambda x: np.where(np.asarray(x) > 0, 1e300, -1e300), "lambda x: np.where(np.asarray(x) > 0, 1e300, -1e300)"),
    (lambda x: np.asarray(x)[:1], "lambda x: np.asarray(x)[:1]"),
    (lambda x: None, "lambda x: None"),
)]
ACT_OBJECTS = []  # filled by _prebuild() (resolve_activation needs sympy for expressions)

ACT_NAMES = weighted((8, st.sampled_from(NAMES)), (1, st.sampled_from(NAME_VARIANTS)))
ACT_CLI = weighted((55, ACT_NAMES), (25, st.sampled_from(GOOD_EXPR)), (12, st.sampled_from(BAD_EXPR)),
                   (5, RANDOM_EXPR), (3, st.text(max_size=12)))


def act_api():
    return weighted((80, ACT_CLI), (10, st.sampled_from(CALLABLES)), (5, st.deferred(lambda: st.sampled_from(ACT_OBJECTS))),
                    (5, st.sampled_from([None, 3, 1.5, [1], b"relu", Opaque(), {"name": "relu"}])))


SMOOTH_NAMES = ["tanh", "erf", "sigmoid", "softplus", "gelu", "linear", "relu"]


# ---------------------------------------------------------------- spectra

class Fixture:
    """Temporary files for file: spectra and output paths (everything the CLI writes goes here)."""

    FILES = {
        "good.txt": "1 2 3\n", "two.txt": "0.5 1.5\n", "zeros.txt": "0 0 1 1\n", "allzero.txt": "0 0\n",
        "empty.txt": "", "garbage.txt": "abc def\n", "neg.txt": "-1 2\n", "nan.txt": "nan 1\n",
        "inf.txt": "inf 1\n", "huge.txt": "1e300 1\n", "tiny.txt": "1e-300 1\n", "comma.txt": "1,2,3\n",
        "one.txt": "2\n", "many.txt": "0.1 0.2 0.5 1 2 3 4 5\n", "d5.txt": "0.5 1 1 2 3\n",
        "spaces.txt": "  \n\t \n", "subspace.txt": "0 4 4 4\n", "wide.txt": "1e-200 1e200\n",
    }
    BINARY = {"binary.bin": b"\xff\xfe\x00\x81"}

    def __init__(self):
        self.dir = pathlib.Path(tempfile.mkdtemp(prefix="rmtsolve-fuzz-"))
        for name, text in self.FILES.items():
            (self.dir / name).write_text(text)
        for name, data in self.BINARY.items():
            (self.dir / name).write_bytes(data)
        (self.dir / "cache").mkdir()
        (self.dir / "out").mkdir()
        self.counter = itertools.count()

    def path(self, name: str) -> str:
        return str(self.dir / name)

    def out_path(self, suffix: str) -> str:
        return str(self.dir / "out" / f"o{next(self.counter)}{suffix}")

    def bad_out(self, suffix: str) -> list[str]:
        return [str(self.dir / "no" / "such" / f"x{suffix}"), str(self.dir), str(self.dir / "good.txt" / f"x{suffix}")]

    def describe(self) -> dict:
        d = {name: text for name, text in self.FILES.items()} | {n: repr(b) for n, b in self.BINARY.items()}
        return {"directory": str(self.dir), "files": d,
                "also": "missing.txt (does not exist), the directory itself, out/ (fresh output files)"}


FIX = Fixture()
atexit.register(shutil.rmtree, FIX.dir, True)
SPEC_FILE_NAMES = list(Fixture.FILES) + list(Fixture.BINARY) + ["missing.txt", ""]


def spec_str():
    files = st.sampled_from(SPEC_FILE_NAMES).map(lambda n: "file:" + (FIX.path(n) if n else str(FIX.dir)))
    fixed = st.sampled_from(["isotropic", " isotropic ", "ISOTROPIC", "powerlaw:0", "powerlaw:0.5", "powerlaw:1",
                             "powerlaw:1.5", "powerlaw:-1", "powerlaw:nan", "powerlaw:inf", "powerlaw:", "powerlaw:abc",
                             "powerlaw:1e-300", "powerlaw:0.999999", "powerlaw: 0.5", "power:0.5", "file:", "",
                             "gaussian", "powerlaw:0.9999999999999999", "powerlaw:1e400", "file:/dev/null"])
    return weighted((30, st.just("isotropic")), (25, unif(0, 1.5).map(lambda k: f"powerlaw:{k:g}")),
                    (20, files), (20, fixed), (5, st.text(max_size=10)))


EIG = weighted((6, unif(0, 5)), (2, st.just(0.0)), (1, st.sampled_from([1e-300, 1e300, -1.0, NAN, INF, 1e-200, 1e200])),
               (1, logu(1e-6, 1e6)))
SPEC_ARRAY = weighted((6, st.lists(EIG, min_size=1, max_size=6)), (3, st.lists(EIG, min_size=1, max_size=6).map(np.array)),
                      (1, st.sampled_from([[], np.zeros((2, 2)), ["a"], [1 + 1j], [[1, 2], [3]], np.array([[1.0, 2.0]])])))
SPECTRUM_OBJECTS = []  # filled by _prebuild()


def spec_api():
    return weighted((50, spec_str()), (35, SPEC_ARRAY), (10, st.deferred(lambda: st.sampled_from(SPECTRUM_OBJECTS))),
                    (5, st.sampled_from([None, 3, 1.5, b"isotropic", Opaque(), {"kind": "isotropic"}])))


def _prebuild():
    # import everything up front: a SIGALRM in the middle of a first import would leave a
    # half-initialised module behind and turn every later example into a false defect
    import importlib

    for name in rmtsolve.__all__:
        getattr(rmtsolve, name)
    for mod in ("rmtsolve.cli", "rmtsolve.sweep", "rmtsolve.figures", "rmtsolve.rf_dsm.generate",
                "rmtsolve.rf_dsm.optimize", "rmtsolve.rf_dsm.flow", "rmtsolve.ldm_sim", "rmtsolve._output",
                "scipy.optimize", "scipy.special", "sympy", "sympy.parsing.sympy_parser"):
        importlib.import_module(mod)
    for name in ["tanh", "relu", "x**3/3 + tanh(x)", "abs(x)"]:
        ACT_OBJECTS.append(named(rmtsolve.resolve_activation(name), f"rmtsolve.resolve_activation({name!r})"))
    for s in ["isotropic", "powerlaw:0.5", "powerlaw:0", "powerlaw:1.2", [0, 1, 3], [2.0], [1e-3, 1e3],
              "file:" + FIX.path("good.txt")]:
        SPECTRUM_OBJECTS.append(named(rmtsolve.parse_spectrum(s), f"rmtsolve.parse_spectrum({fmt(s)})"))


def is_continuum(spec) -> bool:
    """A power law with K > 0 (thousands of quadrature nodes with dps)."""
    try:
        s = rmtsolve.parse_spectrum(spec)
    except Exception:
        return False
    return s.kind == "powerlaw" and s.K > 0


def n_distinct(spec) -> int:
    try:
        s = rmtsolve.parse_spectrum(spec)
    except Exception:
        return 0
    if s.kind == "isotropic":
        return 1
    if s.kind == "powerlaw":
        return 1 if s.K == 0 else 10**6
    return int(np.unique(s.values).size)


# ================================================================ number checks

def _scalar(v):
    if isinstance(v, dict) and set(v) == {"re", "im"}:
        return complex(_scalar(v["re"]), _scalar(v["im"]))
    if isinstance(v, mpmath.mpc) or isinstance(v, (complex, np.complexfloating)):
        return complex(v)
    if isinstance(v, str):
        if v in ("inf", "-inf", "nan"):
            return float(v)
        raise TypeError(f"non-numeric string {v!r}")
    if v is None:
        return NAN
    return float(v)


def arr(x) -> np.ndarray:
    """Float (or complex) ndarray of a result value: numpy, mpmath, JSON lists and strings."""
    if isinstance(x, np.ndarray) and x.dtype != object:
        return x.astype(complex if np.iscomplexobj(x) else float)
    a = np.asarray(x, dtype=object)
    flat = [_scalar(v) for v in a.ravel()]
    kind = complex if any(isinstance(v, complex) for v in flat) else float
    return np.array(flat, dtype=kind).reshape(a.shape)


class Checks:
    """Collects the problems of one result (out-of-bounds or silent non-finite values)."""

    def __init__(self):
        self.problems: list[str] = []

    def add(self, msg: str):
        if len(self.problems) < 20:
            self.problems.append(msg)

    @staticmethod
    def _first(v, bad):
        v = np.broadcast_to(np.asarray(v), np.shape(bad))
        return v[bad].flat[0]

    def finite(self, name, v, where=None):
        v = np.asarray(v)
        bad = ~np.isfinite(v)
        if where is not None:
            bad = bad & np.broadcast_to(where, bad.shape)
        if bad.any():
            self.add(f"{name} is not finite ({self._first(v, bad)!r}){'' if where is None else ' at a converged point'}")

    def nan_where(self, name, v, unconverged):
        v = np.asarray(v)
        bad = np.broadcast_to(unconverged, v.shape) & ~np.isnan(v)
        if bad.any():
            self.add(f"{name} is a number ({self._first(v, bad)!r}) at a point marked converged=False")

    def ge(self, name, v, lo, tol=0.0, where=None, what=None):
        v = np.asarray(v, dtype=float)
        lo_b = np.broadcast_to(np.asarray(lo, dtype=float), np.broadcast_shapes(v.shape, np.shape(lo)))
        vb = np.broadcast_to(v, lo_b.shape)
        with np.errstate(invalid="ignore"):
            bad = np.isfinite(vb) & (vb < lo_b - tol)
        if where is not None:
            bad &= np.broadcast_to(where, bad.shape)
        if bad.any():
            i = np.argwhere(bad)[0]
            self.add(f"{name} = {vb[tuple(i)]!r} below {what or 'its lower bound'} {lo_b[tuple(i)]!r}")

    def le(self, name, v, hi, tol=0.0, where=None, what=None):
        v = np.asarray(v, dtype=float)
        hi_b = np.broadcast_to(np.asarray(hi, dtype=float), np.broadcast_shapes(v.shape, np.shape(hi)))
        vb = np.broadcast_to(v, hi_b.shape)
        with np.errstate(invalid="ignore"):
            bad = np.isfinite(vb) & (vb > hi_b + tol)
        if where is not None:
            bad &= np.broadcast_to(where, bad.shape)
        if bad.any():
            i = np.argwhere(bad)[0]
            self.add(f"{name} = {vb[tuple(i)]!r} above {what or 'its upper bound'} {hi_b[tuple(i)]!r}")

    def close(self, name, a, b, rtol, atol=0.0, where=None, what=None):
        a, b = np.broadcast_arrays(np.asarray(a), np.asarray(b))
        with np.errstate(invalid="ignore", over="ignore"):
            bad = np.isfinite(a) & np.isfinite(b) & ~(np.abs(a - b) <= atol + rtol * np.maximum(np.abs(a), np.abs(b)))
        if where is not None:
            bad &= np.broadcast_to(where, bad.shape)
        if bad.any():
            i = np.argwhere(bad)[0] if bad.ndim else ()
            self.add(f"{name} = {a[tuple(i)]!r} differs from {what or 'its reference'} {b[tuple(i)]!r} "
                     f"(relative {abs(a[tuple(i)] - b[tuple(i)]) / max(abs(a[tuple(i)]), abs(b[tuple(i)]), 1e-300):.2g})")


# ---------------------------------------------------------------- RF-DSM

def _ese_overflows(d: dict, shape) -> np.ndarray:
    """Where 2 E[ell]/expm1(2t), a term of empirical_score_error, passes the double range: +inf
    there is documented (conventions 1.2)."""
    p = d.get("params") or {}
    try:
        s2 = float(p.get("s2", 1.0))
        t = np.broadcast_to(np.asarray(p["t"], dtype=float), shape)
    except (KeyError, TypeError, ValueError):
        return np.zeros(shape, dtype=bool)
    with np.errstate(all="ignore"):
        return 2 * s2 / np.expm1(2 * t) > 1e306


def check_rf(c: Checks, d: dict, conv, *, flow=False, shape=None, order=None):
    """RF-DSM outputs (dict of arrays: test_error, train_error, score_error, gap,
    test_error_floor, empirical_score_error, optional by-eigenvalue dict)."""
    te = arr(d["test_error"])
    if shape is not None and te.shape != tuple(shape):
        c.add(f"test_error has shape {te.shape}, the inputs broadcast to {tuple(shape)}")
    conv = np.broadcast_to(np.asarray(conv, dtype=bool), te.shape)
    unconv = ~conv
    vals = {}
    for k in ("test_error", "train_error", "score_error", "gap", "empirical_score_error"):
        if k not in d or d[k] is None:
            c.add(f"{k} missing")
            continue
        v = arr(d[k])
        if v.shape != te.shape:
            c.add(f"{k} has shape {v.shape}, test_error {te.shape}")
            continue
        vals[k] = v
        allowed_inf = _ese_overflows(d, v.shape) & np.isposinf(v) if k == "empirical_score_error" else False
        c.finite(k, v, where=conv & ~allowed_inf)
        c.nan_where(k, v, unconv)
    fl = arr(d["test_error_floor"])
    c.finite("test_error_floor", fl)
    c.ge("test_error_floor", fl, 0.0)
    c.le("test_error_floor", fl, 1.0, 1e-12)
    c.ge("test_error", te, fl * (1 - 1e-12), where=conv, what="test_error_floor (1 - 1e-12)")
    if "train_error" in vals:
        c.ge("train_error", vals["train_error"], 0.0, where=conv)
        if "gap" in vals:
            c.close("gap", vals["gap"], te - vals["train_error"], 1e-12, 1e-13, where=conv, what="test - train")
    if "score_error" in vals:
        c.close("score_error", vals["score_error"], te - fl, 1e-12, 1e-13, where=conv, what="test - floor")
    if "empirical_score_error" in vals:
        c.ge("empirical_score_error", vals["empirical_score_error"], -1e-9 * np.maximum(1, np.abs(te)), where=conv,
             what="0 (it is a mean squared distance)")
    by = d.get("test_error_by_eigenvalue")
    if by is not None:
        b = arr(by["test_error"])
        lam, w, bfl = arr(by["eigenvalue"]), arr(by["weight"]), arr(by["test_error_floor"])
        if b.shape[-1:] != lam.shape or b.shape[:-1] != te.shape:
            c.add(f"test_error_by_eigenvalue has shape {b.shape} for {lam.size} eigenvalues and test_error {te.shape}")
        else:
            cb = conv[..., None]
            c.finite("test_error_by_eigenvalue", b, where=cb)
            c.nan_where("test_error_by_eigenvalue", b, ~cb)
            c.ge("test_error_by_eigenvalue", b, bfl * (1 - 1e-12), where=cb, what="its floor (1 - 1e-12)")
            c.close("sum(weight * test_error_by_eigenvalue)", (b * w).sum(-1), te, 1e-9, 1e-14, where=conv,
                    what="test_error")
            c.finite("eigenvalue", lam)
            c.ge("eigenvalue", lam, 0.0)
            c.close("sum(weight)", w.sum(), 1.0, 1e-12)
            if np.any(np.diff(lam) <= 0):
                c.add(f"eigenvalues not ascending and distinct: {lam.tolist()[:6]}")
    if order is not None:  # (k0, k1, G, residual) of an API result
        k0, k1, G, residual = order
        for name, v in (("k0", k0), ("k1", k1), ("G", G)):
            v = arr(v)
            if flow:  # documented NaN at a finite tau (conventions 3.1); where a value is given, in [0, 1]
                given = conv & ~np.isnan(v)
                c.ge(name, v, 0.0, 1e-12, where=given)
                c.le(name, v, 1.0, 1e-12, where=given)
                continue
            c.finite(name, v, where=conv)
            c.ge(name, v, 0.0, 1e-12, where=conv)
            c.le(name, v, 1.0, 1e-12, where=conv)
        r = float(residual)
        if not (math.isfinite(r) and r >= 0):
            c.add(f"residual = {r!r} is not a finite number >= 0")


def rf_args_shape(kw):
    shapes = [np.shape(kw[k]) for k in ("psi_n", "psi_p", "m", "t", "lam") if k in kw]
    if kw.get("tau") is not None:
        shapes.append(np.shape(kw["tau"]))
    return np.broadcast_shapes(*shapes)


def check_rf_result(r, kw, c: Checks):
    tau = kw.get("tau")
    flow = tau is not None and not np.all(np.isinf(np.asarray(tau, dtype=float)))
    d = r.as_dict()
    d["test_error_by_eigenvalue"] = d.get("test_error_by_eigenvalue")
    try:
        shape = rf_args_shape(kw)
    except ValueError:
        shape = None
    check_rf(c, d, r.converged, flow=flow, shape=shape, order=(r.k0, r.k1, r.G, r.residual))
    if kw.get("on_error", "raise") == "raise" and not np.all(r.converged):
        c.add("converged is False under on_error='raise'")
    for name in ("psi_n", "psi_p", "m", "t", "lam", "tau"):
        v = kw.get(name)
        if isinstance(v, (str, bytes, complex)) or (isinstance(v, np.ndarray) and (v.dtype.kind in "USc")):
            c.add(f"accepted {type(v).__name__} {fmt(v)} for {name} (docs 3.1: strings and complex numbers "
                  "raise ParameterError)")


# ---------------------------------------------------------------- LDM

def check_ldm(c: Checks, d: dict, *, T=None, d_dim=None, n_over_d=None, has_errors=True, sim=False):
    kgd, kdg, ko, ex, sf = (arr(d[k]) for k in ("kl_gen_data_per_dim", "kl_data_gen_per_dim", "kl_oracle_per_dim",
                                                  "excess_kl_per_dim", "span_fraction"))
    log = arr(d["log_kl_data_gen_per_dim"]) if "log_kl_data_gen_per_dim" in d else None
    c.finite("kl_gen_data_per_dim", kgd)
    c.ge("kl_gen_data_per_dim", kgd, 0.0, 1e-12)
    c.finite("kl_oracle_per_dim", ko)
    c.ge("kl_oracle_per_dim", ko, 0.0, 1e-12)
    c.ge("kl_data_gen_per_dim", kdg, 0.0, 1e-12)
    if np.any(np.isnan(kdg)) or np.any(kdg == -INF):
        c.add(f"kl_data_gen_per_dim is {kdg[np.isnan(kdg) | (kdg == -INF)].flat[0]!r}")
    if log is not None and sim:
        c.finite("log_kl_data_gen_per_dim", log, where=np.isfinite(kdg) & (kdg > 0))
    elif log is not None:
        over = np.isinf(kdg)
        if np.any(over & ~(np.isfinite(log) & (log > 700))):
            c.add("kl_data_gen_per_dim is inf where log_kl_data_gen_per_dim does not say it overflows "
                  f"(log = {log[over].flat[0]!r})")
        ok = np.isfinite(kdg) & (kdg > 1e-290)
        with np.errstate(divide="ignore", invalid="ignore"):
            c.close("log_kl_data_gen_per_dim", log, np.log(np.where(ok, kdg, 1.0)), 0.0, 1e-6, where=ok,
                    what="log(kl_data_gen_per_dim)")
        c.finite("log_kl_data_gen_per_dim", log, where=kdg > 0)
    c.finite("excess_kl_per_dim", ex)
    c.close("excess_kl_per_dim", ex, kgd - ko, 0.0,
            1e-8 * np.maximum(1.0, np.maximum(np.abs(kgd), np.abs(ko))) if not sim else
            1e-6 * np.maximum(1.0, np.maximum(np.abs(kgd), np.abs(ko))),
            what="kl_gen_data - kl_oracle")
    c.finite("span_fraction", sf)
    c.ge("span_fraction", sf, 0.0, 1e-12)
    c.le("span_fraction", sf, 1.0, 1e-12)
    if n_over_d is not None and not sim:
        try:
            nd = np.broadcast_to(np.asarray(n_over_d, dtype=float), sf.shape)
            full = nd >= 1 if d_dim is None else (np.round(nd * d_dim) - 1 >= d_dim)
            c.close("span_fraction", sf, 1.0, 0.0, 1e-9, where=full, what="1 (the centred data span R^d)")
        except (ValueError, TypeError):
            pass
    if d_dim is not None:
        for k in ("kl_gen_data", "kl_data_gen", "kl_oracle", "excess_kl"):
            if k in d and d[k] is not None:
                tot, per = arr(d[k]), arr(d[k + "_per_dim"])
                with np.errstate(over="ignore", invalid="ignore"):
                    ref = per * d_dim
                c.close(k, tot, ref, 1e-12, where=np.isfinite(ref), what=f"d * {k}_per_dim")
                if np.any(np.isinf(tot) & np.isfinite(ref)):
                    c.add(f"{k} is inf but d * per-dim is finite")
    if has_errors:
        for k in ("test_error_t", "train_error_t"):
            v = arr(d[k])
            if T is not None and v.shape[-1:] != (T,):
                c.add(f"{k} has shape {v.shape}, expected a last axis of length T = {T}")
            c.finite(k, v)
            c.ge(k, v, 0.0, 1e-12)


def check_ldm_result(r, kw, c: Checks):
    d = {k: getattr(r, k) for k in ("kl_gen_data_per_dim", "kl_data_gen_per_dim", "kl_oracle_per_dim",
                                     "excess_kl_per_dim", "span_fraction", "log_kl_data_gen_per_dim",
                                     "test_error_t", "train_error_t", "kl_gen_data", "kl_data_gen", "kl_oracle",
                                     "excess_kl")}
    T = kw.get("T", 1000)
    check_ldm(c, d, T=int(T) if isinstance(T, (int, float, np.integer)) and not isinstance(T, bool) else None,
              d_dim=kw.get("d"), n_over_d=kw.get("n_over_d"))


def check_stderr(c: Checks, name, v, se, seeds):
    v, se = arr(v), arr(se)
    if seeds == 1:
        bad = ~np.isnan(se)
        if bad.any():
            c.add(f"{name}_stderr = {se[bad].flat[0]!r} with one seed (documented: NaN)")
    else:
        c.finite(name + "_stderr", se, where=np.isfinite(v))
        c.ge(name + "_stderr", se, 0.0)


def check_sim_rf(c: Checks, d: dict, seeds: int):
    for k in ("test_error", "train_error", "score_error", "gap", "empirical_score_error", "test_error_floor"):
        c.finite(k, arr(d[k]))
    for k in ("test_error", "train_error", "empirical_score_error"):
        c.ge(k, arr(d[k]), 0.0)
    c.ge("test_error_floor", arr(d["test_error_floor"]), 0.0)
    c.le("test_error_floor", arr(d["test_error_floor"]), 1.0, 1e-12)
    c.close("gap", arr(d["gap"]), arr(d["test_error"]) - arr(d["train_error"]), 1e-9, 1e-13, what="test - train")
    c.close("score_error", arr(d["score_error"]), arr(d["test_error"]) - arr(d["test_error_floor"]), 1e-9, 1e-13,
            what="test - floor")
    for k in ("test_error", "train_error", "score_error", "gap", "empirical_score_error"):
        check_stderr(c, k, d[k], d[k + "_stderr"], seeds)
    by = d.get("test_error_by_eigenvalue")
    if by is not None:
        b = arr(by["test_error"])
        c.finite("test_error_by_eigenvalue", b)
        c.ge("test_error_by_eigenvalue", b, 0.0)
        check_stderr(c, "test_error_by_eigenvalue", b, by["stderr"], seeds)
        c.close("sum(weight)", arr(by["weight"]).sum(), 1.0, 1e-12)


def check_sim_ldm(c: Checks, d: dict, seeds: int, T=None):
    check_ldm(c, d, T=T, sim=True)
    for k in ("kl_gen_data_per_dim", "kl_oracle_per_dim", "excess_kl_per_dim", "span_fraction"):
        check_stderr(c, k, d[k], d[k + "_stderr"], seeds)
    v, se = arr(d["kl_data_gen_per_dim"]), arr(d["kl_data_gen_per_dim_stderr"])
    check_stderr(c, "kl_data_gen_per_dim", np.where(np.isinf(v), NAN, v), np.where(np.isinf(v), NAN if seeds > 1 else NAN, se)
                 if seeds == 1 else np.where(np.isinf(v), 0.0, se), seeds)
    for k in ("test_error_t", "train_error_t"):
        check_stderr(c, k, d[k], d[k + "_stderr"], seeds)


def check_generation(c: Checks, d: dict, seeds: int, K=None, dim=None, singular=False):
    for s in ("sde", "ode"):
        mf = arr(d["memorized_fraction"][s])
        c.finite(f"memorized_fraction[{s}]", mf)
        c.ge(f"memorized_fraction[{s}]", mf, 0.0)
        c.le(f"memorized_fraction[{s}]", mf, 1.0)
        kl = arr(d["generated_kl_gaussian_fit"][s])
        inf_ok = singular or (K is not None and dim is not None and K <= dim)
        if not inf_ok:
            c.finite(f"generated_kl_gaussian_fit[{s}]", kl)
        elif np.any(np.isnan(kl)):
            c.add(f"generated_kl_gaussian_fit[{s}] is NaN")
        c.ge(f"generated_kl_gaussian_fit[{s}]", kl, 0.0, 1e-12)
        check_stderr(c, f"memorized_fraction[{s}]", mf, d["memorized_fraction_stderr"][s], seeds)
    c.finite("score_error_integral", arr(d["score_error_integral"]))
    th = arr(d["score_error_integral_theory"])
    c.finite("score_error_integral_theory", th)
    c.ge("score_error_integral_theory", th, 0.0)
    check_stderr(c, "score_error_integral", d["score_error_integral"], d["score_error_integral_stderr"], seeds)


# ---------------------------------------------------------------- coefficients and spectral laws

def check_coeffs(c: Checks, d: dict):
    v = {k: arr(d[k]) for k in ("mu0", "mu1", "mustar", "mu_s", "mu_e")}
    for k, x in v.items():
        c.finite(k, x)
    for k in ("mustar", "mu_s", "mu_e"):
        c.ge(k, v[k], 0.0)
    ms2, s2, e2 = v["mustar"] ** 2, v["mu_s"] ** 2, v["mu_e"] ** 2
    c.le("mu_s^2", s2, ms2 * (1 + 1e-9) + 1e-300, what="mustar^2 (1 + 1e-9)")
    c.close("mu_s^2 + mu_e^2", s2 + e2, ms2, 1e-9, 1e-300, what="mustar^2")
    return v


def check_stieltjes(c: Checks, z, s, density=None, name="stieltjes"):
    z, s = np.broadcast_arrays(arr(z).astype(complex), arr(s).astype(complex))
    c.finite(name, s)
    with np.errstate(invalid="ignore"):
        prod = s.imag * np.sign(z.imag)
    c.ge(f"Im {name} * sign(Im z)", prod, -1e-12 * np.abs(s), what="0")
    real = z.imag == 0
    c.ge(f"Im {name} at real z", np.where(real, s.imag, 0.0), -1e-9 * np.abs(s), what="0")
    if density is not None:
        dn = np.broadcast_to(arr(density), z.shape)
        c.finite("density", dn, where=real)
        c.ge("density", dn, -1e-9 * (1 + np.abs(s)), where=real, what="0")


# ================================================================ targets

class _CheckerError(Exception):
    """An exception inside fuzz.py's own checks (a harness bug, not a defect of rmtsolve)."""


@contextlib.contextmanager
def checking():
    """Run result checks: their own exceptions are harness errors, kept apart from the defects."""
    try:
        yield
    except Exception as e:  # noqa: BLE001
        raise _CheckerError(f"{type(e).__name__}: {e}") from e


@dataclasses.dataclass
class Outcome:
    kind: str  # "clean", "documented", "defect"
    reason: str = ""
    detail: str = ""
    where: str = ""
    note: str = ""


CLEAN = Outcome("clean")


@dataclasses.dataclass
class Target:
    name: str
    kind: str  # "api", "cli", "compare"
    weight: float
    strategy: object
    run: object  # example -> Outcome (may raise: the caller classifies)
    repro: object  # example -> str
    limit_factor: float = 1.0
    fixed: int | None = None  # examples independent of --examples (the precision comparisons)
    doc: str = ""


TARGETS: list[Target] = []


def target(name, kind, weight, strategy, repro, limit_factor=1.0, fixed=None, doc=""):
    def deco(fn):
        TARGETS.append(Target(name, kind, weight, strategy, fn, repro, limit_factor, fixed, doc))
        return fn
    return deco


def api_outcome(c: Checks) -> Outcome:
    if c.problems:
        return Outcome("defect", "out of bounds / silent non-finite", c.problems[0],
                       note="; ".join(c.problems[1:4]))
    return CLEAN


def kw_repro(fname):
    return lambda ex: call_repr(f"rmtsolve.{fname}", (), ex)


# ---------------------------------------------------------------- rf_dsm

@st.composite
def rf_dsm_kwargs(draw):
    dps_kind = draw(weighted((85, st.just("none")), (10, st.just("valid")), (5, st.just("bad"))))
    arrays = dps_kind != "valid"
    kw = {"psi_n": draw(num(PSI, arrays=arrays)), "psi_p": draw(num(PSI_P, arrays=arrays)),
          "m": draw(weighted((85, M_TYP), (15, M_API)) if arrays else M_TYP),
          "t": draw(num(T_TYP, arrays=arrays)), "lam": draw(num(LAM_TYP, arrays=arrays))}
    if draw(st.integers(0, 9)) < 6:
        kw["activation"] = draw(act_api())
    if dps_kind == "valid":
        tau = draw(st.sampled_from([None, None, INF]))
    else:
        tau = draw(weighted((50, st.none()), (50, num(TAU_TYP, arrays=True))))
    if tau is not None or draw(st.booleans()):
        kw["tau"] = tau
    if draw(st.integers(0, 9)) < 5:
        kw["spectrum"] = draw(spec_api())
    if dps_kind == "valid":
        kw["dps"] = draw(DPS_VALID)
    elif dps_kind == "bad":
        kw["dps"] = draw(DPS_BAD)
    oe = draw(weighted((60, st.just(None)), (15, st.just("raise")), (20, st.just("nan")),
                       (5, st.sampled_from(["NaN", "ignore", "", None, 1, "warn"]))))
    if oe is not None:
        kw["on_error"] = oe
    return kw


@target("rf_dsm", "api", 12, rf_dsm_kwargs(), kw_repro("rf_dsm"))
def run_rf_dsm(kw):
    r = rmtsolve.rf_dsm(**kw)
    c = Checks()
    with checking():
        check_rf_result(r, kw, c)
    return api_outcome(c)


# ---------------------------------------------------------------- ldm

@st.composite
def ldm_kwargs(draw, allow_dps=True):
    dps_kind = draw(weighted((88, st.just("none")), (4, st.just("valid")), (8, st.just("bad")))) if allow_dps else "none"
    arrays = dps_kind != "valid"
    kw = {"n_over_d": draw(num(weighted((8, logu(0.05, 20)), (1, st.just(1.0)), (1, logu(1e-6, 1e6))), arrays=arrays))}
    d = draw(weighted((50, st.none()), (35, st.integers(1, 60)), (5, st.integers(61, 400)),
                      (5, st.sampled_from([0, -1, 2.5, "10", True, NAN, INF, 10.0])),
                      (2, st.sampled_from([10**6, 10**7, 10**9, 10**12]))))
    if d is not None or draw(st.booleans()):
        kw["d"] = d
    spec = draw(weighted((35, st.just(None)), (65, spec_api())))
    if spec is not None:
        if isinstance(d, int) and not isinstance(d, bool) and 1 <= d <= 60 and draw(st.booleans()):
            spec = draw(st.lists(weighted((12, logu(0.1, 10)), (1, EIG)), min_size=d, max_size=d))
        elif draw(st.booleans()):
            spec = draw(st.lists(logu(0.01, 100), min_size=1, max_size=4))  # LDM needs eigenvalues > 0
        kw["spectrum"] = spec
    for name, typ in (("lam", LAM_TYP), ("mean_norm", weighted((3, st.just(0.0)), (7, logu(1e-4, 1e2)))),
                      ("beta_min", logu(1e-5, 1e-3)), ("beta_max", logu(1e-3, 0.05))):
        if draw(st.integers(0, 9)) < 5:
            kw[name] = draw(num(typ, arrays=arrays, w_edge=6, w_any=2, w_bad=3))
    if draw(st.booleans()):
        kw["tau"] = draw(weighted((20, st.none()), (80, num(TAU_TYP, arrays=arrays))))
    if dps_kind == "valid":
        kw["T"] = draw(st.integers(1, 10))
    elif draw(st.integers(0, 9)) < 7:
        kw["T"] = draw(weighted((60, st.integers(1, 200)), (20, st.sampled_from([1000, 1])),
                                (10, st.sampled_from([0, -1, 2.5, "10", True, NAN, 10.0, np.int64(5)])),
                                (2, st.sampled_from([10**9, 10**12])), (1, st.just(10**7))))
    if dps_kind == "valid":
        kw["dps"] = draw(st.integers(16, 30))
        # keep it to seconds: few distinct eigenvalues, scalars (checked in run)
    elif dps_kind == "bad":
        kw["dps"] = draw(DPS_BAD)
    return kw


def _ldm_dps_affordable(kw) -> bool:
    d = kw.get("d")
    spec = kw.get("spectrum", "isotropic")
    nd = n_distinct(spec) if not (isinstance(spec, str) and spec.startswith("powerlaw") and d) else (d or 10**6)
    return nd <= 3 and (d is None or (isinstance(d, int) and d <= 60))


@target("ldm", "api", 7, ldm_kwargs(), kw_repro("ldm"))
def run_ldm(kw):
    if kw.get("dps") is not None and isinstance(kw.get("dps"), int) and 16 <= kw["dps"] <= 1000 \
            and not _ldm_dps_affordable(kw):
        kw = dict(kw)
        kw.pop("dps")  # a valid dps on many eigenvalues runs for minutes (ldm_dps covers dps)
    r = rmtsolve.ldm(**kw)
    c = Checks()
    with checking():
        check_ldm_result(r, kw, c)
    return api_outcome(c)


# ---------------------------------------------------------------- simulations

SIM_PSI = weighted((9, logu(0.05, 3)), (1, st.sampled_from([1.0, 2.0])))
SIM_D = weighted((90, st.integers(2, 40)), (6, st.sampled_from([0, 1, -3, 2.5, "20", True, NAN, INF, 20.0])),
                 (4, st.sampled_from([10**6, 10**9, 10**12])))


@st.composite
def sim_rf_kwargs(draw):
    kw = {"psi_n": draw(num(SIM_PSI, arrays=False, w_bad=3)),
          "psi_p": draw(weighted((9, num(SIM_PSI, arrays=False, w_bad=3)), (1, st.sampled_from([1e6, 1e9, INF])))),
          "m": draw(weighted((85, st.integers(1, 4)), (15, M_API))),
          "t": draw(num(T_TYP, arrays=False, w_bad=3)), "lam": draw(num(LAM_TYP, arrays=False, w_bad=3))}
    if draw(st.booleans()):
        kw["activation"] = draw(weighted((85, st.sampled_from(NAMES + GOOD_EXPR[:8])), (15, act_api())))
    if draw(st.booleans()):
        kw["d"] = draw(SIM_D)
    else:
        kw["d"] = draw(st.integers(2, 30))
    kw["seeds"] = draw(weighted((9, st.integers(1, 2)), (1, st.sampled_from([0, -1, 1.5, "2", True]))))
    if draw(st.booleans()):
        kw["seed"] = draw(weighted((9, st.integers(0, 2**32)), (1, st.sampled_from([-1, 2**200, 1.5, "x", None]))))
    if draw(st.integers(0, 9)) < 3:
        kw["tau"] = draw(weighted((2, st.none()), (8, num(TAU_TYP, arrays=False, w_bad=3))))
    if draw(st.integers(0, 9)) < 4:
        kw["spectrum"] = draw(spec_api())
    if draw(st.integers(0, 9)) < 1:
        kw["n_test"] = draw(st.sampled_from([1, 10, 0, -1, None, 2.5, 100]))
    return kw


@target("simulate_rf_dsm", "api", 4, sim_rf_kwargs(), kw_repro("simulate_rf_dsm"))
def run_sim_rf(kw):
    r = rmtsolve.simulate_rf_dsm(**kw)
    c = Checks()
    with checking():
        check_sim_rf(c, r.as_dict(), int(kw["seeds"]))
        n, p = r.params["n"], r.params["p"]
        if n != max(1, round(float(kw["psi_n"]) * kw["d"])) or p != max(1, round(float(kw["psi_p"]) * kw["d"])):
            c.add(f"params n, p = {n}, {p} are not round(psi d)")
    return api_outcome(c)


@st.composite
def sim_ldm_kwargs(draw):
    kw = ldm_kwargs(allow_dps=False)
    kw = draw(kw)
    for k in list(kw):
        if isinstance(kw[k], (list, np.ndarray)) and k != "spectrum":
            kw[k] = draw(num(logu(0.1, 5), arrays=False))  # simulations take scalars
    kw["d"] = draw(SIM_D)
    if kw.get("spectrum") is not None and isinstance(kw["d"], int) and 1 <= kw["d"] <= 40 and draw(st.booleans()):
        kw["spectrum"] = draw(st.lists(weighted((6, logu(0.1, 10)), (1, EIG)), min_size=kw["d"], max_size=kw["d"]))
    kw["seeds"] = draw(weighted((9, st.integers(1, 2)), (1, st.sampled_from([0, -1, 1.5, "2", True]))))
    if draw(st.booleans()):
        kw["seed"] = draw(weighted((9, st.integers(0, 2**32)), (1, st.sampled_from([-1, 2**200, 1.5, "x", None]))))
    if "T" not in kw or (isinstance(kw["T"], int) and 200 < kw["T"] < 10**6):
        kw["T"] = draw(st.integers(1, 200))
    return kw


@target("simulate_ldm", "api", 4, sim_ldm_kwargs(), kw_repro("simulate_ldm"))
def run_sim_ldm(kw):
    r = rmtsolve.simulate_ldm(**kw)
    c = Checks()
    with checking():
        check_sim_ldm(c, r.as_dict(), int(kw["seeds"]), T=int(kw.get("T", 1000)))
    return api_outcome(c)


# ---------------------------------------------------------------- feature_spectrum, integral, optimum

Z_TYP = weighted((4, st.tuples(unif(-1, 20), logu(1e-6, 10)).map(lambda t: complex(*t))),
                 (3, unif(-1, 20)), (1, st.just(0.0)), (1, st.tuples(unif(-1, 20), logu(1e-6, 10)).map(lambda t: complex(t[0], -t[1]))),
                 (1, st.sampled_from([1e300, -1e300, 1e-300, complex(1, 1e300), complex(1, 1e-300)])))


@st.composite
def feature_spectrum_args(draw):
    z = draw(weighted((6, Z_TYP), (3, st.lists(Z_TYP, min_size=1, max_size=6).map(np.array)),
                      (1, st.sampled_from([NAN, INF, complex(NAN, 1), "1+1j", None, [], np.zeros((2, 0)), [[1, 2], [3]]]))))
    kw = {"psi_n": draw(num(PSI, arrays=False)), "psi_p": draw(num(PSI, arrays=False)),
          "m": draw(weighted((85, M_TYP), (15, M_API))), "t": draw(num(T_TYP, arrays=False))}
    if draw(st.booleans()):
        kw["activation"] = draw(act_api())
    if draw(st.booleans()):
        kw["spectrum"] = draw(spec_api())
    return (z, kw)


@target("feature_spectrum", "api", 5, feature_spectrum_args(),
        lambda ex: call_repr("rmtsolve.feature_spectrum", (ex[0],), ex[1]))
def run_feature_spectrum(ex):
    z, kw = ex
    r = rmtsolve.feature_spectrum(z, **kw)
    c = Checks()
    with checking():
        _check_feature_spectrum(c, z, r)
    return api_outcome(c)


def _check_feature_spectrum(c, z, r):
    zz = np.asarray(z, dtype=complex)
    s = np.asarray(r.stieltjes)
    if s.shape != zz.shape:
        c.add(f"stieltjes has shape {s.shape}, z {zz.shape}")
    else:
        check_stieltjes(c, zz, s, None, "stieltjes")
        dn = np.broadcast_to(arr(r.density), zz.shape)
        real = zz.imag == 0
        c.finite("density", dn, where=real)
        c.ge("density", dn, -1e-9 * (1 + np.abs(s)), where=real, what="0")
        c.nan_where("density", dn, ~real)
    c.ge("atom", r.atom, 0.0)
    c.le("atom", r.atom, 1.0)
    if not (math.isfinite(r.residual) and 0 <= r.residual <= 1e-6):
        c.add(f"residual = {r.residual!r} (not a finite number in [0, 1e-6]: an unconverged value returned?)")


WEIGHTS = [None] * 6 + [named(Fn(f, t), t) for f, t in (
    (lambda t: np.ones_like(t), "lambda t: np.ones_like(t)"),
    (lambda t: 1 / t, "lambda t: 1 / t"),
    (lambda t: np.exp(-t), "lambda t: np.exp(-t)"),
    (lambda t: np.full(np.shape(t), np.nan), "lambda t: np.full(np.shape(t), np.nan)"),
    (lambda t: 1.0, "lambda t: 1.0"),
    (lambda t: np.inf * t, "lambda t: np.inf * t"),
)] + ["1/t", 3.0]


@st.composite
def integral_kwargs(draw):
    kw = {"psi_n": draw(num(PSI, arrays=False)), "psi_p": draw(num(PSI, arrays=False)),
          "m": draw(weighted((85, M_TYP), (15, M_API))), "lam": draw(num(LAM_TYP, arrays=False)),
          "t0": draw(num(weighted((8, logu(1e-3, 0.5)), (2, logu(1e-8, 10))), arrays=False)),
          "T": draw(num(weighted((8, logu(1, 10)), (2, logu(1e-3, 1e3))), arrays=False))}
    if draw(st.booleans()):
        kw["activation"] = draw(weighted((85, st.sampled_from(NAMES + GOOD_EXPR[:6])), (15, act_api())))
    if draw(st.integers(0, 9)) < 3:
        kw["weight"] = draw(st.sampled_from(WEIGHTS))
    if draw(st.integers(0, 9)) < 2:
        kw["nodes"] = draw(st.sampled_from([1, 2, 8, 24, 48, 0, -1, 2.5, "24", 10**7]))
    if draw(st.integers(0, 9)) < 2:
        kw["rtol"] = draw(st.sampled_from([1e-3, 1e-7, 1e-12, 0.0, -1.0, NAN, INF, "1e-7"]))
    if draw(st.integers(0, 9)) < 3:
        kw["spectrum"] = draw(spec_api())
    return kw


@target("score_error_integral", "api", 3, integral_kwargs(), kw_repro("score_error_integral"))
def run_integral(kw):
    r = rmtsolve.score_error_integral(**kw)
    c = Checks()
    with checking():
        _check_integral(c, kw, r)
    return api_outcome(c)


def _check_integral(c, kw, r):
    c.finite("value", r.value)
    if kw.get("weight") is None or kw.get("weight") in WEIGHTS[6:9]:  # positive weights
        c.ge("value", r.value, -1e-12, what="0 (score_error >= 0, positive weight)")
    c.finite("error", r.error)
    c.ge("error", r.error, 0.0)
    rtol = kw.get("rtol", 1e-7)
    if isinstance(rtol, float) and rtol > 0 and math.isfinite(r.value):
        c.le("error", r.error, rtol * max(abs(r.value), 1e-300) * (1 + 1e-9), what="rtol * |value|")


@st.composite
def optimize_kwargs(draw):
    over = draw(weighted((70, st.just("lam")), (25, st.just("tau")), (5, st.sampled_from(["ridge", "", None, "LAM"]))))
    arrays = over == "lam"
    kw = {"over": over, "psi_n": draw(num(PSI, arrays=arrays, w_bad=3)), "psi_p": draw(num(PSI_P, arrays=arrays, w_bad=3)),
          "m": draw(M_TYP), "t": draw(num(T_TYP, arrays=False, w_bad=3))}
    if over == "tau" or draw(st.integers(0, 9)) < 1:
        kw["lam"] = draw(num(LAM_TYP, arrays=False, w_bad=3))
    if draw(st.booleans()):
        kw["activation"] = draw(weighted((85, st.sampled_from(NAMES)), (15, act_api())))
    if draw(st.integers(0, 9)) < 3:
        spec = draw(spec_api())
        if over == "tau" and is_continuum(spec):
            spec = "isotropic"
        kw["spectrum"] = spec
    return kw


@target("optimize_rf_dsm", "api", 2, optimize_kwargs(), kw_repro("optimize_rf_dsm"), limit_factor=2.0)
def run_optimize(kw):
    r = rmtsolve.optimize_rf_dsm(**kw)
    c = Checks()
    with checking():
        _check_optimum(c, r)
    return api_outcome(c)


def _check_optimum(c, r):
    conv = np.asarray(r.converged, dtype=bool)
    am, te, tr = arr(r.argmin), arr(r.test_error), arr(r.train_error)
    for name, v in (("argmin", am), ("test_error", te), ("train_error", tr)):
        c.nan_where(name, v, ~conv)
    c.ge("argmin", am, 0.0, where=conv)
    c.finite("test_error", te, where=conv)
    c.finite("train_error", tr, where=conv)
    c.ge("test_error", te, 0.0, where=conv)
    c.ge("train_error", tr, 0.0, where=conv)
    b = np.asarray(r.boundary, dtype=object)
    allowed = {"", "lam -> 0", "lam -> inf", "tau -> 0", "tau -> inf"}
    for v in b.ravel():
        if v not in allowed:
            c.add(f"boundary = {v!r} not one of {sorted(allowed)}")
    amb = np.broadcast_to(am, b.shape)
    for i in np.ndindex(b.shape):
        if b[i] == "lam -> 0" and amb[i] != 0 or b[i] in ("lam -> inf", "tau -> inf") and amb[i] != INF:
            c.add(f"boundary {b[i]!r} with argmin {amb[i]!r}")


# ---------------------------------------------------------------- coefficients, activations, spectra

EQUIVALENT = {"relu": "Max(x, 0)", "tanh": "tanh(x)", "linear": "x", "erf": "erf(x)", "sigmoid": "1/(1 + exp(-x))",
              "softplus": "log(1 + exp(x))"}


@st.composite
def coeffs_args(draw):
    act = draw(act_api())
    t = draw(num(T_TYP, arrays=False))
    kw = {}
    dps_kind = draw(weighted((80, st.just("none")), (14, st.just("valid")), (6, st.just("bad"))))
    if dps_kind == "valid":
        kw["dps"] = draw(DPS_VALID)
    elif dps_kind == "bad":
        kw["dps"] = draw(DPS_BAD)
    if draw(st.integers(0, 9)) < 3:
        s2 = draw(num(weighted((8, logu(0.01, 10)), (2, st.sampled_from([1.0, 0.0]))), arrays=False))
        kw["s2"] = repr(s2) if kw.get("dps") is not None and isinstance(s2, float) and draw(st.booleans()) else s2
    return (act, t, kw)


@target("coefficients", "api", 8, coeffs_args(), lambda ex: call_repr("rmtsolve.coefficients", ex[:2], ex[2]))
def run_coeffs(ex):
    act, t, kw = ex
    r = rmtsolve.coefficients(act, t, **kw)
    c = Checks()
    with checking():
        _check_coefficients(c, act, t, kw, r)
    return api_outcome(c)


def _check_coefficients(c, act, t, kw, r):
    v = check_coeffs(c, r.as_dict())
    if c.problems:
        return
    scale = max(abs(float(v["mu0"])), abs(float(v["mu1"])), float(v["mustar"]), 1e-300)
    ok_t = isinstance(t, float) and 1e-3 <= t <= 50
    s2 = kw.get("s2", 1.0)
    if ok_t and kw.get("dps") is not None and isinstance(kw["dps"], int) and not isinstance(kw["dps"], bool):
        try:
            ref = rmtsolve.coefficients(act, t, s2=float(s2) if isinstance(s2, str) else s2)
        except (ParameterError, ConvergenceError):
            ref = None
        if ref is not None:
            for k in ("mu0", "mu1", "mustar", "mu_s", "mu_e"):
                c.close(k, float(v[k]), float(getattr(ref, k)), 0.0, 1e-8 * scale, what="the double-precision value")
    if ok_t and kw.get("dps") is None and isinstance(act, str) and act.strip().lower() in EQUIVALENT:
        try:
            ref = rmtsolve.coefficients(EQUIVALENT[act.strip().lower()], t, **kw)
        except (ParameterError, ConvergenceError):
            ref = None
        if ref is not None:
            for k in ("mu0", "mu1", "mustar", "mu_s", "mu_e"):
                c.close(k, float(v[k]), float(getattr(ref, k)), 0.0, 1e-8 * scale,
                        what=f"the value for the expression {EQUIVALENT[act.strip().lower()]!r}")


GRID = np.linspace(-10, 10, 101)


@target("resolve_activation", "api", 5, act_api(), lambda a: call_repr("rmtsolve.resolve_activation", (a,)))
def run_resolve(a):
    r = rmtsolve.resolve_activation(a)
    c = Checks()
    try:
        with np.errstate(all="ignore"):
            y = np.asarray(r(GRID), dtype=float)
    except Exception as e:  # noqa: BLE001 - the resolved activation itself fails
        c.add(f"the resolved activation raises {type(e).__name__}: {e} on [-10, 10]")
        return api_outcome(c)
    with checking():
        if y.shape != GRID.shape:
            c.add(f"the activation maps {GRID.shape} to {y.shape}")
        else:
            c.finite("sigma(x) on [-10, 10]", y)
        if not isinstance(r.name, str):
            c.add(f"name {r.name!r} is not a string")
    return api_outcome(c)


@target("parse_spectrum", "api", 5, spec_api(), lambda s: call_repr("rmtsolve.parse_spectrum", (s,)))
def run_parse(s):
    r = rmtsolve.parse_spectrum(s)
    c = Checks()
    with checking():
        _check_parsed(c, r)
    return api_outcome(c)


def _check_parsed(c, r):
    if r.kind not in ("isotropic", "powerlaw", "values"):
        c.add(f"kind {r.kind!r}")
    s2 = r.s2
    c.finite("s2", s2)
    c.ge("s2", s2, 0.0)
    if r.kind == "values":
        c.finite("values", r.values)
        c.ge("values", r.values, 0.0)
        if not np.any(r.values > 0):
            c.add("all eigenvalues are zero")
    if r.kind == "powerlaw":
        c.finite("K", r.K)
        c.ge("K", r.K, 0.0)


@st.composite
def spectrum_method(draw):
    spec = draw(weighted((7, st.deferred(lambda: st.sampled_from(SPECTRUM_OBJECTS))), (3, spec_str()), (2, SPEC_ARRAY)))
    method = draw(st.sampled_from(["law", "law_refined", "atoms", "rf_dsm_eigenvalues", "ldm_eigenvalues", "law_mp",
                                   "props"]))
    arg = None
    if method in ("rf_dsm_eigenvalues", "ldm_eigenvalues"):
        arg = draw(weighted((85, st.integers(1, 500)), (10, st.sampled_from([0, -1, 2.5, "4", None, True, NAN])),
                            (5, st.sampled_from([10**7, 10**12]))))
    elif method == "law_mp":
        arg = draw(st.integers(16, 40))
    return (spec, method, arg)


def _spectrum_repro(ex):
    spec, method, arg = ex
    base = fmt(spec) if id(spec) in _REPR else f"rmtsolve.parse_spectrum({fmt(spec)})"
    if method == "props":
        return f"{base}.s2, .discrete, .is_isotropic"
    if method == "law_refined":
        return f"{base}.law(refined=True)"
    return f"{base}.{method}({'' if arg is None and method in ('law', 'atoms') else fmt(arg)})"


@target("Spectrum", "api", 4, spectrum_method(), _spectrum_repro)
def run_spectrum(ex):
    spec, method, arg = ex
    s = rmtsolve.parse_spectrum(spec)
    if method in ("law", "law_refined"):
        res = s.law(refined=method == "law_refined")
    elif method == "atoms":
        res = s.atoms()
    elif method in ("rf_dsm_eigenvalues", "ldm_eigenvalues"):
        res = getattr(s, method)(arg)
    elif method == "law_mp":
        with mpmath.workdps(arg + 5):
            lam, w = s.law_mp(arg)
            res = (lam, float(mpmath.fsum(w)))
    else:
        res = (s.s2, s.discrete, s.is_isotropic)
    c = Checks()
    with checking():
        _check_spectrum_method(c, s, method, arg, res)
    return api_outcome(c)


def _check_spectrum_method(c, s, method, arg, res):
    if method in ("law", "law_refined"):
        c.finite("law nodes", res.lam)
        c.ge("law nodes", res.lam, 0.0)
        c.ge("law weights", res.weight, 0.0)
        c.close("sum of law weights", np.sum(res.weight), 1.0, 1e-12)
        c.finite("s2", res.s2)
    elif method == "atoms":
        lam, w = res
        c.ge("atoms", lam, 0.0)
        c.close("sum of atom weights", np.sum(w), 1.0, 1e-12)
    elif method in ("rf_dsm_eigenvalues", "ldm_eigenvalues"):
        if np.shape(res) != (arg,):
            c.add(f"{method}({arg!r}) has shape {np.shape(res)}")
        c.finite(method, res)
        c.ge(method, res, 0.0)
        if method == "ldm_eigenvalues" and s.kind == "powerlaw" and np.size(res):
            c.close("mean of ldm_eigenvalues", np.mean(res), 1.0, 1e-9, what="1 (tr Sigma = d)")
    elif method == "law_mp":
        lam, ws = res
        c.finite("law_mp nodes", arr(lam))
        c.close("sum of law_mp weights", ws, 1.0, 1e-12)
    else:
        s2, discrete, iso = res
        c.finite("s2", s2)
        if not isinstance(discrete, bool) or not isinstance(iso, bool):
            c.add("discrete / is_isotropic not booleans")


RATIO = weighted((70, logu(0.01, 100)), (10, st.sampled_from([1.0, 1, 2, fractions.Fraction(1, 3), "0.3", "2.5", 0.5])),
                 (10, st.sampled_from(EDGE)), (10, st.sampled_from(BAD + ["1/0", "abc", "1e400", "-1"])))


@st.composite
def mp_args(draw):
    ratio = draw(RATIO)
    method = draw(weighted((60, st.just("stieltjes")), (15, st.just("density")), (10, st.just("moment")),
                           (10, st.just("log_moment")), (5, st.just("log_moment_nonzero"))))
    if method == "stieltjes":
        z = draw(weighted((6, Z_TYP), (2, st.lists(Z_TYP, min_size=1, max_size=5)),
                          (1, st.lists(Z_TYP, min_size=1, max_size=5).map(np.array)),
                          (1, st.sampled_from([NAN, INF, complex(NAN, 1), "1+1j", None, [], [[1, 2], [3]], mpmath.mpc(1, 1)]))))
        dps = draw(weighted((80, st.none()), (15, DPS_VALID), (5, DPS_BAD)))
        return (ratio, method, (z,), {} if dps is None else {"dps": dps})
    if method == "density":
        x = draw(weighted((6, unif(-1, 20)), (3, st.lists(unif(-1, 20), min_size=1, max_size=6).map(np.array)),
                          (1, st.sampled_from([NAN, INF, 1e300, -1e300, 0.0, None, "1", 1 + 1j]))))
        return (ratio, method, (x,), {})
    if method == "moment":
        k = draw(weighted((89, st.integers(0, 40)), (10, st.sampled_from([-1, 2.5, "3", None, True, np.int64(3)])),
                          (1, st.sampled_from([10**4, 10**6]))))
        return (ratio, method, (k,), {})
    dps = draw(weighted((70, st.none()), (20, DPS_VALID), (10, DPS_BAD)))
    return (ratio, method, (), {} if dps is None else {"dps": dps})


def _mp_repro(ex):
    ratio, method, args, kw = ex
    return call_repr(f"rmtsolve.MarchenkoPastur({fmt(ratio)}).{method}", args, kw)


@target("MarchenkoPastur", "api", 7, mp_args(), _mp_repro)
def run_mp(ex):
    ratio, method, args, kw = ex
    law = rmtsolve.MarchenkoPastur(ratio)
    if method == "stieltjes":
        res = law.stieltjes(*args, **kw)
    elif method == "density":
        res = law.density(*args)
    elif method == "moment":
        res = law.moment(*args)
    else:
        res = getattr(law, method)(**kw)
    c = Checks()
    with checking():
        _check_mp(c, law, method, args, res)
    return api_outcome(c)


def _check_mp(c, law, method, args, res):
    a, b = law.edges
    c.finite("edges", np.array([a, b]))
    if not (0 <= a <= b):
        c.add(f"edges {law.edges!r} not 0 <= a <= b")
    c.ge("atom", law.atom, 0.0)
    c.le("atom", law.atom, 1.0)
    if method == "stieltjes":
        z = np.asarray(complex(args[0].replace(" ", ""))) if isinstance(args[0], str) else arr(args[0])
        check_stieltjes(c, z, arr(res.value), res.density)
        if not (math.isfinite(res.residual) and res.residual <= 1e-8):
            c.add(f"residual {res.residual!r}")
        if not res.converged:
            c.add("converged is False on return")
    elif method == "density":
        dn = arr(res)
        c.finite("density", dn)
        c.ge("density", dn, 0.0)
    elif method == "moment":
        if isinstance(res, float):  # a float ratio: may overflow to inf legitimately (ratio^k)
            if math.isnan(res) or res < 0:
                c.add(f"moment = {res!r}")
        elif not (isinstance(res, fractions.Fraction) and res >= 0):
            c.add(f"moment = {res!r} (expected an exact Fraction >= 0 for an exact ratio)")
    else:
        fv = float(res)
        if method == "log_moment" and law.ratio > 1:
            if fv != -INF:
                c.add(f"log_moment = {fv!r} for ratio > 1 (documented -inf)")
        else:
            c.finite(method, fv)


ATOMS = weighted((5, st.lists(weighted((6, logu(0.01, 10)), (2, st.just(0.0)), (1, st.sampled_from([1e-300, 1e300, -1.0, NAN, INF]))),
                              min_size=1, max_size=5)),
                 (1, st.sampled_from([[], [0.0], "abc", None, [[1, 2], [3]], [1 + 1j], np.ones((2, 2))])),
                 (2, st.lists(logu(0.01, 10), min_size=1, max_size=1)))
DENSITIES = [named(Fn(f, t), t) for f, t in (
    (lambda x: 1.0, "lambda x: 1.0"), (lambda x: 2 * x, "lambda x: 2 * x"), (lambda x: -1.0, "lambda x: -1.0"),
    (lambda x: math.nan, "lambda x: math.nan"), (lambda x: 0.0, "lambda x: 0.0"))]


@st.composite
def gmp_args(draw):
    if draw(st.integers(0, 9)) < 1:
        dens = draw(st.sampled_from(DENSITIES))
        interval = draw(st.sampled_from([(0, 1), (1, 2), (0.5, 1.5), (1, 0), (0, INF), (-1, 1), "ab", (0,), (0, 1, 2)]))
        return ("from_density", dens, interval, draw(RATIO), draw(st.sampled_from([2, 16, 64, 256, 1, 2.5, "8"])),
                draw(weighted((3, st.tuples(unif(0, 5), logu(1e-4, 2)).map(lambda t: complex(*t))), (1, Z_TYP))))
    atoms = draw(ATOMS)
    weights = None
    if draw(st.integers(0, 9)) < 3 and isinstance(atoms, list) and atoms:
        raw = draw(st.lists(unif(0, 1), min_size=len(atoms), max_size=len(atoms)))
        tot = sum(raw)
        weights = [x / tot for x in raw] if tot > 0 and draw(st.integers(0, 3)) else raw
    method = draw(weighted((60, st.just("stieltjes")), (25, st.just("companion")), (15, st.just("density"))))
    if method == "density":
        arg = draw(weighted((6, unif(-1, 20)), (3, st.lists(unif(-1, 20), min_size=1, max_size=6).map(np.array)),
                            (1, st.sampled_from([NAN, INF, 0.0, None]))))
        kw = {}
    else:
        arg = draw(weighted((6, Z_TYP), (3, st.lists(Z_TYP, min_size=1, max_size=5).map(np.array)),
                            (1, st.sampled_from([NAN, INF, complex(NAN, 1), None, [], [[1, 2], [3]]]))))
        dps = draw(weighted((85, st.none()), (12, st.integers(16, 40)), (3, DPS_BAD)))
        kw = {} if dps is None else {"dps": dps}
    return ("law", atoms, weights, draw(RATIO), method, arg, kw)


def _gmp_repro(ex):
    if ex[0] == "from_density":
        _, dens, interval, ratio, n, z = ex
        return (call_repr("rmtsolve.GeneralizedMarchenkoPastur.from_density", (dens, interval, ratio), {"n_nodes": n})
                + f".stieltjes({fmt(z)})")
    _, atoms, weights, ratio, method, arg, kw = ex
    base = call_repr("rmtsolve.GeneralizedMarchenkoPastur", (atoms, ratio), {"weights": weights} if weights is not None else {})
    return base + "." + call_repr(method, (arg,), kw)


@target("GeneralizedMarchenkoPastur", "api", 5, gmp_args(), _gmp_repro)
def run_gmp(ex):
    c = Checks()
    if ex[0] == "from_density":
        _, dens, interval, ratio, n, z = ex
        law = rmtsolve.GeneralizedMarchenkoPastur.from_density(dens, interval, ratio, n_nodes=n)
        r = law.stieltjes(z)
        with checking():
            check_stieltjes(c, arr(z), arr(r.value), r.density)
        return api_outcome(c)
    _, atoms, weights, ratio, method, arg, kw = ex
    law = rmtsolve.GeneralizedMarchenkoPastur(atoms, ratio, weights=weights)
    res = law.density(arg) if method == "density" else getattr(law, method)(arg, **kw)
    ref = None
    if method == "stieltjes" and not kw and len(law.atoms) == 1 and law.atoms[0] > 0:
        # one atom t: s(z) = s_MP(z / t) / t, a scaled Marchenko-Pastur law
        t = float(law.atoms[0])
        zz = np.atleast_1d(np.asarray(arg, dtype=complex))
        far = np.abs(zz.imag) >= 1e-3 * t
        if far.any():
            try:
                ref = (far, rmtsolve.MarchenkoPastur(law.ratio).stieltjes(zz[far] / t).value / t)
            except (ParameterError, ConvergenceError):
                ref = None
    with checking():
        _check_gmp(c, law, method, arg, res, ref)
    return api_outcome(c)


def _check_gmp(c, law, method, arg, res, ref):
    c.ge("atom", law.atom, 0.0)
    c.le("atom", law.atom, 1.0, 1e-12)
    if method == "density":
        dn = arr(res)
        c.finite("density", dn)
        c.ge("density", dn, 0.0)
        return
    z = arr(arg).astype(complex)
    check_stieltjes(c, z, arr(res.value), res.density, name=method)
    if not res.converged:
        c.add("converged is False on return")
    if ref is not None and not c.problems:
        far, val = ref
        got = np.atleast_1d(arr(res.value))[far]
        c.close("|stieltjes - scaled MP| (one atom)", np.abs(got - val), 0.0, 0.0, 1e-8 * np.max(np.abs(val)) + 1e-300,
                what="0 within 1e-8 max|s|")


# ================================================================ command line

def run_cli(argv: list[str]):
    """(exit status, stdout, stderr) of rmtsolve.cli.main(argv), in-process."""
    from rmtsolve import cli

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), warnings.catch_warnings():
        # a fresh process: every warning shown once per location, the default ignores kept
        warnings.simplefilter("default")
        for cat in (DeprecationWarning, PendingDeprecationWarning, ImportWarning, ResourceWarning):
            warnings.filterwarnings("ignore", category=cat)
        try:
            status = cli.main(list(argv))
        except SystemExit as e:
            code = e.code
            status = 0 if code is None else (code if isinstance(code, int) else 1)
            if not isinstance(code, (int, type(None))):
                err.write(str(code) + "\n")
    return status, out.getvalue(), err.getvalue()


def _float_or_none(text):
    try:
        return float(str(text).strip())
    except (TypeError, ValueError):
        return None


@dataclasses.dataclass
class CliExample:
    argv: list
    flags: dict  # flag -> value (the numeric and string options given)
    command: str
    json: bool = False
    out_file: str | None = None
    out_fmt: str = "csv"
    expect_rows: int | None = None
    malformed_ignored: bool = False  # optimize --over lam with a malformed --lam (must exit 2)


def cli_repro(ex: CliExample) -> str:
    return "rmtsolve " + shlex.join(ex.argv)


NUM_EDGE_STR = ["0", "-0", "-1", "1e-300", "1e300", "nan", "NaN", "inf", "-inf", "Infinity", "1e400", "-1e400",
                "1e-400", "abc", "", " ", "1,5", "0x10", "1_000", "\u0661", "+1", "1e", "--1", "2j", "none", "None",
                "1.0.0", "5e-324", "1.7976931348623157e308", "-nan", " 2 "]


def numstr(typical):
    """A number on the command line: typical values in several notations, edge strings."""
    def notation(x):
        return st.sampled_from([repr(x), f"{x:g}", f"{x:.3e}", str(int(x)) if float(x).is_integer() and abs(x) < 1e15
                                else repr(x)])
    return weighted((85, typical.flatmap(notation)), (15, st.sampled_from(NUM_EDGE_STR)))


def intstr(typical):
    return weighted((85, typical.map(str)), (15, st.sampled_from(NUM_EDGE_STR + ["2.5", "3.0", "1e3", "10**3"])))


DPS_STR = weighted((80, DPS_VALID.map(str)), (20, st.sampled_from(["15", "0", "-1", "1001", "20.5", "abc", "", "1e400",
                                                                  "30.0", "inf", "nan"])))
Z_STR = weighted((6, Z_TYP.map(lambda z: repr(z).strip("()") if isinstance(z, complex) else repr(z))),
                 (2, st.sampled_from(["1+0.5j", "2", "0", "-1-1j", "1e300j", "nanj", "inf", "(1+2j)", "1 + 2j", "j", "abc",
                                      "", "1+infj", "1e400+1j", "0j", "-0j", "1-0j", "5"])))


def spec_cli():
    return spec_str()


def _assemble(draw, command, flags: dict, bools=(), junk=True):
    """argv from (flag, value) pairs, sometimes as --flag=value, sometimes with junk tokens."""
    argv = list(command)
    items = list(flags.items())
    if draw(st.integers(0, 9)) < 2:
        items = draw(st.permutations(items))
    for flag, value in items:
        if draw(st.integers(0, 9)) < 1:
            argv.append(f"{flag}={value}")
        else:
            argv += [flag, value]
    argv += list(bools)
    if junk and draw(st.integers(0, 99)) < 4:
        tok = draw(st.sampled_from(["--bogus", "x", "--json", "-h", "--", "--psi-n", "--dps", "-", "--JSON"]))
        argv.insert(draw(st.integers(len(command), len(argv))), tok)
    if junk and draw(st.integers(0, 199)) < 1:
        argv.append("--help")
    return argv


def _dps_ok(v) -> bool:
    try:
        return 16 <= int(v) <= 1000
    except (TypeError, ValueError):
        return False


def _finite_str(v) -> bool:
    f = _float_or_none(v)
    return f is not None and math.isfinite(f)


RF_CLI_FLAGS = {"--psi-n": numstr(PSI), "--psi-p": numstr(PSI_P), "--m": weighted((9, numstr(M_TYP)), (1, st.just("inf"))),
                "--t": numstr(T_TYP), "--lam": numstr(LAM_TYP), "--activation": ACT_CLI, "--tau": numstr(TAU_TYP),
                "--spectrum": spec_cli()}


@st.composite
def cli_rf_dsm(draw):
    flags = {}
    for flag, s in RF_CLI_FLAGS.items():
        p = 8 if flag == "--psi-p" else 5
        if draw(st.integers(0, 9)) < p:
            flags[flag] = draw(s)
    if draw(st.integers(0, 9)) < 1:
        flags["--dps"] = draw(DPS_STR)
    if _dps_ok(flags.get("--dps")):
        if "--tau" in flags and _finite_str(flags["--tau"]):
            flags["--tau"] = "inf"
        if is_continuum(flags.get("--spectrum", "")) and "--psi-p" not in flags:
            flags["--psi-p"] = "2"
    js = draw(st.integers(0, 9)) < 8
    return CliExample(_assemble(draw, ["rf-dsm"], flags, ["--json"] if js else []), flags, "rf-dsm", js)


LDM_CLI_FLAGS = {"--n-over-d": numstr(weighted((9, logu(0.05, 20)), (1, st.just(1.0)))), "--spectrum": spec_cli(),
                 "--lam": numstr(LAM_TYP), "--tau": numstr(TAU_TYP),
                 "--T": intstr(weighted((70, st.integers(1, 300)), (25, st.just(1000)), (2, st.sampled_from([10**9, 10**12])),
                                        (1, st.just(10**7)))),
                 "--beta-min": numstr(logu(1e-5, 1e-3)), "--beta-max": numstr(logu(1e-3, 0.05)),
                 "--mean-norm": numstr(weighted((3, st.just(0.0)), (7, logu(1e-4, 1e2))))}


@st.composite
def cli_ldm(draw):
    flags = {f: draw(s) for f, s in LDM_CLI_FLAGS.items() if draw(st.integers(0, 9)) < 5}
    if draw(st.integers(0, 9)) < 5:
        flags["--d"] = draw(intstr(weighted((80, st.integers(1, 200)), (15, st.integers(201, 2000)),
                                            (3, st.sampled_from([10**6, 10**9, 10**12])))))
    if draw(st.integers(0, 9)) < 1:
        flags["--dps"] = draw(DPS_STR)
    if _dps_ok(flags.get("--dps")):
        flags["--T"] = str(draw(st.integers(1, 10)))
        d = _float_or_none(flags.get("--d"))
        spec = flags.get("--spectrum", "isotropic")
        if (d is not None and d > 3) or n_distinct(spec) > 2:
            flags.pop("--d", None)
            flags["--spectrum"] = "isotropic"
    js = draw(st.integers(0, 9)) < 8
    return CliExample(_assemble(draw, ["ldm"], flags, ["--json"] if js else []), flags, "ldm", js)


@st.composite
def cli_mp(draw):
    flags = {}
    if draw(st.integers(0, 9)) < 7:
        flags["--ratio"] = draw(numstr(logu(0.01, 100)))
    if draw(st.integers(0, 9)) < 7:
        flags["--z"] = draw(Z_STR)
    if draw(st.integers(0, 9)) < 2:
        flags["--dps"] = draw(DPS_STR)
    js = draw(st.integers(0, 9)) < 8
    return CliExample(_assemble(draw, ["mp"], flags, ["--json"] if js else []), flags, "mp", js)


@st.composite
def cli_coeffs(draw):
    flags = {}
    if draw(st.integers(0, 9)) < 8:
        flags["--activation"] = draw(ACT_CLI)
    if draw(st.integers(0, 9)) < 6:
        flags["--t"] = draw(numstr(T_TYP))
    if draw(st.integers(0, 9)) < 3:
        flags["--spectrum"] = draw(spec_cli())
    if draw(st.integers(0, 9)) < 2:
        flags["--dps"] = draw(DPS_STR)
    js = draw(st.integers(0, 9)) < 8
    return CliExample(_assemble(draw, ["coeffs"], flags, ["--json"] if js else []), flags, "coeffs", js)


@st.composite
def cli_derive(draw):
    model = draw(weighted((8, st.sampled_from(["rf-dsm", "ldm", "mp"])), (2, st.sampled_from(["", "RF-DSM", "x", "sweep"])),
                          (1, st.text(max_size=8))))
    bools = ["--latex"] if draw(st.booleans()) else []
    argv = _assemble(draw, ["derive", model], {}, bools)
    if draw(st.integers(0, 9)) < 2:
        argv.append(draw(st.text(max_size=6)))
    return CliExample(argv, {}, "derive")


_SIM_WORK = 2e11  # flops: a few seconds here


def _affordable_simulation(flags: dict) -> None:
    """Shrink --d where valid flags ask for a simulation that runs for minutes (an edge string
    such as '1_000' for both ratios: n = p = 13000 at d = 13, a p x p eigh per seed); such a
    request is the user's to make, not a hang.  The work per seed: the features and moments
    N p (2 d + p), the solve 10 p^3, and n_test = max(4000, 2 p) test points with their
    features and the softmax over the n training points, n_test d (2 p + 4 n) (about 3e10
    flop/s here, measured at d = 4000)."""
    vals = {f: _float_or_none(flags.get(f, default)) for f, default in
            (("--psi-n", "1"), ("--psi-p", "2"), ("--m", "1"), ("--d", "x"), ("--seeds", "1"))}
    if any(v is None or not math.isfinite(v) or v <= 0 for v in vals.values()) or vals["--psi-p"] > 1e6:
        return  # malformed or refused by the memory estimate: runs in no time
    d = vals["--d"]
    n, p = vals["--psi-n"] * d, vals["--psi-p"] * d
    n_test = max(4000, 2 * p)
    work = vals["--seeds"] * (n * vals["--m"] * p * (2 * d + p) + 10 * p**3 + n_test * d * (2 * p + 4 * n))
    if work > _SIM_WORK:
        # the test phase grows like d^2 at a fixed n_test: shrinking by the cube root may not suffice
        flags["--d"] = str(max(2, int(d * (_SIM_WORK / work) ** (1 / 2))))


@st.composite
def cli_simulate_rf(draw):
    flags = {}
    sim_num = {"--psi-n": numstr(SIM_PSI), "--psi-p": weighted((9, numstr(SIM_PSI)), (1, st.sampled_from(["1e6", "1e9", "inf"]))),
               "--m": intstr(st.integers(1, 4)), "--t": numstr(T_TYP), "--lam": numstr(LAM_TYP),
               "--activation": weighted((8, st.sampled_from(NAMES + GOOD_EXPR[:8])), (2, ACT_CLI)),
               "--tau": numstr(TAU_TYP), "--spectrum": spec_cli()}
    for flag, s in sim_num.items():
        p = 9 if flag == "--psi-p" else (2 if flag in ("--tau",) else 5)
        if draw(st.integers(0, 9)) < p:
            flags[flag] = draw(s)
    flags["--d"] = draw(weighted((90, st.integers(2, 30).map(str)), (5, st.sampled_from(["1000000", "1000000000", "1e9"])),
                                 (5, st.sampled_from(["1", "0", "-3", "2.5", "abc", "nan"]))))
    flags["--seeds"] = draw(weighted((9, st.sampled_from(["1", "2"])), (1, st.sampled_from(["0", "-1", "1.5", "x"]))))
    if draw(st.booleans()):
        flags["--seed"] = draw(weighted((9, st.integers(0, 2**32).map(str)), (1, st.sampled_from(["-1", str(2**200), "1.5", "x"]))))
    _affordable_simulation(flags)
    gen = draw(st.integers(0, 9)) < 2
    if gen:
        flags["--generate"] = draw(weighted((85, st.integers(2, 20).map(str)), (10, st.sampled_from(["1", "0", "x", "2.5"])),
                                            (5, st.sampled_from(["1000000000", "100000000000"]))))
        if draw(st.booleans()):
            flags["--t0"] = draw(numstr(logu(1e-3, 0.5)))
        if draw(st.booleans()):
            flags["--T"] = draw(numstr(logu(0.5, 5)))
        flags["--steps"] = draw(weighted((9, st.integers(2, 6).map(str)), (1, st.sampled_from(["1", "0", "x"]))))
    js = draw(st.integers(0, 9)) < 8
    return CliExample(_assemble(draw, ["simulate", "rf-dsm"], flags, ["--json"] if js else []), flags, "simulate rf-dsm", js)


@st.composite
def cli_simulate_ldm(draw):
    flags = {f: draw(s) for f, s in LDM_CLI_FLAGS.items() if f != "--T" and draw(st.integers(0, 9)) < 5}
    flags["--T"] = draw(intstr(weighted((90, st.integers(1, 300)), (8, st.just(1000)), (2, st.sampled_from([10**7, 10**9])))))
    flags["--d"] = draw(weighted((92, st.integers(1, 40).map(str)), (3, st.sampled_from(["1000000", "1000000000"])),
                                 (5, st.sampled_from(["0", "-3", "2.5", "abc", "nan"]))))
    flags["--seeds"] = draw(weighted((9, st.sampled_from(["1", "2"])), (1, st.sampled_from(["0", "-1", "1.5", "x"]))))
    if draw(st.booleans()):
        flags["--seed"] = draw(weighted((9, st.integers(0, 2**32).map(str)), (1, st.sampled_from(["-1", str(2**200), "x"]))))
    js = draw(st.integers(0, 9)) < 8
    return CliExample(_assemble(draw, ["simulate", "ldm"], flags, ["--json"] if js else []), flags, "simulate ldm", js)


def range_count(text: str):
    """The number of values of a sweep value (None if malformed)."""
    parts = text.split(":")
    if len(parts) == 1:
        return 1
    try:
        return int(parts[2]) if len(parts) in (3, 4) else None
    except ValueError:
        return None


def range_str(draw, typical, max_count, log_ok=True, huge=True):
    """A sweep value: one number or start:stop:count[:log], or a malformed range; (text, count or None)."""
    k = draw(st.integers(0, 99))
    if k < 45:
        x = draw(typical)
        return draw(st.sampled_from([repr(x), f"{x:g}"])), 1
    if k < 85:
        a, b = draw(typical), draw(typical)
        a, b = (a if math.isfinite(a) else 1.0), (b if math.isfinite(b) else 2.0)
        n = draw(st.integers(1, max_count))
        if log_ok and a > 0 and b > 0 and draw(st.booleans()):
            return f"{a:g}:{b:g}:{n}:log", n
        return f"{a:g}:{b:g}:{n}", n
    if k < 88 and huge:
        return draw(st.sampled_from(["0.1:10:1000000000", "1:2:100000000000", "1:2:200000000"])), None
    return draw(st.sampled_from(["nan", "inf", "-inf", "-1", "0", "1:2", "1:2:0", "1:2:-1", "1:2:2.5", "a:b:c",
                                 "1:2:3:lin", "0:1:3:log", "-1:1:3:log", "1:inf:3", "nan:1:2", "1:2:3:log:x", "",
                                 "1e400", "1:1e400:2", "1::3", ":", "1:2:1e2", "2:1:3:log"])), None


@st.composite
def cli_sweep_rf(draw):
    flags, count = {}, 1
    spec = {"--psi-n": (PSI, 4), "--psi-p": (PSI, 5),
            "--m": (st.integers(1, 5).map(float), 3), "--t": (T_TYP, 3), "--lam": (LAM_TYP, 3),
            "--tau": (weighted((3, st.just(INF)), (7, TAU_TYP)), 3)}
    for flag, (typ, mx) in spec.items():
        if draw(st.integers(0, 9)) < 5:
            text, n = range_str(draw, typ, mx, huge=draw(st.integers(0, 9)) < 3)
            if flag in ("--psi-p", "--m", "--tau") and draw(st.integers(0, 19)) < 1:
                text, n = "inf", 1
            flags[flag] = text
            count = None if (count is None or n is None) else count * n
        elif flag == "--psi-p":
            count = None if count is None else count * 50
    if draw(st.booleans()):
        flags["--activation"] = draw(weighted((8, st.sampled_from(NAMES)), (2, ACT_CLI)))
    if draw(st.integers(0, 9)) < 4:
        flags["--spectrum"] = draw(spec_cli())
    tau_txt = flags.get("--tau", "inf")
    tau_first = _float_or_none(tau_txt.split(":")[0])
    if tau_first is not None and math.isfinite(tau_first) and range_count(tau_txt) is not None:
        # gradient flows cost up to a second a point (continuum spectra): keep such grids to a few points
        flags["--psi-p"] = draw(st.sampled_from(["2", "0.5:4:2:log"]))
        for f, v in (("--psi-n", "1"), ("--m", "2"), ("--t", "0.5"), ("--lam", "0.01")):
            if f in flags and ":" in flags[f]:
                flags[f] = v
        if range_count(tau_txt) > 3:
            flags["--tau"] = "1:3:2"
        count = range_count(flags["--psi-p"]) * range_count(flags["--tau"])
    if draw(st.integers(0, 99)) < 3:  # a grid whose product of counts exceeds the limit: refused up front
        flags["--psi-n"], flags["--t"], count = "0.5:2:100000", "0.1:1:100000", None
    if draw(st.integers(0, 9)) < 1:
        flags["--dps"] = draw(DPS_STR)
        if _dps_ok(flags["--dps"]):
            flags["--tau"] = "inf"
            flags["--psi-p"] = "1:3:2"
            for f in ("--psi-n", "--m", "--t", "--lam"):
                flags.pop(f, None)
            count = 2
            if is_continuum(flags.get("--spectrum", "")):
                flags["--spectrum"] = "isotropic"
    ex = CliExample([], flags, "sweep rf-dsm", expect_rows=count)
    _sweep_output(draw, ex)
    ex.argv = _assemble(draw, ["sweep", "rf-dsm"], flags, ["--quiet"] if draw(st.booleans()) else [])
    return ex


def _sweep_output(draw, ex: CliExample):
    k = draw(st.integers(0, 99))
    if k < 55:
        return
    if k < 75:
        ex.out_file, ex.out_fmt = FIX.out_path(".csv"), "csv"
        ex.flags["--csv"] = ex.out_file
    elif k < 93:
        ex.out_file, ex.out_fmt = FIX.out_path(".jsonl"), "jsonl"
        ex.flags["--jsonl"] = ex.out_file
    elif k < 97:
        ex.flags[draw(st.sampled_from(["--csv", "--jsonl"]))] = draw(st.sampled_from(FIX.bad_out(".csv")))
    else:
        ex.flags["--csv"], ex.flags["--jsonl"] = FIX.out_path(".csv"), FIX.out_path(".jsonl")


@st.composite
def cli_sweep_ldm(draw):
    flags, count = {}, 1
    spec = {"--n-over-d": (weighted((9, logu(0.05, 20)), (1, st.just(1.0))), 3), "--lam": (LAM_TYP, 2),
            "--tau": (weighted((3, st.just(INF)), (7, TAU_TYP)), 2),
            "--mean-norm": (weighted((3, st.just(0.0)), (7, logu(1e-4, 1e2))), 2),
            "--T": (st.integers(1, 200).map(float), 2), "--beta-min": (logu(1e-5, 1e-3), 2),
            "--beta-max": (logu(1e-3, 0.05), 2), "--d": (weighted((7, st.integers(1, 100).map(float)), (3, st.just(INF))), 2)}
    for flag, (typ, mx) in spec.items():
        if draw(st.integers(0, 9)) < 5:
            text, n = range_str(draw, typ, mx, log_ok=flag != "--d", huge=draw(st.integers(0, 9)) < 2)
            if flag in ("--tau", "--d") and draw(st.integers(0, 19)) < 1:
                text, n = "inf", 1
            flags[flag] = text
            count = None if (count is None or n is None) else count * n
        elif flag == "--n-over-d":
            count = None if count is None else count * 20
        elif flag == "--T":
            flags["--T"] = str(draw(st.integers(1, 200)))  # the default 1000 on 20+ rows is slow
    if draw(st.integers(0, 9)) < 4:
        flags["--spectrum"] = draw(spec_cli())
    if draw(st.integers(0, 19)) < 1:
        flags["--dps"] = draw(DPS_STR)
        if _dps_ok(flags["--dps"]):
            flags.update({"--n-over-d": "2", "--T": "5", "--d": "inf", "--spectrum": "isotropic"})
            for f in ("--lam", "--tau", "--mean-norm", "--beta-min", "--beta-max"):
                flags.pop(f, None)
            count = 1
    ex = CliExample([], flags, "sweep ldm", expect_rows=count)
    _sweep_output(draw, ex)
    ex.argv = _assemble(draw, ["sweep", "ldm"], flags, ["--quiet"] if draw(st.booleans()) else [])
    return ex


@st.composite
def cli_optimize(draw):
    over = draw(weighted((70, st.just("lam")), (25, st.just("tau")), (5, st.sampled_from([None, "ridge", ""]))))
    flags = {}
    if over is not None:
        flags["--over"] = over
    count, malformed_lam = 1, False
    for flag, typ in (("--psi-n", PSI), ("--psi-p", PSI), ("--m", st.integers(1, 4).map(float)), ("--t", T_TYP),
                      ("--lam", LAM_TYP)):
        if draw(st.integers(0, 9)) < 5:
            text, n = range_str(draw, typ, 2 if over == "lam" else 1, huge=False)
            flags[flag] = text
            if flag == "--lam" and over == "lam":  # not a parameter of the optimisation over lam
                malformed_lam = n is None
                continue
            count = None if (count is None or n is None) else count * n
    if draw(st.booleans()):
        flags["--activation"] = draw(weighted((8, st.sampled_from(NAMES)), (2, ACT_CLI)))
    if draw(st.integers(0, 9)) < 3:
        s = draw(spec_cli())
        flags["--spectrum"] = "isotropic" if over == "tau" and is_continuum(s) else s
    js = draw(st.integers(0, 9)) < 7
    ex = CliExample([], flags, "optimize rf-dsm", js, expect_rows=count, malformed_ignored=malformed_lam)
    if draw(st.integers(0, 9)) < 2:
        ex.out_file, ex.out_fmt = FIX.out_path(".csv"), "csv"
        flags["--csv"] = ex.out_file
    ex.argv = _assemble(draw, ["optimize", "rf-dsm"], flags, ["--json"] if js else [])
    return ex


FIGURES = ["rf-dsm-phase-diagram", "rf-dsm-learning-curves", "rf-dsm-training-dynamics", "rf-dsm-memorisation",
           "ldm-kl", "ldm-regularisation"]


@st.composite
def cli_figure(draw):
    """Only failing figures (a valid one takes minutes): a bad name, or a valid name with a bad path."""
    flags = {}
    if draw(st.booleans()):
        name = draw(weighted((5, st.sampled_from(["LDM-KL", "ldm-kl ", "nope", "", "rf-dsm", "phase-diagram", "--out"])),
                             (2, st.text(max_size=10).filter(lambda s: s not in FIGURES))))
        out = draw(weighted((5, st.just(FIX.out_path(".png"))), (3, st.sampled_from(FIX.bad_out(".png"))),
                            (2, st.just(FIX.out_path(".txt")))))
    else:
        name = draw(st.sampled_from(FIGURES))
        out = draw(weighted((6, st.sampled_from(FIX.bad_out(".png"))), (4, st.sampled_from([FIX.out_path(".txt"),
                                                                                          FIX.out_path(""), FIX.out_path(".PNG.txt")])),
                            ))
    argv = ["figure", name] if not name.startswith("-") else ["figure", "--", name]
    if draw(st.integers(0, 9)) < 9:
        argv += ["--out", out]
        flags["--out"] = out
    if draw(st.integers(0, 9)) < 2:
        csvp = draw(weighted((1, st.sampled_from(FIX.bad_out(".csv"))), (1, st.just(FIX.out_path(".csv")))))
        argv += ["--csv", csvp]
        flags["--csv"] = csvp
    return CliExample(argv, flags, "figure")


TOP_LEVEL = [[], ["--help"], ["-h"], ["bogus"], ["rf-dsm", "--help"], ["--version"], ["simulate"], ["sweep"], ["optimize"],
             ["sweep", "rf-dsm", "--help"], ["simulate", "ldm", "-h"], ["figure"], ["derive"], ["optimize", "rf-dsm"],
             ["rf_dsm"], ["RF-DSM"], ["mp", "extra"], ["--json"], ["coeffs", "--help"], ["ldm", "--help"],
             ["figure", "--help"], ["simulate", "rf-dsm"], ["simulate", "bogus"], ["sweep", "bogus"], ["optimize", "ldm"]]


@st.composite
def cli_top(draw):
    argv = list(draw(st.sampled_from(TOP_LEVEL)))
    if draw(st.integers(0, 9)) < 3:
        argv += draw(st.lists(st.text(max_size=8), max_size=3))
    return CliExample(argv, {}, "top")


# ---------------------------------------------------------------- CLI outcome

def _parse_json_line(text, c: Checks, one=True):
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if one and len(lines) != 1:
        c.add(f"--json printed {len(lines)} lines, expected one JSON object")
        if not lines:
            return []
        lines = lines[:1]

    def bare(token):
        raise ValueError(f"bare {token} in the JSON (the convention is the strings \"inf\"/\"nan\")")
    out = []
    for ln in lines:
        try:
            out.append(json.loads(ln, parse_constant=bare))
        except ValueError as e:
            c.add(f"invalid JSON: {e}"[:200])
    return out


def _nan_in_text(text):
    return re.search(r"(?<![A-Za-z_])nan(?![A-Za-z_])", text, flags=re.IGNORECASE) is not None


def check_cli_success(ex: CliExample, out: str, c: Checks):
    cmd = ex.command
    f = ex.flags
    if cmd in ("rf-dsm", "ldm", "mp", "coeffs", "simulate rf-dsm", "simulate ldm") and not ex.json:
        if not out.strip():
            c.add("exit 0 with nothing on stdout")
        if cmd in ("rf-dsm", "ldm", "mp", "coeffs") and _nan_in_text(out):
            line = next(ln for ln in out.splitlines() if _nan_in_text(ln))
            c.add(f"nan in the output: {line.strip()[:120]}")
        return
    if cmd == "rf-dsm":
        for d in _parse_json_line(out, c):
            by = d.get("test_error_by_eigenvalue")
            check_rf(c, d | {"test_error_by_eigenvalue": by}, True)
    elif cmd == "ldm":
        for d in _parse_json_line(out, c):
            dd = _float_or_none(f.get("--d"))
            nd = _float_or_none(f.get("--n-over-d", "2"))
            check_ldm(c, d, d_dim=int(dd) if dd is not None and math.isfinite(dd) else None, n_over_d=nd,
                      has_errors=False)
    elif cmd == "mp":
        for d in _parse_json_line(out, c):
            zt = f.get("--z", "1+0.5j")
            try:
                z = complex(zt.replace(" ", ""))
            except ValueError:
                z = complex(1, 0.5)
            check_stieltjes(c, np.asarray(z), arr(d["stieltjes"]), d.get("density"))
            res = arr(d["params"]["residual"])
            c.finite("residual", res)
    elif cmd == "coeffs":
        for d in _parse_json_line(out, c):
            check_coeffs(c, d)
    elif cmd == "simulate rf-dsm":
        seeds = int(f.get("--seeds", "3"))
        for d in _parse_json_line(out, c):
            if "--generate" in f:
                spec = f.get("--spectrum", "isotropic")
                try:
                    sing = bool(np.any(rmtsolve.parse_spectrum(spec.strip()).rf_dsm_eigenvalues(int(f["--d"])) == 0))
                except Exception:
                    sing = True
                check_generation(c, d, seeds, K=int(f["--generate"]), dim=int(f["--d"]), singular=sing)
            else:
                check_sim_rf(c, d, seeds)
    elif cmd == "simulate ldm":
        seeds = int(f.get("--seeds", "3"))
        for d in _parse_json_line(out, c):
            check_sim_ldm(c, d, seeds, T=int(f.get("--T", "1000")))
    elif cmd in ("sweep rf-dsm", "sweep ldm"):
        check_sweep(ex, out, c)
    elif cmd == "optimize rf-dsm":
        check_optimize_cli(ex, out, c)
    elif cmd in ("derive", "top", "figure"):
        if not out.strip():
            c.add("exit 0 with nothing on stdout")


def _rows(ex: CliExample, out: str, c: Checks):
    text = out
    fmt_ = "csv"
    if ex.out_file and ("--csv" in ex.flags) != ("--jsonl" in ex.flags):
        try:
            text = pathlib.Path(ex.out_file).read_text()
        except OSError as e:
            c.add(f"output file not written: {e}")
            return []
        fmt_ = ex.out_fmt
    if fmt_ == "jsonl" or (ex.command == "optimize rf-dsm" and ex.json):
        return [r for r in _parse_json_line(text, c, one=False)]
    try:
        rows = list(csv.DictReader(io.StringIO(text)))
    except csv.Error as e:
        c.add(f"malformed CSV: {e}")
        return []
    return rows


def _val(v):
    if isinstance(v, bool):
        return v
    if isinstance(v, (int, float)):
        return float(v)
    if v in ("true", "false"):
        return v == "true"
    try:
        return float(v)
    except (TypeError, ValueError):
        return v


def check_sweep(ex: CliExample, out: str, c: Checks):
    rows = _rows(ex, out, c)
    if ex.expect_rows is not None and len(rows) != ex.expect_rows:
        c.add(f"{len(rows)} rows, the grid has {ex.expect_rows} points")
    first = None
    for i, row in enumerate(rows):
        r = {k: _val(v) for k, v in row.items()}
        if ex.command == "sweep rf-dsm":
            conv = r.get("converged")
            if not isinstance(conv, bool):
                c.add(f"row {i}: converged = {conv!r}")
                continue
            by_keys = [k for k in r if k.startswith("test_error_by_eigenvalue[")]
            d = {k: r[k] for k in ("test_error", "train_error", "score_error", "gap", "test_error_floor",
                                   "empirical_score_error")}
            if any(isinstance(v, str) for v in d.values()):
                c.add(f"row {i}: non-numeric output {d}")
                continue
            sub = Checks()
            check_rf(sub, d, conv)
            for k in by_keys:
                v = r[k]
                if conv and not (isinstance(v, float) and math.isfinite(v) and v >= 0):
                    sub.add(f"{k} = {v!r} at a converged row")
                if not conv and not (isinstance(v, float) and math.isnan(v)):
                    sub.add(f"{k} = {v!r} at a row with converged false")
            for p in sub.problems:
                c.add(f"row {i}: {p}")
            if conv and first is None:
                first = r
        else:
            d = {k: r[k] for k in ("kl_gen_data_per_dim", "kl_data_gen_per_dim", "kl_oracle_per_dim", "excess_kl_per_dim",
                                   "span_fraction")}
            if any(isinstance(v, str) for v in d.values()):
                c.add(f"row {i}: non-numeric output {d}")
                continue
            sub = Checks()
            finite_d = isinstance(r["d"], float) and math.isfinite(r["d"])
            divergent = (r["lam"] == 0 and r["tau"] == INF and
                         ((not finite_d and r["n_over_d"] <= 1) or
                          (finite_d and round(r["n_over_d"] * r["d"]) - 1 <= r["d"])))
            conv = r.get("converged")
            if not isinstance(conv, bool):
                c.add(f"row {i}: converged = {conv!r}")
                continue
            if divergent and conv:  # conventions 3.5: sweeps behave like on_error="nan"
                sub.add(f"divergent ridgeless row is marked converged: {d}")
            if not conv:
                if not all(isinstance(v, float) and math.isnan(v) for v in d.values()):
                    sub.add(f"row with converged false is not NaN: {d}")
            else:
                check_ldm(sub, d | {"log_kl_data_gen_per_dim": np.log(d["kl_data_gen_per_dim"])
                                    if np.isfinite(d["kl_data_gen_per_dim"]) and d["kl_data_gen_per_dim"] > 0 else 1e3},
                          d_dim=int(r["d"]) if finite_d else None,
                          n_over_d=r["n_over_d"], has_errors=False)
                if first is None:
                    first = r
            for p in sub.problems:
                c.add(f"row {i}: {p}")
    if first is not None and "--dps" not in ex.flags and not c.problems:
        compare_row(ex, first, c)


def compare_row(ex: CliExample, row: dict, c: Checks):
    """The first solved row against the corresponding single API call."""
    f = ex.flags
    try:
        if ex.command == "sweep rf-dsm":
            spec = f.get("--spectrum", "isotropic")
            r = rmtsolve.rf_dsm(psi_n=row["psi_n"], psi_p=row["psi_p"], m=row["m"], t=row["t"], lam=row["lam"],
                                tau=None if row["tau"] == INF else row["tau"], activation=f.get("--activation", "relu"),
                                spectrum=spec)
            for k in ("test_error", "train_error"):
                c.close(k, row[k], float(getattr(r, k)), 1e-9, 1e-13, what="the single rf_dsm call")
        else:
            r = rmtsolve.ldm(n_over_d=row["n_over_d"], lam=row["lam"], tau=None if row["tau"] == INF else row["tau"],
                             mean_norm=row["mean_norm"], T=int(row["T"]), beta_min=row["beta_min"],
                             beta_max=row["beta_max"], d=int(row["d"]) if math.isfinite(row["d"]) else None,
                             spectrum=f.get("--spectrum", "isotropic"))
            for k in ("kl_gen_data_per_dim", "kl_oracle_per_dim", "span_fraction"):
                c.close(k, row[k], float(getattr(r, k)), 1e-9, 1e-13, what="the single ldm call")
    except (ParameterError, ConvergenceError) as e:
        c.add(f"the row was solved but the single call raises {type(e).__name__}: {e}"[:200])


def check_optimize_cli(ex: CliExample, out: str, c: Checks):
    if ex.malformed_ignored:
        c.add(f"exit 0 with the malformed --lam {ex.flags['--lam']!r} (ignored with --over lam; docs 3.6: "
              "malformed command lines exit with status 2)")
        return
    if ex.expect_rows == 1 and not ex.out_file:
        ds = _parse_json_line(out, c) if ex.json else None
        if ds is None:
            if not out.strip():
                c.add("exit 0 with nothing on stdout")
            return
    else:
        ds = _rows(ex, out, c)
        if ex.expect_rows is not None and len(ds) != ex.expect_rows:
            c.add(f"{len(ds)} rows, expected {ex.expect_rows}")
    for d in ds:
        r = {k: _val(v) for k, v in d.items()}
        conv = r.get("converged")
        if not isinstance(conv, bool):
            c.add(f"converged = {conv!r}")
            continue
        for k in ("argmin", "test_error", "train_error"):
            v = r.get(k)
            if isinstance(v, str) or v is None:
                c.add(f"{k} = {v!r}")
                continue
            if conv:
                if k != "argmin":
                    c.finite(k, v)
                c.ge(k, v, 0.0)
            elif not math.isnan(v):
                c.add(f"{k} = {v!r} with converged false")
        if r.get("boundary", "") not in ("", "lam -> 0", "lam -> inf", "tau -> 0", "tau -> inf"):
            c.add(f"boundary = {r.get('boundary')!r}")


NUMERIC_FLAGS = {"--psi-n", "--psi-p", "--m", "--t", "--lam", "--tau", "--n-over-d", "--T", "--beta-min", "--beta-max",
                 "--mean-norm", "--d", "--ratio", "--seeds", "--seed", "--generate", "--t0", "--steps", "--dps"}


def cli_run(ex: CliExample) -> Outcome:
    status, out, err = run_cli(ex.argv)
    err_lines = err.splitlines()
    if status in (2, 3):
        prefix = "rmtsolve: error:" if status == 2 else "rmtsolve: did not converge:"
        if len(err_lines) != 1:
            has_warning = any("Warning" in ln for ln in err_lines)
            return Outcome("defect", f"exit {status} with {len(err_lines)} lines on stderr"
                           + (" (Python warnings before the error line)" if has_warning else ""),
                           " | ".join(ln.strip() for ln in err_lines[-4:])[:400])
        if not err_lines[0].startswith(prefix):
            return Outcome("defect", f"exit {status} without the '{prefix}' prefix", err_lines[0][:300])
        return Outcome("documented", f"exit {status}", err_lines[0])
    if status != 0:
        return Outcome("defect", f"exit status {status}", " | ".join(err_lines[-3:])[:400])
    c = Checks()
    if not any(a in ("-h", "--help") for a in ex.argv):
        for flag, value in ex.flags.items():
            v = _float_or_none(str(value).split(":")[0]) if flag in NUMERIC_FLAGS else None
            if v is not None and (math.isnan(v) or v == -INF):
                c.add(f"exit 0 with {flag} {value!r} (docs 3.6: non-finite values exit with status 2)")
        try:
            with checking():
                check_cli_success(ex, out, c)
        except _CheckerError:
            if not c.problems:
                raise  # else report the problem found before the checks tripped
    if c.problems:
        return Outcome("defect", "out of bounds / silent non-finite", c.problems[0], note="; ".join(c.problems[1:4]))
    return Outcome("clean", note=("stderr: " + err_lines[0][:200]) if err_lines else "")


for _name, _strategy, _w in (("cli_rf_dsm", cli_rf_dsm(), 8), ("cli_ldm", cli_ldm(), 5), ("cli_mp", cli_mp(), 4),
                             ("cli_coeffs", cli_coeffs(), 5), ("cli_derive", cli_derive(), 1.5),
                             ("cli_simulate_rf_dsm", cli_simulate_rf(), 3), ("cli_simulate_ldm", cli_simulate_ldm(), 3),
                             ("cli_sweep_rf_dsm", cli_sweep_rf(), 4), ("cli_sweep_ldm", cli_sweep_ldm(), 3),
                             ("cli_optimize_rf_dsm", cli_optimize(), 2), ("cli_figure", cli_figure(), 1.5),
                             ("cli_top", cli_top(), 1.5)):
    TARGETS.append(Target(_name, "cli", _w, _strategy, cli_run, cli_repro,
                          limit_factor=2.0 if _name == "cli_optimize_rf_dsm" else 1.0))


# ================================================================ precision comparisons

@st.composite
def flow_point(draw):
    spec = draw(weighted((1, st.just("isotropic")),
                         (1, st.tuples(unif(0, 3), unif(0.1, 3)).map(lambda t: [t[0], t[1]]))))
    return {"psi_n": draw(unif(0.2, 5)), "psi_p": draw(unif(0.2, 5)), "m": draw(st.sampled_from([1, 2, 3, INF])),
            "t": draw(unif(0.1, 2)), "lam": draw(logu(1e-3, 1)), "tau": draw(logu(0.1, 10)),
            "activation": draw(weighted((3, st.just("relu")), (1, st.sampled_from(["tanh", "erf"])))), "spectrum": spec}


def _compare(c: Checks, names, got: dict, ref: dict, rtol, atol=0.0):
    for k in names:
        a, b = arr(got[k]), arr(ref[k])
        if a.shape != b.shape:
            c.add(f"{k}: shape {a.shape} at dps, {b.shape} in double")
            continue
        c.finite(k + " (dps)", a)
        c.close(k, a, b, rtol, atol, what="the double-precision value")


def compare_outcome(c: Checks, one_sided: str | None) -> Outcome:
    if c.problems:
        return Outcome("defect", "double and dps disagree", c.problems[0], note="; ".join(c.problems[1:4]))
    if one_sided:
        return Outcome("documented", "ConvergenceError in one precision only", one_sided)
    return CLEAN


def _both(f, kw, dps):
    """(double result or exception, dps result or exception)."""
    out = []
    for extra in ({}, {"dps": dps}):
        try:
            out.append(f(**kw, **extra))
        except (ParameterError, ConvergenceError) as e:
            out.append(e)
    return out


def _classify_pair(a, b, c, names, rtol, atol=0.0):
    ea, eb = isinstance(a, Exception), isinstance(b, Exception)
    if ea and eb:
        raise b  # documented in both
    if ea != eb:
        e = a if ea else b
        if isinstance(e, ParameterError) and not ea:
            raise e  # refused at dps only (a documented cost or domain limit)
        return compare_outcome(c, f"{'double' if ea else 'dps'}: {type(e).__name__}: {e}"[:300])
    with checking():
        _compare(c, names, {k: getattr(b, k) for k in names}, {k: getattr(a, k) for k in names}, rtol, atol)
    return compare_outcome(c, None)


@target("rf_dsm_flow_mp", "compare", 0, flow_point(), lambda kw: call_repr("rmtsolve.rf_dsm", (), kw | {"dps": 30})
        + " vs dps=None", limit_factor=4.0, fixed=15,
        doc="rf_dsm(..., tau=tau, dps=30) against rf_dsm(..., tau=tau): test_error, train_error and "
            "test_error_by_eigenvalue to relative 1e-10")
def run_flow_mp(kw):
    a, b = _both(rmtsolve.rf_dsm, kw, 30)
    names = ("test_error", "train_error")
    if not isinstance(a, Exception) and a.test_error_by_eigenvalue is not None:
        names += ("test_error_by_eigenvalue",)
    return _classify_pair(a, b, Checks(), names, 1e-10)


@st.composite
def ldm_point(draw):
    d = draw(weighted((1, st.none()), (1, st.integers(4, 10))))
    nd = draw(weighted((1, unif(0.5, 0.8)), (1, unif(1.5, 5))))  # N >= 2, away from the hard edge N = d
    if d is None:
        spec = draw(weighted((2, st.just("isotropic")), (1, st.lists(logu(0.2, 5), min_size=2, max_size=2))))
    else:
        vals = draw(st.lists(logu(0.2, 5), min_size=1, max_size=2))
        spec = draw(weighted((1, st.just("isotropic")), (1, st.just([vals[i % len(vals)] for i in range(d)]))))
    tau = draw(weighted((1, st.none()), (1, logu(0.1, 100))))
    lam = draw(weighted((1, st.just(0.0)), (2, logu(1e-3, 1))))
    N = None if d is None else round(nd * d)
    if lam == 0 and tau is None and (nd <= 1 if d is None else N - 1 <= d):
        lam = 1e-2  # divergent ridgeless point (its own documented error)
    kw = {"n_over_d": nd, "spectrum": spec, "lam": lam, "tau": tau, "T": draw(st.integers(1, 20)), "d": d}
    if draw(st.booleans()):
        kw["mean_norm"] = draw(logu(1e-3, 2))
    if draw(st.booleans()):
        kw["beta_min"], kw["beta_max"] = draw(logu(1e-4, 1e-3)), draw(logu(1e-2, 0.1))
    return kw


LDM_OUT = ("kl_gen_data_per_dim", "kl_data_gen_per_dim", "kl_oracle_per_dim", "excess_kl_per_dim", "span_fraction",
           "test_error_t", "train_error_t")


@target("ldm_dps", "compare", 0, ldm_point(), lambda kw: call_repr("rmtsolve.ldm", (), kw | {"dps": 30}) + " vs dps=None",
        limit_factor=2.0, fixed=15,
        doc="ldm(..., dps=30) against ldm(...): every output to relative 1e-10 plus the documented "
            "absolute rounding of double precision (1e-12 for the KLs, 1e-14 otherwise)")
def run_ldm_dps(kw):
    a, b = _both(rmtsolve.ldm, kw, 30)
    c = Checks()
    out = _classify_pair(a, b, c, [k for k in LDM_OUT if "kl" not in k], 1e-10, 1e-14)
    if out is not CLEAN:
        return out
    return _classify_pair(a, b, c, [k for k in LDM_OUT if "kl" in k], 1e-10, 1e-12)


# ================================================================ the campaign

class _Hang(BaseException):
    """Raised by SIGALRM: the example did not answer within its time limit."""


def _alarm(signum, frame):
    raise _Hang()


def _where(tb) -> str:
    """The innermost frame inside rmtsolve (else the innermost frame)."""
    frames = traceback.extract_tb(tb)
    pick = None
    for fr in frames:
        if "/rmtsolve/" in fr.filename.replace("\\", "/"):
            pick = fr
    pick = pick or (frames[-1] if frames else None)
    if pick is None:
        return ""
    path = pick.filename.replace("\\", "/")
    if "/rmtsolve/" in path:
        path = "rmtsolve/" + path.split("/rmtsolve/", 1)[1]
    return f"{path}:{pick.lineno} in {pick.name}"


def _norm(text: str) -> str:
    """A message with its numbers and paths blanked (the signature of a family of examples)."""
    text = re.sub(r"/tmp/rmtsolve-fuzz-[^/\s'\"]+", "<tmp>", text)
    text = re.sub(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?", "#", text)
    return text[:160]


@dataclasses.dataclass
class Stats:
    allocated: int = 0
    tried: int = 0
    clean: int = 0
    documented: int = 0
    defect: int = 0
    seconds: float = 0.0
    max_seconds: float = 0.0
    reasons: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    messages: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    checker: int = 0
    stderr_notes: int = 0
    stderr_examples: dict = dataclasses.field(default_factory=dict)  # distinct first lines -> repro


class Campaign:
    def __init__(self, time_limit: float, log=None):
        self.time_limit = time_limit
        self.stats: dict[str, Stats] = {t.name: Stats() for t in TARGETS}
        self.defects: dict[tuple, dict] = {}
        self.slow: list = []
        self.long_messages: dict[str, dict] = {}
        self.one_sided: list = []
        self.checker_errors: list = []
        self.log = log

    def execute(self, tgt: Target, ex):
        st_ = self.stats[tgt.name]
        st_.tried += 1
        limit = self.time_limit * tgt.limit_factor
        t0 = time.perf_counter()
        try:
            if self.log is not None:
                faulthandler.dump_traceback_later(limit + 120, file=self.log)
            # repeating: an alarm raised inside a gc callback or __del__ is swallowed ("Exception
            # ignored"), the next one a second later interrupts the example
            signal.setitimer(signal.ITIMER_REAL, limit, 1.0)
            try:
                if tgt.kind == "cli":
                    outcome = tgt.run(ex)
                else:
                    with warnings.catch_warnings(), np.errstate(all="ignore"):
                        warnings.simplefilter("ignore")
                        outcome = tgt.run(ex)
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
                if self.log is not None:
                    faulthandler.cancel_dump_traceback_later()
        except _Hang:
            outcome = Outcome("defect", "hang", f"no answer within {limit:g} s")
        except _CheckerError as e:
            outcome = Outcome("checker", "harness error", str(e)[:400], _where(e.__cause__.__traceback__)
                              if e.__cause__ is not None else "")
        except MemoryError as e:
            outcome = Outcome("defect", "MemoryError", f"{type(e).__name__}: {e}"[:300], _where(e.__traceback__))
        except (ParameterError, ConvergenceError) as e:
            msg = str(e)
            if "\n" in msg.strip() or not msg.strip():
                outcome = Outcome("defect", f"{type(e).__name__} with a multi-line or empty message", msg[:400],
                                  _where(e.__traceback__))
            else:
                outcome = Outcome("documented", type(e).__name__, msg)
        except Exception as e:  # noqa: BLE001 - every other exception is a traceback
            outcome = Outcome("defect", f"traceback: {type(e).__name__}", f"{type(e).__name__}: {e}"[:400],
                              _where(e.__traceback__))
        dt = time.perf_counter() - t0
        if dt > limit and outcome.kind != "defect":  # answered, but after the limit: a hang all the same
            outcome = Outcome("defect", "hang", f"answered after {dt:.0f} s, over the {limit:g} s limit")
        st_.seconds += dt
        st_.max_seconds = max(st_.max_seconds, dt)
        self.record(tgt, ex, outcome, dt)

    def record(self, tgt: Target, ex, o: Outcome, dt: float):
        st_ = self.stats[tgt.name]
        if o.kind == "clean":
            st_.clean += 1
            if o.note.startswith("stderr:"):
                st_.stderr_notes += 1
                if o.note not in st_.stderr_examples and len(st_.stderr_examples) < 5:
                    st_.stderr_examples[o.note] = tgt.repro(ex)
        elif o.kind == "checker":
            st_.checker += 1
            if len(self.checker_errors) < 30:
                self.checker_errors.append({"target": tgt.name, "detail": o.detail, "where": o.where,
                                            "example": tgt.repro(ex)[:600]})
                print(f"  HARNESS ERROR [{tgt.name}] {o.detail[:200]} at {o.where}\n    {tgt.repro(ex)[:300]}", flush=True)
        elif o.kind == "documented":
            st_.documented += 1
            st_.reasons[o.reason] += 1
            st_.messages[_norm(o.detail)] += 1
            if len(o.detail) > 250:
                key = _norm(o.detail)[:80]
                if key not in self.long_messages:
                    self.long_messages[key] = {"target": tgt.name, "length": len(o.detail), "message": o.detail,
                                               "example": tgt.repro(ex)}
            if o.reason.startswith("ConvergenceError in one precision"):
                self.one_sided.append({"target": tgt.name, "example": tgt.repro(ex), "detail": o.detail})
        else:
            st_.defect += 1
            st_.reasons[o.reason] += 1
            key = (tgt.name, o.reason, o.where or _norm(o.detail))
            rep = tgt.repro(ex)
            rec = self.defects.get(key)
            if rec is None:
                self.defects[key] = rec = {"target": tgt.name, "reason": o.reason, "where": o.where,
                                           "detail": o.detail, "more": o.note, "count": 0, "example": rep,
                                           "seconds": round(dt, 3)}
                print(f"  DEFECT [{tgt.name}] {o.reason}: {o.detail[:160]}\n    {rep[:400]}", flush=True)
            rec["count"] += 1
            if len(rep) < len(rec["example"]):
                rec.update(example=rep, detail=o.detail, more=o.note, seconds=round(dt, 3))
        if dt > SLOW_SECONDS:
            self.slow.append({"target": tgt.name, "seconds": round(dt, 2), "outcome": o.kind,
                              "example": tgt.repro(ex)[:500]})

    def run_target(self, tgt: Target, n: int, seed: int):
        if n <= 0:
            return

        @hypothesis.seed(seed)
        @settings(max_examples=n, derandomize=False, database=None, deadline=None, phases=[Phase.generate],
                  suppress_health_check=list(HealthCheck), verbosity=Verbosity.quiet, report_multiple_bugs=False)
        @given(tgt.strategy)
        def prop(ex):
            self.execute(tgt, ex)

        prop()


def allocate(targets, total: int) -> dict:
    weighted_ = [t for t in targets if t.fixed is None]
    wsum = sum(t.weight for t in weighted_)
    alloc = {t.name: int(total * t.weight / wsum) for t in weighted_}
    rest = total - sum(alloc.values())
    for t in sorted(weighted_, key=lambda t: -t.weight)[:rest]:
        alloc[t.name] += 1
    for t in targets:
        if t.fixed is not None:
            alloc[t.name] = min(t.fixed, max(2, total // 1000))
    return alloc


def source_digest() -> str:
    h = hashlib.sha256()
    for p in sorted((ROOT.parent / "rmtsolve").rglob("*.py")):
        h.update(p.relative_to(ROOT.parent).as_posix().encode())
        h.update(p.read_bytes())
    return h.hexdigest()[:16]


def write_reports(camp: Campaign, meta: dict, report_dir: pathlib.Path):
    report_dir.mkdir(parents=True, exist_ok=True)
    tot = Stats()
    per = {}
    for t in TARGETS:
        s = camp.stats[t.name]
        if s.allocated == 0 and s.tried == 0:
            continue
        per[t.name] = {"kind": t.kind, "weight": t.weight, "allocated": s.allocated, "tried": s.tried, "clean": s.clean,
                       "documented": s.documented, "defect": s.defect, "harness_errors": s.checker,
                       "seconds": round(s.seconds, 1),
                       "mean_seconds": round(s.seconds / max(s.tried, 1), 4), "max_seconds": round(s.max_seconds, 2),
                       "outcomes": dict(s.reasons.most_common()),
                       "top_documented_messages": [{"count": n, "message": m} for m, n in s.messages.most_common(6)],
                       "exit0_with_stderr": s.stderr_notes, "exit0_with_stderr_examples": [
                           f"{r}  ->  {n}" for n, r in s.stderr_examples.items()]}
        for k in ("tried", "clean", "documented", "defect", "checker"):
            setattr(tot, k, getattr(tot, k) + getattr(s, k))
    defects = sorted(camp.defects.values(), key=lambda r: (-r["count"], r["target"]))
    categories = collections.Counter()
    for r in defects:
        cat = ("hang" if r["reason"] == "hang" else "traceback" if r["reason"].startswith("traceback")
               else "MemoryError" if r["reason"] == "MemoryError" else
               "silent non-finite or out-of-bounds" if r["reason"].startswith("out of bounds") else
               "precision disagreement" if r["reason"].startswith("double and dps") else "error message / exit status")
        categories[cat] += r["count"]
    data = dict(meta, overall={"tried": tot.tried, "clean": tot.clean, "documented": tot.documented, "defect": tot.defect,
                               "harness_errors": tot.checker},
                defect_examples_by_category=dict(categories), targets=per, defect_signatures=len(defects),
                defects=defects[:MAX_DEFECTS],
                all_signatures=[{k: r[k] for k in ("target", "reason", "where", "count")} | {"detail": r["detail"][:160]}
                                for r in defects],
                slow_examples=sorted(camp.slow, key=lambda r: -r["seconds"])[:25],
                one_sided_convergence=camp.one_sided[:20], long_messages=list(camp.long_messages.values())[:10],
                harness_errors=camp.checker_errors,
                fixture=FIX.describe())
    (report_dir / "fuzz.json").write_text(json.dumps(data, indent=1, default=str) + "\n")

    md = ["# Fuzz campaign", "",
          f"Run {meta['started']} to {meta['finished']} ({meta['wall_seconds']:.0f} s wall) on rmtsolve sources "
          f"`{meta['source_sha256']}`, hypothesis {meta['hypothesis']}, seed **{meta['seed']}**, "
          f"{meta['examples_requested']} examples requested, per-example time limit {meta['time_limit']:g} s, "
          f"address space limited to {meta['memory_gb']:g} GB.", "",
          "Rerun (same seed, same examples):", "", "```bash", meta["rerun"], "```", "",
          "Classification (see the module docstring of `validation/fuzz.py`): **clean** = returned and every number "
          "finite and in bounds (NaN only where converged is False); **documented** = ParameterError / "
          "ConvergenceError with a one-line message, or CLI exit 2/3 with one `rmtsolve: ...` line on stderr; "
          "**defect** = traceback, hang, silent non-finite or out-of-bounds value, accepted input the docs refuse, "
          "multi-line error, other exit status, MemoryError.", "",
          f"## Overall: {tot.tried} tried, {tot.clean} clean, {tot.documented} documented, {tot.defect} defect"
          + (f", {tot.checker} harness errors (bugs of fuzz.py itself, listed in fuzz.json)" if tot.checker else ""), ""]
    if categories:
        md += ["Defect examples by category: " + ", ".join(f"{k} {v}" for k, v in categories.most_common()), ""]
    md += ["| target | tried | clean | documented | defect | mean s | max s |", "|---|---:|---:|---:|---:|---:|---:|"]
    for name, p in per.items():
        md.append(f"| {name} | {p['tried']} | {p['clean']} | {p['documented']} | {p['defect']} | "
                  f"{p['mean_seconds']:.3f} | {p['max_seconds']:.1f} |")
    md += ["", f"## Defects ({len(defects)} signatures; the shortest reproducer of each)", ""]
    if not defects:
        md.append("None.")
    for i, r in enumerate(defects[:MAX_DEFECTS], 1):
        md += [f"{i}. **{r['target']}**: {r['reason']} ({r['count']} examples)" + (f", at `{r['where']}`" if r["where"] else ""),
               f"   - `{r['example'][:600]}`", f"   - {r['detail'][:400]}"]
        if r["more"]:
            md.append(f"   - also: {r['more'][:300]}")
    if len(defects) > MAX_DEFECTS:
        md.append(f"\n... and {len(defects) - MAX_DEFECTS} more signatures (counts in fuzz.json).")
    if camp.slow:
        md += ["", f"## Slow examples (> {SLOW_SECONDS:g} s, not defects below the time limit)", ""]
        for r in sorted(camp.slow, key=lambda r: -r["seconds"])[:15]:
            md.append(f"- {r['seconds']:.1f} s, {r['target']} ({r['outcome']}): `{r['example'][:300]}`")
    if camp.one_sided:
        md += ["", "## ConvergenceError in one precision only (documented)", ""]
        md += [f"- {r['target']}: `{r['example'][:300]}`: {r['detail'][:200]}" for r in camp.one_sided[:10]]
    if camp.long_messages:
        md += ["", "## Error messages longer than 250 characters (one line, counted as documented)", ""]
        md += [f"- {r['target']} ({r['length']} chars): {r['message'][:200]}..." for r in list(camp.long_messages.values())[:8]]
    notes = [(n, p) for n, p in per.items() if p["exit0_with_stderr"]]
    if notes:
        md += ["", "## Successful commands that wrote to stderr (not counted as defects)", ""]
        for n, p in notes:
            md.append(f"- {n}: {p['exit0_with_stderr']} examples; distinct first lines:")
            md += [f"  - `{e[:500]}`" for e in p["exit0_with_stderr_examples"]]
    md += ["", "## Most frequent documented errors per target", ""]
    for name, p in per.items():
        if p["top_documented_messages"]:
            md.append(f"- **{name}**: " + "; ".join(f"{m['count']}x `{m['message'][:90]}`" for m in p["top_documented_messages"][:3]))
    md += ["", "## Fixture files (under a temporary directory, removed after the run)", ""]
    md += [f"- `{k}`: {v!r}" for k, v in FIX.describe()["files"].items()]
    (report_dir / "fuzz.md").write_text("\n".join(md) + "\n")


def main(argv=None):
    names = [t.name for t in TARGETS]
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--examples", type=int, default=2000, help="total examples over the weighted targets (default 2000)")
    ap.add_argument("--seed", type=int, default=None, help="hypothesis seed (default: random, printed and reported)")
    ap.add_argument("--only", nargs="+", choices=names, metavar="TARGET", help="run only these targets (see --list)")
    ap.add_argument("--time-limit", type=float, default=60.0, help="seconds per example before it counts as a hang (default 60)")
    ap.add_argument("--memory-gb", type=float, default=8.0, help="address-space limit of this process (default 8)")
    ap.add_argument("--report-dir", default=str(ROOT / "results"), help="where fuzz.json and fuzz.md go (default validation/results)")
    ap.add_argument("--list", action="store_true", help="list the targets and their weights, then exit")
    a = ap.parse_args(argv)
    if a.list:
        for t in TARGETS:
            print(f"{t.name:28s} {t.kind:8s} " + (f"fixed {t.fixed}" if t.fixed else f"weight {t.weight:g}")
                  + (f"  {t.doc}" if t.doc else ""))
        return 0
    seed = a.seed if a.seed is not None else random.SystemRandom().randrange(2**32)
    limit = int(a.memory_gb * 2**30)
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    resource.setrlimit(resource.RLIMIT_AS, (limit if hard == resource.RLIM_INFINITY else min(limit, hard), hard))
    signal.signal(signal.SIGALRM, _alarm)
    os.environ["RMTSOLVE_CACHE"] = str(FIX.dir / "cache")
    digest = source_digest()  # of the sources imported now (others may edit them during the run)
    _prebuild()
    targets = [t for t in TARGETS if not a.only or t.name in a.only]
    alloc = allocate(targets, a.examples)
    started = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    t0 = time.perf_counter()
    print(f"rmtsolve fuzz: seed {seed}, {a.examples} examples over {len(targets)} targets, started {started}", flush=True)
    camp = Campaign(a.time_limit, sys.__stderr__)  # stacks of examples stuck in C code go to stderr
    try:
        for tgt in targets:
            n = alloc[tgt.name]
            camp.stats[tgt.name].allocated = n
            t1 = time.perf_counter()
            camp.run_target(tgt, n, seed)
            # top up when hypothesis ran out of distinct inputs (small search spaces)
            short = n - camp.stats[tgt.name].tried
            for extra_seed in range(1, 4):
                if short <= 0:
                    break
                camp.run_target(tgt, short, seed + extra_seed)
                short = n - camp.stats[tgt.name].tried
            s = camp.stats[tgt.name]
            print(f"{tgt.name:28s} tried {s.tried:5d}  clean {s.clean:5d}  documented {s.documented:5d}  "
                  f"defect {s.defect:4d}  {time.perf_counter() - t1:7.1f} s", flush=True)
    except KeyboardInterrupt:
        print("interrupted: writing the report of the examples run so far", flush=True)
    meta = {"seed": seed, "examples_requested": a.examples, "only": a.only, "time_limit": a.time_limit,
            "memory_gb": a.memory_gb, "hypothesis": hypothesis.__version__, "numpy": np.__version__,
            "python": platform.python_version(), "rmtsolve": rmtsolve.__version__, "source_sha256": digest,
            "started": started, "finished": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
            "wall_seconds": round(time.perf_counter() - t0, 1),
            "allocation": {t.name: alloc[t.name] for t in targets},
            "rerun": "python validation/fuzz.py " + " ".join(
                [f"--examples {a.examples}", f"--seed {seed}"] + ([f"--only {' '.join(a.only)}"] if a.only else [])
                + ([f"--time-limit {a.time_limit:g}"] if a.time_limit != 60 else []))}
    write_reports(camp, meta, pathlib.Path(a.report_dir))
    tot = sum(s.tried for s in camp.stats.values())
    bad = sum(s.defect for s in camp.stats.values())
    print(f"done: {tot} tried, {bad} defects in {len(camp.defects)} signatures; report in {a.report_dir}", flush=True)
    shutil.rmtree(FIX.dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
