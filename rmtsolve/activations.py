"""Activation functions sigma: named, user expressions in ``x``, or Python callables.

An :class:`Activation` carries a vectorised numpy evaluator (used by the simulator on
large float64 arrays and by the double-precision quadrature), an optional mpmath scalar
evaluator (used when ``dps`` is given) and the points where sigma is not analytic
(kinks or jumps), at which quadratures split their intervals.

Names are case-insensitive: see :data:`ACTIVATIONS`. Expressions are parsed with sympy
through a whitelist (no attribute access, no arbitrary evaluation): the variable ``x``,
numbers, ``+ - * / ** ^``, comparisons (inside ``Piecewise``), the constants ``pi, E``
and the functions in :data:`EXPRESSION_FUNCTIONS`.
"""
from __future__ import annotations

import ast
import functools
import math
from dataclasses import dataclass, field
from typing import Callable

import mpmath
import numpy as np
import scipy.special as sps

from .errors import ParameterError

ACTIVATIONS = ("relu", "tanh", "erf", "sigmoid", "softplus", "gelu", "linear")

EXPRESSION_FUNCTIONS = (
    "exp", "log", "sqrt", "sin", "cos", "tan", "sinh", "cosh", "tanh", "asinh", "atan",
    "erf", "erfc", "Abs", "abs", "Max", "Min", "max", "min", "Heaviside", "sign", "Piecewise",
)

_ALLOWED = "a known name (" + ", ".join(ACTIVATIONS) + ") or an expression in x"

# sigma must be finite on this grid (it contains 0); a Gaussian integral against sigma^2
# needs much less, but a function that overflows here is certainly not usable.
_CHECK_GRID = np.linspace(-40.0, 40.0, 8001)


@dataclass(frozen=True, eq=False)
class Activation:
    """An activation function sigma.

    Attributes
    ----------
    name : str
        Human-readable name (the known name, the expression, or the callable's name).
    key : str
        Identity used for equality, hashing and caching of derived coefficients.
    np_func : callable
        Vectorised numpy evaluation, float64 array in, new float64 array out.
    mp_func : callable or None
        Scalar mpmath evaluation at the current ``mpmath.mp`` precision (mpf in, mpf
        out); None when sigma can only be evaluated in double precision.
    kinks : tuple of float
        Points where sigma or a derivative is discontinuous (sorted).
    """

    name: str
    key: str
    np_func: Callable = field(repr=False)
    mp_func: Callable | None = field(repr=False)
    kinks: tuple[float, ...] = ()
    # Returns the kinks as mpf at the current mpmath precision (exact where sympy
    # solved for them); None when the float kinks are exact (e.g. 0).
    mp_kinks_func: Callable | None = field(default=None, repr=False)

    def __call__(self, x):
        return self.np_func(x)

    def __eq__(self, other):
        return isinstance(other, Activation) and other.key == self.key

    def __hash__(self):
        return hash(self.key)

    def mp_kinks(self) -> tuple:
        """Kinks as mpmath numbers at the current working precision."""
        if self.mp_kinks_func is None:
            return tuple(mpmath.mpf(k) for k in self.kinks)
        return self.mp_kinks_func()


def _mp_relu(x):
    return x if x > 0 else mpmath.mpf(0)


def _mp_softplus(x):
    # log(1 + e^x) = x + log(1 + e^-x): keep the exponent negative
    return x + mpmath.log1p(mpmath.exp(-x)) if x > 0 else mpmath.log1p(mpmath.exp(x))


def _np_gelu(x):
    return x * sps.ndtr(x)


_NAMED = {
    "relu": (lambda x: np.maximum(x, 0.0), _mp_relu, (0.0,)),
    "tanh": (np.tanh, mpmath.tanh, ()),
    "erf": (sps.erf, mpmath.erf, ()),
    "sigmoid": (sps.expit, lambda x: 1 / (1 + mpmath.exp(-x)), ()),
    "softplus": (lambda x: np.logaddexp(0.0, x), _mp_softplus, ()),
    "gelu": (_np_gelu, lambda x: x * mpmath.erfc(-x / mpmath.sqrt(2)) / 2, ()),
    # np.positive copies, like every other activation (callers may write into the result)
    "linear": (np.positive, lambda x: +x, ()),
}


def resolve_activation(spec) -> Activation:
    """Turn a name, an expression in ``x``, a callable or an Activation into an Activation.

    Parameters
    ----------
    spec : str, callable or Activation
        A known name (case-insensitive, see :data:`ACTIVATIONS`), a sympy expression in
        ``x`` such as ``"x**3/3 + tanh(x)"`` or ``"Max(x, 0)"``, or a numpy-vectorisable
        callable. A callable supports ``dps`` only if it maps an mpf to an mpf.

    Raises
    ------
    ParameterError
        ('activation', ...) for unknown names, malformed expressions, expressions with
        other free symbols, or functions that are not finite on the real line.
    """
    if isinstance(spec, Activation):
        return spec
    if isinstance(spec, str):
        return _resolve_string(spec.strip())
    if callable(spec):
        return _from_callable(spec)
    raise ParameterError("activation", _ALLOWED, spec)


@functools.lru_cache(maxsize=256)
def scaled_activation(act: Activation, v, sqrt_v=None) -> Activation:
    """sigma~(x) = sigma(sqrt(v) x): the activation seen by unit-variance inputs when the
    preactivations have variance ``v`` (a float, or a decimal string for mpmath use with
    ``sqrt_v`` its square root as an mpf)."""
    sv = math.sqrt(float(v))
    svm = mpmath.sqrt(mpmath.mpf(v)) if sqrt_v is None else sqrt_v
    mp_func = None if act.mp_func is None else (lambda x, _f=act.mp_func: _f(x * svm))
    mp_kinks = None if act.mp_kinks_func is None and not act.kinks else (
        lambda: tuple(k / svm for k in act.mp_kinks()))
    return Activation(f"{act.name} (variance {float(v):.6g})", f"{act.key}|variance={v!r}",
                      lambda x, _f=act.np_func: _f(np.asarray(x, dtype=float) * sv), mp_func,
                      tuple(k / sv for k in act.kinks), mp_kinks)


@functools.lru_cache(maxsize=256)
def _resolve_string(text: str) -> Activation:
    low = text.lower()
    if low in _NAMED:
        np_func, mp_func, kinks = _NAMED[low]
        return Activation(low, "name:" + low, np_func, mp_func, kinks)
    return _from_expression(text)


def _check_finite(np_func, kinks, value) -> None:
    grid = np.union1d(_CHECK_GRID, np.asarray(kinks, dtype=float))
    with np.errstate(all="ignore"):
        try:
            y = np.asarray(np_func(grid), dtype=float)
        except Exception as exc:  # a user's callable may fail in any way (IndexError, KeyError, ...)
            raise ParameterError("activation", _ALLOWED + " (finite for real x)", value) from exc
    if y.shape != grid.shape or not np.all(np.isfinite(y)):
        raise ParameterError("activation", _ALLOWED + " (finite for real x)", value)


# ---------------------------------------------------------------- user expressions

_AST_NODES = (
    ast.Expression, ast.BinOp, ast.UnaryOp, ast.Call, ast.Name, ast.Constant, ast.Tuple,
    ast.Compare, ast.Load, ast.Add, ast.Sub, ast.Mult, ast.Div, ast.Pow, ast.USub, ast.UAdd,
    ast.Lt, ast.LtE, ast.Gt, ast.GtE,
)


def _validate_syntax(text: str) -> None:
    """Reject anything but arithmetic on x, numbers and whitelisted functions.

    Exponents may not contain powers or numbers above 1000, so that sympy never builds
    astronomically large exact integers (e.g. 9**9**9**9).
    """
    try:
        tree = ast.parse(text, mode="eval") if len(text) <= 2000 else None
    except SyntaxError as exc:
        raise ParameterError("activation", _ALLOWED, text) from exc
    if tree is None:
        raise ParameterError("activation", _ALLOWED + " (at most 2000 characters)", text)
    names = set(EXPRESSION_FUNCTIONS) | {"x", "pi", "E", "True"}
    for node in ast.walk(tree):
        ok = isinstance(node, _AST_NODES)
        if isinstance(node, ast.Name):
            ok = node.id in names
        elif isinstance(node, ast.Constant):
            ok = type(node.value) in (int, float, bool)
        elif isinstance(node, ast.Call):
            ok = (isinstance(node.func, ast.Name) and node.func.id in EXPRESSION_FUNCTIONS
                  and not node.keywords)
        elif isinstance(node, ast.BinOp) and isinstance(node.op, ast.Pow):
            ok = all(not (isinstance(sub, ast.BinOp) and isinstance(sub.op, ast.Pow))
                     and not (isinstance(sub, ast.Constant) and abs(sub.value) > 1000)
                     for sub in ast.walk(node.right))
        if not ok:
            raise ParameterError("activation", _ALLOWED, text)


def _sympy_namespace():
    import sympy as sp

    ns = {name: getattr(sp, name) for name in EXPRESSION_FUNCTIONS if hasattr(sp, name)}
    ns.update(abs=sp.Abs, max=sp.Max, min=sp.Min, pi=sp.pi, E=sp.E, x=sp.Symbol("x", real=True))
    return ns


def _from_expression(text: str) -> Activation:
    import sympy as sp
    from sympy.parsing.sympy_parser import auto_number, parse_expr, rationalize

    text = text.replace("^", "**")
    _validate_syntax(text)
    ns = _sympy_namespace()
    x = ns["x"]
    # numbers become exact rationals (1/3, 0.3 = 3/10) so that the mpmath path is exact;
    # the syntax check above makes the eval inside parse_expr safe
    global_ns = {"Integer": sp.Integer, "Float": sp.Float, "Rational": sp.Rational,
                 "__builtins__": {}}
    try:
        expr = parse_expr(text, local_dict=ns, global_dict=global_ns,
                          transformations=(auto_number, rationalize))
    except Exception as exc:  # sympy raises many types for bad input
        raise ParameterError("activation", _ALLOWED, text) from exc
    if not isinstance(expr, sp.Expr) or not expr.free_symbols <= {x}:
        raise ParameterError("activation", _ALLOWED, text)
    if expr.has(sp.zoo, sp.nan, sp.oo):  # e.g. x/0 or 0**-1 + x: infinite everywhere
        raise ParameterError("activation", _ALLOWED + " that is finite on the real line", text)
    kinks_exact = _expression_kinks(expr, x)
    kinks = tuple(float(k) for k in kinks_exact)
    f_np = sp.lambdify(x, expr, modules=["scipy", "numpy"])

    def np_func(arr, _f=f_np):
        arr = np.asarray(arr, dtype=float)
        return _fresh(_f(arr), arr)

    _check_finite(np_func, kinks, text)
    f_mp = sp.lambdify(x, expr, modules="mpmath")

    def mp_func(value, _f=f_mp):
        return _to_mpf(_f(value))

    try:
        _to_mpf(f_mp(mpmath.mpf("0.375")))
    except (TypeError, ValueError, NameError, AttributeError):
        mp_func = None

    def mp_kinks(_k=kinks_exact):
        return tuple(k.mp() if isinstance(k, _ScannedRoot) else mpmath.mpf(str(sp.N(k, mpmath.mp.dps + 5)))
                     for k in _k)

    return Activation(str(expr), "expr:" + sp.srepr(expr), np_func, mp_func, kinks,
                      mp_kinks if kinks_exact else None)


def _fresh(result, arr):
    """``result`` as a new float array shaped like ``arr`` (constants broadcast, no aliasing)."""
    out = np.asarray(result, dtype=float)
    if out.shape != arr.shape:
        return np.full(arr.shape, out)
    return out.copy() if np.shares_memory(out, arr) else out


def _to_mpf(value):
    if isinstance(value, mpmath.mpc):
        if value.imag != 0:
            raise ValueError("complex activation value")
        value = value.real
    return mpmath.mpf(value)


# Expressions are integrated on |x| <= 40 at most; kinks beyond do not matter.
_KINK_RANGE = 40


def _expression_kinks(expr, x) -> tuple:
    """Real points where an Abs/Max/Min/Heaviside/sign/Piecewise argument changes sign."""
    import sympy as sp

    arguments = []
    for node in sp.preorder_traversal(expr):
        if isinstance(node, (sp.Abs, sp.sign, sp.Heaviside)):
            arguments.append(node.args[0])
        elif isinstance(node, (sp.Max, sp.Min)):
            args = node.args
            arguments += [a - b for i, a in enumerate(args) for b in args[i + 1:]]
        elif isinstance(node, sp.Piecewise):
            for _, cond in node.args:
                relations = sp.sympify(cond).atoms(sp.core.relational.Relational)
                arguments += [r.lhs - r.rhs for r in relations]
    points = set()
    window = sp.Interval(-_KINK_RANGE, _KINK_RANGE)
    for arg in arguments:
        if x not in arg.free_symbols:
            continue
        try:
            # sympy's exact roots of a polynomial above degree 4, or of one with coefficients of
            # many digits (8.876e-56 is read as an exact rational), are algebraic numbers whose
            # minimal polynomials it may factor for minutes: scan instead
            sol = None if _hard_for_sympy(arg, x) else sp.solveset(arg, x, window)
        except Exception:  # sympy cannot solve every equation; fall back to a scan
            sol = None
        if isinstance(sol, sp.FiniteSet):
            points |= {p for p in sol if p.is_real}
        else:
            points |= {_ScannedRoot(r, arg, x) for r in _scan_roots(sp.lambdify(x, arg, modules=["scipy", "numpy"]))}
    unique = {float(p_): p_ for p_ in sorted(points, key=float)}  # exact 0 and a scanned 0.0 are one kink
    return tuple(unique.values())


def _hard_for_sympy(arg, x) -> bool:
    """Whether the numerator of ``arg`` over a common denominator is a polynomial in x of degree
    above 4, or ``arg`` holds a number of more than 12 digits (a decimal like 8.876e-56, read as
    an exact rational)."""
    import sympy as sp

    if any(max(abs(r.p), r.q) > 10**12 for r in arg.atoms(sp.Rational)) or arg.atoms(sp.Float):
        return True
    num = sp.fraction(sp.together(arg))[0]
    return bool(num.is_polynomial(x)) and sp.degree(num, x) > 4


class _ScannedRoot:
    """A kink sympy could not solve for: the double-precision root of ``arg`` found by a scan,
    refined to the working precision when the mpmath path asks (a kink misplaced by 1e-16
    costs a high-precision quadrature its convergence)."""

    def __init__(self, value: float, arg, x):
        self.value, self.arg, self.x = float(value), arg, x
        self._f = None

    def __float__(self) -> float:
        return self.value

    def mp(self):
        import sympy as sp

        if self._f is None:
            self._f = sp.lambdify(self.x, self.arg, modules="mpmath")
        v = mpmath.mpf(self.value)
        half = mpmath.mpf(1e-9) * max(1, abs(self.value))
        try:
            a, b = v - half, v + half
            if mpmath.sign(_to_mpf(self._f(a))) * mpmath.sign(_to_mpf(self._f(b))) < 0:
                return mpmath.findroot(lambda z: _to_mpf(self._f(z)), (a, b), solver="anderson")
        except (ValueError, ZeroDivisionError, TypeError):
            pass
        return v


def _scan_roots(func) -> list:
    """Sign changes of ``func`` on a fine grid, refined by bisection (floats)."""
    from scipy.optimize import brentq

    grid = np.linspace(-_KINK_RANGE, _KINK_RANGE, 80001)
    with np.errstate(all="ignore"):
        vals = np.broadcast_to(np.asarray(func(grid), dtype=float), grid.shape)
    roots = list(grid[vals == 0])
    def scalar(z):  # numpy scalars, so that a division by zero is inf, not a ZeroDivisionError
        with np.errstate(all="ignore"):
            return float(np.asarray(func(np.float64(z)), dtype=float))

    for i in np.nonzero(np.sign(vals[:-1]) * np.sign(vals[1:]) < 0)[0]:
        roots.append(brentq(scalar, grid[i], grid[i + 1], xtol=1e-15))
    return [float(r) for r in roots]


# ---------------------------------------------------------------- callables

def _from_callable(func) -> Activation:
    name = getattr(func, "__name__", type(func).__name__)
    probe = np.linspace(-3.0, 3.0, 7)
    try:
        vectorised = np.shape(func(probe)) == probe.shape
    except Exception:  # any failure means the callable is scalar-only
        vectorised = False
    if vectorised:
        def np_func(arr, _f=func):
            arr = np.asarray(arr, dtype=float)
            return _fresh(_f(arr), arr)
    else:
        np_func = np.vectorize(func, otypes=[float])
    _check_finite(np_func, (), name)
    try:
        mp_func = func if isinstance(func(mpmath.mpf("0.375")), mpmath.mpf) else None
    except Exception:  # numpy-only callables fail on mpf in many ways
        mp_func = None
    # the key holds id(func); caches keep the Activation (hence func) alive, so ids never clash
    return Activation(name, f"callable:{id(func)}:{name}", np_func, mp_func, ())
