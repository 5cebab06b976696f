"""The RF-DSM model equations as solver-ready systems (generated from ``derivations/rf_dsm.py``).

Unknowns u = (k0, k1, G); parameters ``a = (psi_n, psi_p, iota, t, lam, mu1, mu_s2, mu_e2)``
(iota = 1/m; lam may be complex for the spectral law of U and the gradient flow).  A system
gives, at gam = 0,

- ``terms(u, a, f)``: residuals F (3) and Jacobian dF/du (9, row-major); ``residuals``: F alone;
- ``loss(u, a, f)``: L, dL/du (3), dL/dgam, dL/dlam, dF/dgam (3), dF/dlam (3);
- ``node_loss(u, a, f)``: the same per distinct eigenvalue of Sigma (anisotropic systems:
  the loss of the output coordinates along that eigenvalue; its total gam-derivative is the
  test error by eigenvalue);
- ``stieltjes(u, a, f)``: g = G / a_I, the Stieltjes transform of the spectral law of U at
  lam = -z;
- ``floor(t, f)``: the smallest test error, per distinct eigenvalue (``node_floor``) and its
  mean (``floor``).

:class:`IsotropicSystem` evaluates steps 1-7 of the derivation (Sigma = I, Marchenko-Pastur law
of W W^T/d); :class:`AnisotropicSystem` the node form of step 11, F = E_H[f(ell)], as a weighted
sum over the nodes of a population law (atoms, or quadrature nodes of a continuum law).
``f`` is the numeric namespace: ``NUMPY`` (arrays), ``MATH`` (Python floats or complex) or an
mpmath namespace (from :func:`rmtsolve._backend.mp_namespace`).
"""
from __future__ import annotations

import mpmath
import numpy as np

from .._backend import NUMPY
from .._generated import rf_dsm as _eq
from ..errors import ParameterError
from ..population import parse_spectrum

_SCALAR_NODES = 8  # up to this many nodes a scalar evaluation loops in Python (no numpy overhead)


class IsotropicSystem:
    """Sigma = I: the system of steps 1-7 (one eigenvalue, 1)."""

    discrete = True
    continuum = False
    eigenvalues = np.ones(1)
    eigenvalue_weights = np.ones(1)
    s2 = 1.0

    def terms(self, u, a, f):
        return _eq.newton_step_terms(*u, *a[:5], 0.0, *a[5:], _f=f)

    def residuals(self, u, a, f):
        return _eq.residuals(*u, *a[:5], 0.0, *a[5:], _f=f)

    def loss(self, u, a, f):
        return _eq.loss_terms(*u, *a[:5], 0, *a[5:], _f=f)

    def node_loss(self, u, a, f):
        """Per eigenvalue (here the one eigenvalue 1): a list with one loss tuple."""
        return [self.loss(u, a, f)]

    def stieltjes(self, u, a, f):
        return _eq.feature_stieltjes(*u, *a[:5], 0.0, *a[5:], _f=f)

    def expect(self, fun, *rest, f=NUMPY):
        """A node function at the one eigenvalue 1 (see :meth:`AnisotropicSystem.expect`)."""
        return fun(mpmath.mpf(1) if f.name == "mpmath" else 1.0, *rest, _f=f)

    def empirical_cross(self, u, a, f):
        """2 e^{-t} E[beta x_k]/sqrt(D) (derivation step 14) at the fixed point u."""
        return _eq.empirical_score_terms(1.0 if f.name != "mpmath" else mpmath.mpf(1), *u, *a[:5], 0.0, *a[5:],
                                         _f=f)[0]

    def node_floor(self, t, f):
        return [f.exp(-2 * t)]

    def floor(self, t, f):
        return f.exp(-2 * t)  # conventions section 1: e^{-2t} exactly

    def with_precision(self, dps):
        return self


class AnisotropicSystem:
    """x ~ N(0, Sigma): the node form of step 11 over a population law.

    Parameters
    ----------
    nodes, weights : sequences
        Population law sum_nu weight_nu delta_{nodes_nu} (floats or mpmath numbers).
    spectrum : rmtsolve.population.Spectrum
        The spectrum the law comes from (for refined and high-precision rules).
    discrete : bool
        True when the nodes are the distinct eigenvalues themselves (per-eigenvalue outputs).
    """

    def __init__(self, nodes, weights, spectrum, discrete: bool):
        self.spectrum = spectrum
        self.discrete = discrete
        self.continuum = not discrete
        self.s2 = spectrum.s2
        self._mp = not isinstance(nodes, np.ndarray)
        if self._mp:
            self.nodes, self.weights = list(nodes), list(weights)
        else:
            self.nodes = np.asarray(nodes, dtype=float)
            self.weights = np.asarray(weights, dtype=float)
        self.eigenvalues = np.array([float(x) for x in self.nodes]) if discrete else None
        self.eigenvalue_weights = np.array([float(x) for x in self.weights]) if discrete else None

    @classmethod
    def from_spectrum(cls, spectrum, *, refined: bool = False) -> "AnisotropicSystem":
        law = spectrum.law(refined=refined)
        return cls(law.lam, law.weight, spectrum, law.discrete)

    def with_precision(self, dps):
        """The same system with nodes and weights as mpmath numbers at ``dps`` digits."""
        nodes, weights = self.spectrum.law_mp(dps)
        return AnisotropicSystem(nodes, weights, self.spectrum, self.discrete)

    def refined(self) -> "AnisotropicSystem":
        """The continuum rule with panels of half the width (a posteriori accuracy check)."""
        return AnisotropicSystem.from_spectrum(self.spectrum, refined=True)

    # -- expectations over the population law ---------------------------------------------
    def _expect(self, fun, u, a, f, lead):
        """E_H of every output of the node function ``fun`` (a tuple)."""
        if self._mp:
            rows = [fun(x, *u, *a[:5], *lead, *a[5:], _f=f) for x in self.nodes]
            return tuple(mpmath.fsum(w * r[i] for w, r in zip(self.weights, rows)) for i in range(len(rows[0])))
        scalar = not any(isinstance(x, np.ndarray) for x in (*u, *a))
        if scalar and self.nodes.size <= _SCALAR_NODES:
            acc = None
            for x, w in zip(self.nodes.tolist(), self.weights.tolist()):
                r = fun(x, *u, *a[:5], *lead, *a[5:], _f=f)
                acc = [w * v for v in r] if acc is None else [s + w * v for s, v in zip(acc, r)]
            return tuple(acc)
        shape = np.broadcast_shapes(*(np.shape(x) for x in (*u, *a)))
        ell = self.nodes.reshape((-1,) + (1,) * len(shape))
        res = tuple(self._weighted(x, shape) for x in fun(ell, *u, *a[:5], *lead, *a[5:], _f=NUMPY))
        return res if shape else tuple(x[()] for x in res)

    def _weighted(self, x, shape):
        """sum_nu w_nu x[nu] for an output with a leading node axis (or none: weights sum to 1)."""
        x = np.asarray(x)
        n = self.nodes.size
        if x.ndim == len(shape) + 1 and x.shape[0] == n:
            # einsum: several times faster than tensordot or a real @ complex matmul here
            return np.einsum("n,n...->...", self.weights, np.broadcast_to(x, (n,) + shape))
        if x.ndim == len(shape) + 1:  # a leading axis of length 1: independent of ell
            x = x[0]
        return np.broadcast_to(x, shape) * self.weights.sum()

    def expect(self, fun, *rest, f=NUMPY):
        """E_H[fun(ell, *rest)] for a node function returning one value or a tuple.

        ``rest`` are arrays of one shape (or scalars); the node axis is summed out.
        """
        if self._mp:
            acc = None
            for x, w in zip(self.nodes, self.weights):
                r = fun(x, *rest, _f=f)
                r = r if isinstance(r, tuple) else (r,)
                acc = [w * v for v in r] if acc is None else [a_ + w * v for a_, v in zip(acc, r)]
            return acc[0] if len(acc) == 1 else tuple(acc)
        shape = np.broadcast_shapes(*(np.shape(x) for x in rest))
        ell = self.nodes.reshape((-1,) + (1,) * len(shape))
        out = fun(ell, *rest, _f=NUMPY)
        single = not isinstance(out, tuple)
        res = tuple(self._weighted(x, shape) for x in ((out,) if single else out))
        return res[0] if single else res

    def node_values(self, fun, *rest, f=NUMPY):
        """fun(ell, *rest) at every node, unweighted: a list (mpmath) or an array with a leading
        node axis (numpy); :meth:`weigh` averages it.  For per-eigenvalue outputs."""
        if self._mp:
            return [fun(x, *rest, _f=f) for x in self.nodes]
        shape = np.broadcast_shapes(*(np.shape(x) for x in rest))
        ell = self.nodes.reshape((-1,) + (1,) * len(shape))
        return np.broadcast_to(fun(ell, *rest, _f=NUMPY), (self.nodes.size,) + shape)

    def weigh(self, values):
        """sum_nu w_nu values[nu]: the E_H of :meth:`node_values`."""
        if self._mp:
            return sum((w * v for w, v in zip(self.weights[1:], values[1:])), self.weights[0] * values[0])
        return np.einsum("n,n...->...", self.weights, values)

    def terms(self, u, a, f):
        return self._expect(_eq.node_step_terms, u, a, f, (0.0,))

    def residuals(self, u, a, f):
        return self._expect(_eq.node_residuals, u, a, f, (0.0,))

    def loss(self, u, a, f):
        return self._expect(_eq.node_loss_terms, u, a, f, (0,))

    def node_loss(self, u, a, f):
        """One loss tuple per node (the distinct eigenvalues of a discrete spectrum)."""
        return [_eq.node_loss_terms(x if self._mp else float(x), *u, *a[:5], 0, *a[5:], _f=f)
                for x in self.nodes]

    def stieltjes(self, u, a, f):
        return _eq.feature_stieltjes(*u, *a[:5], 0.0, *a[5:], _f=f)

    def empirical_cross(self, u, a, f):
        """E_H of 2 e^{-t} E[beta x_k]/sqrt(D) (derivation step 14) at the fixed point u."""
        return self._expect(_eq.empirical_score_terms, u, a, f, (0.0,))[0]

    def node_floor(self, t, f):
        return [_eq.test_error_floor(x if self._mp else float(x), t, _f=f) for x in self.nodes]

    def floor(self, t, f):
        if self._mp:
            return mpmath.fsum(w * v for w, v in zip(self.weights, self.node_floor(t, f)))
        t = np.asarray(t, dtype=float)
        ell = self.nodes.reshape((-1,) + (1,) * t.ndim)
        out = np.tensordot(self.weights, _eq.test_error_floor(ell, t, _f=NUMPY), axes=([0], [0]))
        return out if t.ndim else float(out)


EIGENVALUE_MAX = 1e100


def rf_dsm_spectrum(spectrum):
    """Parse ``spectrum`` for RF-DSM: eigenvalues up to 1e100, since their squares (and the
    preactivation variance's) enter the equations and must stay within double precision."""
    spec = parse_spectrum(spectrum)
    if spec.kind == "values" and float(np.max(spec.values)) > EIGENVALUE_MAX:
        raise ParameterError("spectrum", f"eigenvalues <= {EIGENVALUE_MAX:g} for RF-DSM (their squares enter "
                             "the equations)", f"{spec.label}: max {float(np.max(spec.values)):.3g}")
    return spec


def system_for(spectrum):
    """The system of a parsed spectrum: isotropic, or anisotropic over its d -> inf law."""
    if spectrum.kind == "isotropic":
        return IsotropicSystem()
    return AnisotropicSystem.from_spectrum(spectrum)


def floor_value(system, t):
    """Mean floor (the smallest test error) in double precision for a float or array t."""
    return system.floor(np.asarray(t, dtype=float), NUMPY)


class KernelSystem:
    """The kernel limit psi_p = inf at fixed lam (derivation step 13), over a population law.

    Finite m: unknowns y = (1/K_0, 1/K_1) with K_tau = psi_p k_tau/lam; parameters
    ``a = (psi_n, iota, t, mu1, mu_s2, mu_e2)`` (the ridge drops out).  m = inf has the closed
    form test_error = e^{-2t} E_H[ell]/(1 - e^{-2t}).  The train error is 0 in both cases.
    Evaluation is point by point (Python scalars or mpmath numbers), vectorised over the nodes.
    """

    def __init__(self, system, mp: bool = False):
        if isinstance(system, IsotropicSystem):  # one node, 1 (an mpf at high precision)
            one = mpmath.mpf(1)
            self.nodes, self.weights, self._mp = ([one], [one], True) if mp else (np.ones(1), np.ones(1), False)
        else:
            self.nodes, self.weights, self._mp = system.nodes, system.weights, system._mp
        self.discrete = system.discrete
        self.s2 = system.s2

    def _expect(self, fun, args, f):
        def rows_of(r):
            return r if isinstance(r, tuple) else (r,)

        if self._mp:
            rows = [rows_of(fun(x, *args, _f=f)) for x in self.nodes]
            return tuple(mpmath.fsum(w * r[i] for w, r in zip(self.weights, rows)) for i in range(len(rows[0])))
        out = rows_of(fun(self.nodes, *args, _f=NUMPY))
        return tuple(float(self.weights @ np.broadcast_to(x, self.nodes.shape)) for x in out)

    def upper(self, a, f):
        return self._expect(_eq.kernel_node_upper, a, f)

    def terms(self, y, a, f):
        return self._expect(_eq.kernel_node_terms, (*y, *a[:3], 0, *a[3:]), f)

    def loss(self, y, a, f):
        return self._expect(_eq.kernel_node_loss, (*y, *a[:3], 0, *a[3:]), f)

    def node_loss(self, y, a, f):
        nodes = self.nodes if self._mp else self.nodes.tolist()
        return [_eq.kernel_node_loss(x, *y, *a[:3], 0, *a[3:], _f=f) for x in nodes]

    def empirical_cross(self, y, a, f):
        """Step 14 at psi_p = inf (finite m): E_H of 2 e^{-t} E[beta x_k]/sqrt(D)."""
        return self._expect(_eq.kernel_empirical_cross, (*y, *a[:3], 0, *a[3:]), f)[0]

    def m_inf_test(self, t, f):
        """(test error, per-node test errors) for m = inf: e^{-2t} ell/D is linear in ell, so the
        mean uses the exact s2 = E_H[ell] (a quadrature of the unbounded ell would truncate it)."""
        nodes = self.nodes if self._mp else self.nodes.tolist()
        per = [_eq.kernel_m_inf_test(x, t, _f=f) for x in nodes]
        s2 = mpmath.mpf(repr(self.s2)) if self._mp else self.s2
        return _eq.kernel_m_inf_test(s2, t, _f=f), per
