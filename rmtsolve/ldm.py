"""Learning curves of linear diffusion models (SPEC section 2), d -> inf and finite d.

The trained denoisers and the DDPM sampler are spectral functions of the centred sample
covariance ``C``, so the generated law is ``N(K(C) xbar, V(C))`` with per-eigenvalue maps
``k_0(c)`` and ``v_0(c)`` obtained by iterating the derived one-step maps
(``derivations/ldm.py``) over ``t = T..1``, vectorised over eigenvalues, in log space.  The
KL divergences, errors and span fraction are traces of spectral functions of ``C``, weighted
by ``Sigma^{-1}``, ``1`` or ``Sigma``; their deterministic equivalents come from Silverstein's
equation for the companion transform, evaluated on a contour around the non-zero spectrum
(``int f dmu_A = -(1/pi) Im int_{Gamma+} f(z) m_A(z) dz``), plus the exact kernel of ``C``.

Conventions
-----------
* ``C = (1/N) sum_i (x_i - xbar)(x_i - xbar)^T`` (rank ``N - 1``).  For Gaussian data
  ``C = ((N-1)/N) C'`` with ``C'`` a Wishart sample covariance of ``n = N - 1`` samples and
  ``xbar`` independent of ``C``.  The finite-d equivalent uses exactly this: ratio
  ``gamma = d/(N - 1)``, scale ``(N - 1)/N``, kernel mass ``max(0, 1 - (N-1)/d)`` and the
  sample-mean fluctuation ``e ~ N(0, Sigma/N)``; ``N = round(n_over_d * d)``.
  The d -> inf limit uses ``gamma = d/N`` and drops O(1/d) terms.
* ``mu`` lies in a generic direction with ``||mu||^2 / d = mean_norm``.
* Finite d also carries the O(1/d) per-dimension terms the continuum law misses: the
  Bai-Silverstein mean of every spectral trace for real Gaussian data (extended to the
  ``Sigma^{+-1}`` overlap weights through a derivative in the population eigenvalues) and
  the sample-mean term ``tr(K Sigma^{-1} K Sigma)/(N d)`` of ``kl_gen_data`` through the
  two-resolvent deterministic equivalent (``derivations/ldm.py``, part 7).  What is left is
  O(1/d^2) per dimension.  The d -> inf limit drops all of them.
* Spectra: ``"isotropic"``; ``"powerlaw:K"`` (``K >= 0``) with ``lambda_nu ∝ nu^{-K}``,
  ``nu = 1..d``, normalised to ``tr Sigma = d``; for ``d=None`` (only ``K < 1``) its
  continuum limit ``lambda(u) = (1 - K) u^{-K}``, ``u`` uniform on (0, 1], integrated by
  Gauss-Legendre panels in ``log u`` down to ``u = 1e-13`` (for ``K >= 1`` the normalised
  spectrum has no
  d -> inf limit: its bulk vanishes like ``d^{1-K}``); ``"file:PATH"`` or an array: the
  given eigenvalues, used as they are (no normalisation), as an equally weighted population
  law when ``d=None`` and as the ``d`` population eigenvalues otherwise.
* ``N <= d + 1`` (finite d) or ``n_over_d <= 1`` (d -> inf) with ``lam = 0`` and
  ``tau = inf`` is divergent: the last step maps the kernel of ``C`` to a point
  (``a_1(0) = 0``), both KLs are infinite, and :class:`ParameterError` is raised.
  Astronomically large but finite ``kl_data_gen`` values (e.g. very long training without
  ridge) are computed in log space: ``log_kl_data_gen_per_dim`` always holds the natural
  log, the value itself is a float or ``inf`` when not representable.
"""
from __future__ import annotations

import dataclasses
import math
import types

import numpy as np

from ._backend import NUMPY, check_dps
from ._generated import ldm as _eq
from .errors import ConvergenceError, ParameterError, check_range
from .population import Population, parse_spectrum

_F = types.SimpleNamespace(**vars(NUMPY), logaddexp=np.logaddexp, expm1=np.expm1)
_H = np.pi / 4  # contour angle: Gamma+ runs on arg z = pi/4 between the two real crossings
_PANEL = 1.0  # width of a Gauss-Legendre panel in log z (1e-11 agreement with width 0.2)
_GL_X, _GL_W = np.polynomial.legendre.leggauss(10)
_U_MIN_LOG = math.log(1e-13)  # continuum power law: quantiles u below this are neglected
_Y_PANEL = 3.0  # width of its Gauss-Legendre panels in log u (1e-9 agreement with 0.5)
_NEWTON_TOL = 1e-13


# -- schedule and per-eigenvalue maps --------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Schedule:
    """Linear DDPM schedule: beta_t, abar_t, 1 - abar_t, 1 - abar_{t-1}, t = 1..T."""

    beta: np.ndarray
    abar: np.ndarray
    om: np.ndarray
    omp: np.ndarray

    @classmethod
    def linear(cls, T: int, beta_min: float, beta_max: float) -> "Schedule":
        t = np.arange(1, T + 1, dtype=float)
        beta = _eq.schedule_beta(t, T, beta_min, beta_max, _f=_F)
        log_abar = np.cumsum(np.log1p(-beta))
        om = -np.expm1(log_abar)  # 1 - abar without cancellation
        return cls(beta, np.exp(log_abar), om, np.concatenate([[0.0], om[:-1]]))


def _log_decay(c, sch: Schedule, lam: float, tau: float):
    if math.isinf(tau):
        return np.full(np.broadcast(c, sch.abar[:, None]).shape, -np.inf)
    return _eq.log_decay(c, sch.abar[:, None], sch.om[:, None], lam, tau, _f=_F)


@dataclasses.dataclass(frozen=True)
class Maps:
    """Per-eigenvalue maps at real eigenvalues ``c`` of C.

    log_v: log v_0(c) (generated variance); log_r: log(1 - k_0(c)) (mean deficit);
    q2, w2, cw2: (T, n) denoiser terms q_t^2, W_t^2, c W_t^2 (None when not requested).
    """

    log_v: np.ndarray
    log_r: np.ndarray
    q2: np.ndarray
    w2: np.ndarray
    cw2: np.ndarray


def maps(c, sch: Schedule, lam: float, tau: float, errors: bool = True) -> Maps:
    """Iterate the derived DDPM step over t = T..1 for every eigenvalue in ``c`` (log space).

    ``errors=False`` skips the per-step denoiser terms (q2, w2, cw2 are then None).
    """
    c = np.asarray(c, dtype=float)
    ab, om, omp, beta = (x[:, None] for x in (sch.abar, sch.om, sch.omp, sch.beta))
    log_e = _log_decay(c, sch, lam, tau)
    with np.errstate(divide="ignore"):  # log 0 = -inf is the exact value (kernel, no ridge)
        log_a = _eq.log_step(c, ab, om, omp, beta, lam, log_e, _f=_F)
        log_s2 = np.log(sch.beta)
    log_s2[0] = -np.inf  # s_1 = 0
    log_v = np.zeros_like(c)  # u_T ~ N(0, I)
    for t in range(len(sch.beta) - 1, -1, -1):
        log_v = _eq.log_var_step(log_a[t], log_v, log_s2[t], _f=_F)
    log_r = 0.5 * np.log(sch.abar[-1]) + log_a.sum(axis=0)
    if not errors:
        return Maps(log_v, log_r, None, None, None)
    q2, w2, cw2 = _eq.denoiser_terms(c, ab, om, lam, log_e, _f=_F)
    return Maps(log_v, log_r, q2, w2, np.broadcast_to(cw2, q2.shape))


def maps_z(z, sch: Schedule, lam: float, tau: float):
    """The same maps at complex ``z`` (contour nodes): v_0, r = 1 - k_0, and (q2, w2, cw2)."""
    ab, om, omp, beta = (x[:, None] for x in (sch.abar, sch.om, sch.omp, sch.beta))
    if math.isinf(tau):
        a = _eq.step_z_conv(z, ab, om, omp, beta, lam, _f=_F)
        terms = _eq.denoiser_terms_z_conv(z, ab, om, lam, _f=_F)
    else:
        log_e = _eq.log_decay(z, ab, om, lam, tau, _f=_F)
        a = _eq.step_z(z, ab, om, omp, beta, lam, log_e, _f=_F)
        terms = _eq.denoiser_terms_z(z, ab, om, lam, log_e, _f=_F)
    s2 = sch.beta.copy()
    s2[0] = 0.0
    v = np.ones_like(z)
    for t in range(len(sch.beta) - 1, -1, -1):
        v = _eq.var_step(a[t], v, s2[t], _f=_F)
    r = np.sqrt(sch.abar[-1]) * np.prod(a, axis=0)
    return v, r, terms


# -- population spectra ----------------------------------------------------------------------
def population(spectrum, d: int | None) -> Population:
    """The population law of ``spectrum`` (see the module docstring) for LDM.

    The shared parser (:func:`rmtsolve.population.parse_spectrum`) reads it; LDM needs every
    eigenvalue > 0 (its KLs involve Sigma^{-1}).
    """
    spec = parse_spectrum(spectrum)
    if spec.kind == "values" and np.any(spec.values <= 0):
        raise ParameterError("spectrum", "a non-empty list of finite positive eigenvalues", spec.label)
    if spec.kind == "isotropic" or (d is None and spec.is_isotropic):
        return Population(np.ones(1), np.ones(1), 0.0, spec.label)
    if d is not None or spec.kind == "values":
        vals = spec.ldm_eigenvalues(d) if d is not None else np.asarray(spec.values, dtype=float)
        w = np.full(vals.size, 1.0 / vals.size)
        return Population(vals, w, float(np.mean(np.log(vals))), spec.label, float(np.mean(vals)))
    if spec.K >= 1:
        raise ParameterError("spectrum, d", "powerlaw:K with K < 1 when d is None (for K >= 1 "
                             "the normalised spectrum has no d -> inf limit; pass d)", spec.label)
    # continuum power law: every LDM integrand grows at most like log(lambda) in the tail,
    # so the neglected mass u < 1e-13 is harmless (the normalisation itself is exact)
    return spec.law(rule=(_Y_PANEL, _GL_X.size, _U_MIN_LOG))


# -- deterministic equivalents of spectral traces --------------------------------------------
@dataclasses.dataclass(frozen=True)
class Spectral:
    """Quadrature for int f dmu_A over the law of C, for A in (1, Sigma^{-1}, Sigma).

    z: contour nodes (values of c); wt: (3, nodes) complex weights such that
    int_bulk f dmu_A = Im(wt[A] @ f(z)); kernel: (3,) overlap masses of the atom at c = 0.
    At finite d both include the O(1/d) mean correction (at gamma = 1 the atom is the
    correction's hard-edge atom, inside the span); null: the kernel dimension of C over d.
    pair: None (d -> inf) or (dz, F++, F+-), the node differentials and the two-resolvent kernel
    tr(Sigma^-1 Q(z_a) Sigma Q(z_b))/d at (z_a, z_b) and (z_a, conj z_b), for
    :func:`_two_resolvent`.
    """

    z: np.ndarray
    wt: np.ndarray
    kernel: np.ndarray
    null: float
    pair: tuple | None = None


def spectral(pop: Population, gamma: float, gamma_m1: float, scale: float,
             d: int | None = None) -> Spectral:
    """Solve Silverstein's equation along Gamma+ and build the contour quadrature.

    ``gamma_m1 = gamma - 1`` is passed exactly (it vanishes when N - 1 = d).  With ``d`` the
    finite-d mean correction (real Gaussian data) is added and the two-resolvent kernel built.
    """
    lam_lo, lam_hi = pop.lam.min(), pop.lam.max()
    x_hi = lam_hi * (1 + math.sqrt(gamma)) ** 2 * math.e
    # at gamma = 1 the bulk reaches 0 (hard edge): stop at 1e-16 lam_lo, missing mass ~ 1e-8
    x_lo = max(lam_lo * (1 - math.sqrt(gamma)) ** 2 * math.exp(-2), 1e-16 * lam_lo)
    w_lo, w_hi = math.log(x_lo), math.log(x_hi)
    # Gamma+ in w = log z: up the right side, left along arg z = h, down the left side
    segs = [(complex(w_hi, 0), complex(w_hi, _H))]
    npan = max(2, math.ceil((w_hi - w_lo) / _PANEL))
    edges = np.linspace(w_hi, w_lo, npan + 1)
    segs += [(complex(a, _H), complex(b, _H)) for a, b in zip(edges[:-1], edges[1:])]
    segs += [(complex(w_lo, _H), complex(w_lo, 0))]
    w_nodes, dw = [], []
    for a, b in segs:
        mid, half = (a + b) / 2, (b - a) / 2
        w_nodes.append(mid + half * _GL_X)
        dw.append(half * _GL_W)
    w_nodes, dw = np.concatenate(w_nodes), np.concatenate(dw)
    x = np.exp(w_nodes)
    mt = _continuation(x, pop, gamma, gamma_m1)
    A = np.stack([np.ones_like(pop.lam), 1 / pop.lam, pop.lam])
    # z m_A(z) = -sum w A/(1 + lam mt) (generated resolvent term times z); dz = z dw
    zmA = np.stack([(_eq.resolvent_term(mt[:, None], pop.lam[None, :], (a * pop.weight)[None, :],
                                        1.0, _f=_F)).sum(axis=1) for a in A])
    kernel, mt0 = _kernel(pop, gamma, A * pop.weight)
    null = kernel[0]
    pair = None
    if d is not None:
        zmA = zmA + _fluctuation(mt, x, pop, gamma, A) / d
        if gamma > 1:  # the kernel is the pole at 0: its overlap masses shift by -(z delta_A)(0)
            kernel = kernel - _fluctuation(np.array([mt0]), np.zeros(1), pop, gamma, A)[:, 0] / d
        elif gamma_m1 == 0:  # hard edge: the correction's atom at 0 (off the contour)
            s_inv = pop.weight @ (1 / pop.lam)
            kernel = kernel + np.array([_eq.hard_edge_atom(pop.weight @ (a / pop.lam), s_inv,
                                                           _f=_F) for a in A]) / d
        pair = _pair(mt, x, x * dw, pop, gamma)
    wt = -zmA * dw / np.pi
    # consistency: bulk + atom at 0 must hold all the mass (the correction carries none)
    bulk = np.imag(wt[0].sum())
    if abs(bulk + kernel[0] - 1.0) > 1e-7:
        raise ConvergenceError(f"ldm: contour quadrature lost mass ({bulk!r} + {kernel[0]!r} "
                               f"vs 1) at gamma = {gamma}")
    return Spectral(scale * x, wt, kernel, null, pair)


def _fluctuation(mt, z, pop: Population, gamma: float, A) -> np.ndarray:
    """(3, nodes): z delta_A(z), the O(1) correction of tr(A Q(z)) times z, A rows unweighted."""
    w = pop.weight
    f2, fp, f3 = _eq.fluctuation_terms(mt[:, None], pop.lam[None, :], _f=_F)
    _, base1 = _eq.silverstein_base(mt, z, 0.0, _f=_F)  # dG/dmt does not involve gamma - 1
    G_m = base1 + _eq.silverstein_term(mt[:, None], pop.lam[None, :], gamma, _f=_F)[1] @ w
    S2, Q3 = f2 @ w, f3 @ w
    return np.stack([_eq.fluctuation_mean(S2, fp @ (w * a), Q3, f3 @ (w * a), G_m, gamma, mt,
                                          _f=_F) for a in A])


def _pair(mt, x, dz, pop: Population, gamma: float) -> tuple:
    """Two-resolvent kernel on Gamma+ x Gamma+ and Gamma+ x Gamma- (conjugate nodes)."""
    R, P = _eq.overlap_factors(mt[:, None], pop.lam[None, :], _f=_F)
    Rw, Pw = R * pop.weight, gamma * P * pop.weight
    fpp = _eq.two_point(Rw @ R.T, Pw @ P.T, x[:, None], x[None, :], _f=_F)
    fpm = _eq.two_point(Rw @ R.conj().T, Pw @ P.conj().T, x[:, None], x.conj()[None, :], _f=_F)
    return dz, fpp, fpm


def _two_resolvent(sp_: Spectral, j) -> float:
    """Y = (1/(2 pi i))^2 oint oint j(z1) j(z2) tr(Sigma^-1 Q1 Sigma Q2)/d dz1 dz2.

    ``j`` at the Gamma+ nodes, real on the real axis; Gamma- carries the conjugate nodes with
    weights -conj(dz), and conjugation symmetry folds the four blocks into two.
    """
    dz, fpp, fpm = sp_.pair
    a = j * dz
    return float(-(np.real(a @ fpp @ a) - np.real(a @ fpm @ a.conj())) / (2 * np.pi**2))


def _continuation(x, pop: Population, gamma: float, gamma_m1: float):
    """Companion transform mt(x) along the contour nodes, by Newton with continuation.

    Solves G(mt) = (gamma - 1) - z mt - gamma sum w/(1 + lam mt) = 0 (Silverstein's equation
    times mt), starting from mt = -1/z at the right end (z beyond the spectrum).
    """
    out = np.empty_like(x)
    mt = -1.0 / x[0]
    for i, zi in enumerate(x):
        prev = math.inf
        for _ in range(60):
            f0, f1 = _eq.silverstein_base(mt, zi, gamma_m1, _f=_F)
            g0, g1 = _eq.silverstein_term(mt, pop.lam, gamma, _f=_F)
            step = (f0 + pop.weight @ g0) / (f1 + pop.weight @ g1)
            mt = mt - step
            # stop at the tolerance, or at the round-off floor (near the hard edge the
            # conditioning grows like |mt|): steps no longer halving once already tiny
            if abs(step) <= _NEWTON_TOL * abs(mt) or (
                    abs(step) <= 1e-9 * abs(mt) and abs(step) > prev / 2):
                break
            prev = abs(step)
        f0, _ = _eq.silverstein_base(mt, zi, gamma_m1, _f=_F)
        g0, _ = _eq.silverstein_term(mt, pop.lam, gamma, _f=_F)
        scale = abs(gamma_m1) + abs(zi * mt) + pop.weight @ np.abs(g0)
        if not abs(f0 + pop.weight @ g0) <= 1e-10 * scale:
            raise ConvergenceError(f"ldm: Silverstein Newton did not converge at z = {zi}")
        if zi.imag > 0 and mt.imag < -1e-12 * abs(mt):
            raise ConvergenceError(f"ldm: Silverstein root left the physical branch at z = {zi}")
        out[i] = mt
    return out


def _kernel(pop: Population, gamma: float, A) -> tuple:
    """Overlap masses tr(A P_0)/d of the kernel of C (zero when gamma <= 1), and mt(0)."""
    if gamma <= 1:
        return np.zeros(3), math.nan
    lw = pop.weight * gamma
    # the kernel equation is increasing and concave in mt: Newton from below stays below
    mt = 1.0 / (gamma * (pop.weight @ pop.lam))
    for _ in range(200):
        g0, g1, _unused = _eq.kernel_term(mt, pop.lam, _f=_F)
        step = (lw @ g0 - 1) / (lw @ g1)
        mt = mt - step
        if abs(step) <= _NEWTON_TOL * mt:
            break
    else:
        raise ConvergenceError("ldm: kernel equation did not converge")
    return A @ _eq.kernel_term(mt, pop.lam, _f=_F)[2], mt


# -- result and driver -----------------------------------------------------------------------
_KEYS = ("kl_gen_data_per_dim", "kl_data_gen_per_dim", "kl_oracle_per_dim", "excess_kl_per_dim",
         "span_fraction")
_TOTALS = ("kl_gen_data", "kl_data_gen", "kl_oracle", "excess_kl")


@dataclasses.dataclass(frozen=True)
class LDMResult:
    """LDM learning curves at one or many (broadcast) parameter points.

    Attributes
    ----------
    kl_gen_data_per_dim, kl_data_gen_per_dim : ndarray
        KL(generated || data) and KL(data || generated) per dimension (nats).
    kl_oracle_per_dim : ndarray
        KL(generated || data) of the same sampler with the population denoiser.
    excess_kl_per_dim : ndarray
        kl_gen_data_per_dim - kl_oracle_per_dim.
    span_fraction : ndarray
        Share of tr S_g inside the span of the centred training data.
    test_error_t, train_error_t : ndarray, shape (..., T)
        Per-step errors (1/d) E||eps - eps_theta(x_t, t)||^2, t = 1..T, on fresh data
        (averaged over the sample mean) and on the training set (noise-averaged).
    log_kl_data_gen_per_dim : ndarray
        Natural log of kl_data_gen_per_dim (finite even when the value overflows).
    kl_gen_data, kl_data_gen, kl_oracle, excess_kl : ndarray or None
        Totals (nats) = d times the per-dimension values; None when d is None.
    params : dict
        The broadcast inputs, plus N and gamma = d/(N-1) (finite d) or d/N (d -> inf).
    """

    kl_gen_data_per_dim: np.ndarray
    kl_data_gen_per_dim: np.ndarray
    kl_oracle_per_dim: np.ndarray
    excess_kl_per_dim: np.ndarray
    span_fraction: np.ndarray
    test_error_t: np.ndarray
    train_error_t: np.ndarray
    log_kl_data_gen_per_dim: np.ndarray
    params: dict
    kl_gen_data: np.ndarray | None = None
    kl_data_gen: np.ndarray | None = None
    kl_oracle: np.ndarray | None = None
    excess_kl: np.ndarray | None = None

    def as_dict(self) -> dict:
        out = {k: _squeeze(getattr(self, k)) for k in _KEYS}
        if self.kl_gen_data is not None:
            out.update({k: _squeeze(getattr(self, k)) for k in _TOTALS})
        out["log_kl_data_gen_per_dim"] = _squeeze(self.log_kl_data_gen_per_dim)
        out["test_error_t"] = self.test_error_t
        out["train_error_t"] = self.train_error_t
        out["params"] = self.params
        return out


def _squeeze(x):
    x = np.asarray(x)
    return float(x) if x.ndim == 0 else x


def check_common(*, n_over_d, lam, tau, T, beta_min, beta_max, mean_norm, d):
    """Validate the shared LDM inputs; returns (tau array with inf for None, T, d)."""
    check_range("n_over_d", n_over_d, low=0, low_open=True)
    check_range("lam", lam, low=0)
    tau = np.inf if tau is None else tau
    tau_arr = np.asarray(tau, dtype=float)
    if np.any(np.isnan(tau_arr)) or np.any(tau_arr <= 0):
        raise ParameterError("tau", "> 0 (or None/inf for the converged denoiser)", tau)
    if isinstance(T, bool) or not float(T).is_integer() or T < 1:
        raise ParameterError("T", "an integer >= 1", T)
    check_range("beta_min", beta_min, low=0, high=1, low_open=True, high_open=True)
    check_range("beta_max", beta_max, low=0, high=1, low_open=True, high_open=True)
    if np.any(np.asarray(beta_min) > np.asarray(beta_max)):
        raise ParameterError("beta_min, beta_max", "0 < beta_min <= beta_max < 1",
                             (beta_min, beta_max))
    check_range("mean_norm", mean_norm, low=0)
    if d is not None and (isinstance(d, bool) or not float(d).is_integer() or d < 1):
        raise ParameterError("d", "an integer >= 1 (or None for d -> inf)", d)
    return tau_arr, int(T), None if d is None else int(d)


def sample_size(n_over_d: float, d: int) -> int:
    """N = round(n_over_d d), at least 2 (the centred covariance needs two samples)."""
    N = int(round(n_over_d * d))
    if N < 2:
        raise ParameterError("n_over_d, d", "such that N = round(n_over_d d) >= 2",
                             float(n_over_d * d))
    return N


def check_degenerate(n: float, d: float, lam: float, tau: float, label: str) -> None:
    """Raise for the divergent ridgeless point (kernel of C mapped to a point)."""
    if lam == 0 and math.isinf(tau) and n <= d:
        raise ParameterError("n_over_d, lam, tau", "lam > 0 or a finite tau when " + label +
                             " (the generated law is degenerate and both KLs are infinite)",
                             (float(n / d), 0.0, "inf"))


def ldm(*, n_over_d, spectrum="isotropic", lam=0.0, tau=None, T: int = 1000,
        beta_min=1e-4, beta_max=1e-2, mean_norm=0.0, d: int | None = None,
        dps: int | None = None) -> LDMResult:
    """Learning curves of the linear diffusion model (SPEC section 2).

    Parameters
    ----------
    n_over_d : float or array
        N/d > 0.
    spectrum : str or array
        ``"isotropic"``, ``"powerlaw:K"``, ``"file:PATH"`` or population eigenvalues
        (see the module docstring for normalisations and the continuum limit).
    lam : float or array
        Ridge >= 0.
    tau : float, array or None
        Gradient-flow training time > 0 (None or inf: converged denoiser).
    T, beta_min, beta_max : int, float, float
        Linear DDPM schedule.
    mean_norm : float or array
        ||mu||^2 / d >= 0, mu in a generic direction.
    d : int or None
        None: the d -> inf limit.  An integer: the finite-d deterministic equivalent built on
        the d population eigenvalues, with N = round(n_over_d d) (ratio d/(N-1), see module
        docstring); totals (nats) are then reported too.
    dps : None
        Only double precision is available (log space handles the large ranges); any other
        value raises :class:`ParameterError`.

    Returns
    -------
    LDMResult
    """
    if dps is not None:
        check_dps(dps)
        raise ParameterError("dps", "None for ldm (double precision with log-space arithmetic)",
                             dps)
    tau_arr, T, d = check_common(n_over_d=n_over_d, lam=lam, tau=tau, T=T, beta_min=beta_min,
                                 beta_max=beta_max, mean_norm=mean_norm, d=d)
    pop = population(spectrum, d)
    b = np.broadcast_arrays(*(np.asarray(x, dtype=float) for x in
                              (n_over_d, lam, tau_arr, mean_norm, beta_min, beta_max)))
    shape = b[0].shape
    flat = [x.ravel() for x in b]
    rows, gammas, Ns = [], [], []
    cache: dict = {}
    for nd, lm, tu, mn, bmin, bmax in zip(*flat):
        if d is None:
            gamma, gm1, scale, n_inv, N = 1.0 / nd, (1.0 - nd) / nd, 1.0, 0.0, math.inf
            check_degenerate(nd, 1.0, lm, tu, "n_over_d <= 1")
        else:
            N = sample_size(nd, d)
            gamma, scale, n_inv = d / (N - 1), (N - 1) / N, 1.0 / N
            gm1 = (d - N + 1) / (N - 1)
            check_degenerate(N - 1, d, lm, tu, "N <= d + 1")
        key = (gamma, scale)
        if key not in cache:
            cache[key] = spectral(pop, gamma, gm1, scale, d)
        sch = Schedule.linear(T, bmin, bmax)
        rows.append(_point(pop, cache[key], sch, lm, tu, mn, n_inv))
        gammas.append(gamma)
        Ns.append(N)
    out = {k: np.array([r[k] for r in rows]).reshape(shape) for k in rows[0] if k[-2:] != "_t"}
    for k in ("test_error_t", "train_error_t"):
        out[k] = np.array([r[k] for r in rows]).reshape(shape + (T,))
    params = dict(n_over_d=b[0], spectrum=pop.label if isinstance(spectrum, str) else "array",
                  lam=b[1], tau=b[2], T=T, beta_min=b[4], beta_max=b[5], mean_norm=b[3], d=d,
                  gamma=np.array(gammas).reshape(shape))
    if d is not None:
        params["N"] = np.array(Ns).reshape(shape)
        with np.errstate(over="ignore"):
            totals = {t: d * out[t + "_per_dim"] for t in _TOTALS}
    else:
        totals = {}
    return LDMResult(params=params, **out, **totals)


def _point(pop: Population, sp_: Spectral, sch: Schedule, lam, tau, mean_norm, n_inv) -> dict:
    """All outputs at one parameter point from the contour quadrature and the kernel."""
    v, r, (q2, w2, cw2) = maps_z(sp_.z, sch, lam, tau)
    if np.any(v.real <= 0):
        raise ConvergenceError("ldm: generated variance not analytic-positive on the contour "
                               f"(lam={lam}, tau={tau})")
    k = 1 - r

    def I(f, a):  # bulk integral of f against mu_A, a: 0 -> A = 1, 1 -> Sigma^-1, 2 -> Sigma
        return float(np.imag(sp_.wt[a] @ f))

    # kernel of C (c = 0), evaluated in real log space
    m0 = maps(np.zeros(1), sch, lam, tau)
    lv0, lr0 = float(m0.log_v[0]), float(m0.log_r[0])
    k0 = -math.expm1(lr0)
    M1, Msi, Ms = sp_.kernel
    has_kernel = M1 > 0
    if has_kernel and min(Msi, Ms) <= 0:
        raise ConvergenceError("ldm: the O(1/d) correction exceeds an overlap mass of the "
                               "kernel of C (d too small for the finite-d expansion)")
    v0 = math.exp(lv0)
    tr_v = I(v, 1) + Msi * v0
    logdet_g = I(np.log(v), 0) + (M1 * lv0 if has_kernel else 0.0)
    # sample-mean term tr(K Sigma^-1 K Sigma)/d with K = k0 I + (K - k0 I) (two resolvents)
    two = 0.0 if sp_.pair is None else (k0**2 + 2 * k0 * (I(k, 0) + M1 * k0 - k0)
                                        + _two_resolvent(sp_, k - k0))
    maha_gd = _eq.mahalanobis(mean_norm, I(r**2, 1) + Msi * math.exp(2 * lr0), n_inv, two,
                              _f=_F)
    kl_gd = _eq.gaussian_kl(tr_v, logdet_g, pop.mean_log, maha_gd, _f=_F)
    # KL(data || gen): the kernel term mass (1 + k0^2/N) / v0 may be astronomically large
    bulk_dg = _eq.gaussian_kl(I(1 / v, 2), pop.mean_log, logdet_g,
                              _eq.mahalanobis(mean_norm, I(r**2 / v, 0), n_inv, I(k**2 / v, 2),
                                              _f=_F), _f=_F)
    if has_kernel:
        bulk_dg += 0.5 * M1 * mean_norm * math.exp(2 * lr0 - lv0)
        log_big = math.log(Ms) + math.log1p(n_inv * k0**2) - lv0 - math.log(2)
        log_kl_dg = _log_add(log_big, bulk_dg)
    else:
        log_kl_dg = math.log(bulk_dg) if bulk_dg > 0 else -math.inf
    kl_dg = math.exp(log_kl_dg) if log_kl_dg < 709 else math.inf
    # oracle: the population denoiser at c = lambda_nu, xbar = mu
    mo = maps(pop.lam, sch, lam, tau, errors=False)
    log_ratio = mo.log_v - np.log(pop.lam)  # smooth in lambda: integrated as one function
    maha_o = _eq.mahalanobis(mean_norm, pop.weight @ np.exp(2 * mo.log_r - np.log(pop.lam)),
                             0.0, 0.0, _f=_F)
    kl_o = _eq.gaussian_kl(pop.weight @ np.exp(log_ratio), pop.weight @ log_ratio, 0.0, maha_o,
                           _f=_F)
    total_v = I(v, 0) + M1 * v0
    span = 1.0 - sp_.null * v0 / total_v
    # per-step errors (arrays over t)
    iq2 = np.imag(q2 @ sp_.wt[0]) + M1 * m0.q2[:, 0]
    isw2 = np.imag(w2 @ sp_.wt[2]) + Ms * m0.w2[:, 0]
    icw2 = np.imag(cw2 @ sp_.wt[0])
    test, train = _eq.errors(iq2, isw2, icw2, n_inv, sch.abar, _f=_F)
    return dict(kl_gen_data_per_dim=kl_gd, kl_data_gen_per_dim=kl_dg, kl_oracle_per_dim=kl_o,
                excess_kl_per_dim=kl_gd - kl_o, span_fraction=span,
                log_kl_data_gen_per_dim=log_kl_dg, test_error_t=test, train_error_t=train)


def _log_add(log_a: float, b: float) -> float:
    """log(exp(log_a) + b) for b of any sign, without overflow."""
    if log_a > 700:
        return log_a + math.log1p(b * math.exp(-log_a))
    total = math.exp(log_a) + b
    return math.log(total) if total > 0 else -math.inf
