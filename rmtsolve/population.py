"""Population spectra of the data covariance Sigma, shared by RF-DSM and LDM.

A spectrum is given as (API ``spectrum=``, CLI ``--spectrum``):

- ``"isotropic"``: Sigma = I;
- ``"powerlaw:K"`` (K >= 0): for d -> inf the continuum law lambda(u) = (1 - K) u^{-K}, u uniform
  on (0, 1] (mean 1; needs K < 1);
- ``"file:PATH"``: whitespace-separated eigenvalues >= 0, equally weighted;
- an array of eigenvalues >= 0 (API), equally weighted.

Sigma is never renormalised: its mean eigenvalue ``s2 = tr Sigma / d`` enters as given.
:func:`parse_spectrum` turns any of these into a :class:`Spectrum`, which then gives

- :meth:`Spectrum.law`: the d -> inf population law as nodes and weights (exact atoms for a
  discrete spectrum; for the continuum power law a Gauss-Legendre rule in log u, see below);
- :meth:`Spectrum.rf_dsm_eigenvalues`: the d eigenvalues of a finite-d RF-DSM simulation
  (power law: the quantiles (1 - K)((i - 1/2)/d)^{-K}; listed values: each fills an equal
  share of the d directions);
- :meth:`Spectrum.ldm_eigenvalues`: the d eigenvalues of LDM's finite-d deterministic
  equivalent (power law lambda_nu proportional to nu^{-K}, tr Sigma = d; listed values: exactly d).

Continuum power law.  With y = log u the law is int f dH = int_{-inf}^0 f((1 - K) e^{-K y}) e^y dy.
Every RF-DSM integrand is a bounded rational function of lambda whose poles lie off the positive
axis, so in y it is analytic in a strip |Im y| < pi/K around the real axis (poles of
1/(a + b lambda) with a/b > 0 sit at Im y = +-pi/K); Gauss-Legendre panels of width 1.5 with 10
nodes then converge like rho^-20, rho >= 4.2, and the tail u < u_min costs at most
u_min sup|f|.  :meth:`Spectrum.law` gives the rule with u_min = 1e-16 (250 nodes) and a
refined rule (half-width panels) that solvers use to check every point a posteriori.
"""
from __future__ import annotations

import dataclasses
import functools
import math
import pathlib

import mpmath
import numpy as np

from ._resources import check_memory
from .errors import ParameterError, check_integer

_SYNTAX = "isotropic, powerlaw:K (K >= 0), file:PATH or an array of eigenvalues >= 0"
_Y_MIN = math.log(1e-16)
_VALUES = "eigenvalues that are finite, >= 0, not all zero, and at least one"


@dataclasses.dataclass(frozen=True)
class Population:
    """A population law sum_nu weight_nu delta_{lam_nu} (weights sum to 1).

    Attributes
    ----------
    lam, weight : ndarray
        Nodes and weights: the distinct eigenvalues and their shares for a discrete law,
        quadrature nodes and weights for a continuum law.
    mean_log : float
        int log lambda dH (exact for the continuum power law; -inf with a zero eigenvalue).
    label : str
        The spectrum as given (for ``params``).
    s2 : float
        Mean eigenvalue tr Sigma / d (exact, not the quadrature's).
    discrete : bool
        True when ``lam`` are the actual distinct eigenvalues (not quadrature nodes).
    """

    lam: np.ndarray
    weight: np.ndarray
    mean_log: float
    label: str
    s2: float = 1.0
    discrete: bool = True


@dataclasses.dataclass(frozen=True, eq=False)
class Spectrum:
    """A parsed population spectrum (see the module docstring).

    Attributes
    ----------
    kind : str
        ``"isotropic"``, ``"powerlaw"`` or ``"values"``.
    label : str
        ``"isotropic"``, ``"powerlaw:K"``, ``"file:PATH"`` or ``"array"``.
    K : float or None
        Power-law exponent.
    values : ndarray or None
        The listed eigenvalues (``"values"``), in the order given.
    """

    kind: str
    label: str
    K: float | None = None
    values: np.ndarray | None = dataclasses.field(default=None, repr=False)

    @property
    def s2(self) -> float:
        """Mean eigenvalue tr Sigma / d."""
        return float(np.mean(self.values)) if self.kind == "values" else 1.0

    @property
    def is_isotropic(self) -> bool:
        """Sigma = I exactly (``"isotropic"`` or ``"powerlaw:0"``)."""
        return self.kind == "isotropic" or (self.kind == "powerlaw" and self.K == 0)

    @property
    def discrete(self) -> bool:
        """Finitely many distinct eigenvalues (every spectrum but a power law with K > 0)."""
        return not (self.kind == "powerlaw" and self.K > 0)

    def atoms(self) -> tuple[np.ndarray, np.ndarray]:
        """Distinct eigenvalues (ascending) and their shares, for a discrete spectrum."""
        if not self.discrete:
            raise ParameterError("spectrum", "a spectrum with finitely many distinct eigenvalues "
                                 "for per-eigenvalue outputs", self.label)
        if self.kind != "values":
            return np.ones(1), np.ones(1)
        vals, counts = np.unique(self.values, return_counts=True)
        return vals, counts / counts.sum()

    def law(self, *, refined: bool = False, rule: tuple[float, int, float] | None = None) -> Population:
        """The d -> inf population law (double precision).

        Discrete spectra give their atoms; the continuum power law (0 < K < 1) a
        Gauss-Legendre rule in y = log u: ``rule = (panel width, nodes per panel, y_min)``,
        default (1.5, 10, log 1e-16); ``refined`` halves the panel width.
        """
        if self.discrete:
            lam, w = self.atoms()
            with np.errstate(divide="ignore"):
                mean_log = float(w @ np.log(lam))
            return Population(lam, w, mean_log, self.label, self.s2, True)
        self._require_continuum()
        panel, n, y_min = rule or (1.5, 10, _Y_MIN)
        lam, w = _powerlaw_rule(self.K, panel / 2 if refined else panel, n, y_min)
        return Population(lam, w, math.log(1 - self.K) + self.K, self.label, 1.0, False)

    def law_mp(self, dps: int) -> tuple[list, list]:
        """Nodes and weights as mpmath numbers, accurate to about 10^-(dps + 4).

        Call inside ``mpmath.workdps`` of at least ``dps`` digits.
        """
        if self.discrete:
            lam, w = self.atoms()
            if self.kind == "values":
                vals, counts = np.unique(self.values, return_counts=True)
                total = int(counts.sum())
                return [mpmath.mpf(repr(float(v))) for v in vals], [mpmath.mpf(int(c)) / total for c in counts]
            return [mpmath.mpf(1)], [mpmath.mpf(1)]
        self._require_continuum()
        return _powerlaw_rule_mp(repr(self.K), dps)

    def _require_continuum(self) -> None:
        if not self.K < 1:
            raise ParameterError("spectrum", "powerlaw:K with 0 <= K < 1 for the d -> inf law (for K >= 1 "
                                 "the spectrum normalised to mean 1 has no limit)", self.label)

    def rf_dsm_eigenvalues(self, d: int) -> np.ndarray:
        """The d eigenvalues of Sigma in an RF-DSM simulation (conventions 1.5 discretisation)."""
        d = check_integer("d", d, low=1)
        check_memory("d", 32.0 * d, f"{d} eigenvalues")
        if self.kind == "isotropic":
            return np.ones(d)
        if self.kind == "powerlaw":
            self._require_continuum()
            return (1 - self.K) * ((np.arange(1, d + 1) - 0.5) / d) ** -self.K
        # value j fills directions floor(j d / L) .. floor((j + 1) d / L) - 1
        L = self.values.size
        idx = (np.arange(d) * L) // d
        return np.asarray(self.values, dtype=float)[idx]

    def ldm_eigenvalues(self, d: int) -> np.ndarray:
        """The d population eigenvalues of LDM's finite-d deterministic equivalent."""
        d = check_integer("d", d, low=1)
        check_memory("d", 32.0 * d, f"{d} eigenvalues")
        if self.kind == "isotropic":
            return np.ones(d)
        if self.kind == "powerlaw":
            lam = np.arange(1, d + 1, dtype=float) ** -self.K
            return lam * (d / lam.sum())
        if self.values.size != d:
            raise ParameterError("spectrum", f"exactly d = {d} eigenvalues", f"{self.values.size} values")
        return np.asarray(self.values, dtype=float)


def parse_spectrum(spectrum) -> Spectrum:
    """Parse ``spectrum`` (string, array or :class:`Spectrum`); see the module docstring.

    Raises
    ------
    ParameterError
        For an unknown form, an unreadable file, a negative, non-finite or empty list, all
        zeros, or a K that is not a finite number >= 0.
    """
    if isinstance(spectrum, Spectrum):
        return spectrum
    if isinstance(spectrum, str):
        text = spectrum.strip()
        if text == "isotropic":
            return Spectrum("isotropic", "isotropic")
        if text.startswith("powerlaw:"):
            try:
                K = float(text[9:])
            except ValueError:
                raise ParameterError("spectrum", "powerlaw:K with a number K >= 0", spectrum) from None
            if not (math.isfinite(K) and K >= 0):
                raise ParameterError("spectrum", "powerlaw:K with K >= 0", spectrum)
            return Spectrum("powerlaw", text, K=K)
        if text.startswith("file:"):
            try:
                vals = np.array(pathlib.Path(text[5:]).read_text().split(), dtype=float)
            except (OSError, ValueError, UnicodeDecodeError) as exc:
                raise ParameterError("spectrum", f"file:PATH of whitespace-separated {_VALUES} "
                                     f"({exc.__class__.__name__})", spectrum) from None
            return _values(vals, text)
        raise ParameterError("spectrum", _SYNTAX, spectrum)
    try:
        vals = np.asarray(spectrum, dtype=float).ravel()
    except (TypeError, ValueError, OverflowError):
        raise ParameterError("spectrum", _SYNTAX, repr(spectrum)[:60]) from None
    return _values(vals, "array")


def _values(vals: np.ndarray, label: str) -> Spectrum:
    if vals.size == 0 or not np.all(np.isfinite(vals)) or np.any(vals < 0) or not np.any(vals > 0):
        raise ParameterError("spectrum", _VALUES, label)
    vals = vals.copy()
    vals.setflags(write=False)
    return Spectrum("values", label, values=vals)


@functools.lru_cache(maxsize=64)
def _powerlaw_rule(K: float, panel: float, n: int, y_min: float):
    """Gauss-Legendre panels in y = log u on [y_min, 0]; weights normalised to sum 1."""
    edges = np.linspace(y_min, 0.0, math.ceil(-y_min / panel) + 1)
    x, w = np.polynomial.legendre.leggauss(n)
    half = np.diff(edges)[:, None] / 2
    y = (edges[:-1, None] + half + half * x[None, :]).ravel()
    wy = (half * w[None, :]).ravel() * np.exp(y)
    lam, wy = (1 - K) * np.exp(-K * y), wy / wy.sum()
    lam.setflags(write=False)
    wy.setflags(write=False)
    return lam, wy


@functools.lru_cache(maxsize=16)
def _powerlaw_rule_mp(K: str, dps: int):
    """The power-law rule at dps digits: panels of width 2 (48 nodes each above 30 digits)."""
    from mpmath.calculus.quadrature import GaussLegendre

    with mpmath.workdps(dps + 10):
        Km = mpmath.mpf(K)
        level = 4 if dps <= 30 else 5  # 24 / 48 nodes: rho^-2n below 10^-(dps + 4) on width 2
        panel = 2 if dps <= 30 else 3
        y_min = -(dps + 4) * mpmath.log(10)
        npan = int(mpmath.ceil(-y_min / panel))
        nodes = GaussLegendre(mpmath.mp).calc_nodes(level, mpmath.mp.prec)
        lam, w = [], []
        for j in range(npan):
            a = y_min * (npan - j) / npan
            b = y_min * (npan - j - 1) / npan
            mid, half = (a + b) / 2, (b - a) / 2
            for x, wx in nodes:
                y = mid + half * x
                lam.append((1 - Km) * mpmath.exp(-Km * y))
                w.append(half * wx * mpmath.exp(y))
        total = mpmath.fsum(w)
        return lam, [x / total for x in w]
