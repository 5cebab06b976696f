"""Learning curves of linear diffusion models (conventions section 2), d -> inf and finite d.

The trained denoisers and the DDPM sampler are spectral functions of the centred sample
covariance ``C``, so the generated law is ``N(K(C) xbar, V(C))`` with per-eigenvalue maps
``k_0(c)`` and ``v_0(c)`` obtained by iterating the derived one-step maps
(``derivations/ldm.py``) over ``t = T..1``, vectorised over eigenvalues.  The KL
divergences, errors and span fraction are traces of spectral functions of ``C``, weighted by
``Sigma^{-1}``, ``1`` or ``Sigma``; their deterministic equivalents come from Silverstein's
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
  Gauss-Legendre panels in ``log u`` down to ``u = 1e-13`` plus one atom for the tail
  ``u < 1e-13`` with its exact mass and mean (for ``K >= 1`` the normalised spectrum has no
  d -> inf limit: its bulk vanishes like ``d^{1-K}``); ``"file:PATH"`` or an array: the
  given eigenvalues, used as they are (no normalisation), as an equally weighted population
  law when ``d=None`` and as the ``d`` population eigenvalues otherwise.  Eigenvalues must
  lie in ``[1e-250, 1e250]`` and span at most 250 decades (so that ``Sigma^{+-1}``-weighted
  traces and the contour stay within double precision); equal eigenvalues are merged into
  one atom.
* ``N <= d + 1`` (finite d) or ``n_over_d <= 1`` (d -> inf) with ``lam = 0`` and
  ``tau = inf`` is divergent: the last step maps the kernel of ``C`` to a point
  (``a_1(0) = 0``), both KLs are infinite, and :class:`ParameterError` is raised.
  Astronomically large but finite ``kl_data_gen`` values (e.g. very long training without
  ridge) are computed in log space: ``log_kl_data_gen_per_dim`` always holds the natural
  log, the value itself is a float or ``inf`` when not representable.

Numerics
--------
* Contour: in ``w = log z`` it runs up the real-axis crossing right of the spectrum, left
  along ``Im w = pi/4`` and down to the crossing left of it, on Gauss-Legendre panels (double
  precision: width 1, 10 nodes, 1e-11 agreement with panels of width 0.2; with ``dps``:
  width 2, about ``1.6 (dps + 5)`` nodes).  Its ends enclose
  ``[lambda_min (1 - sqrt(gamma))^2, lambda_max (1 + sqrt(gamma))^2]`` (times the scale) with
  margins ``e^2`` and ``e``; near the hard edge ``gamma = 1`` the left end stops at
  ``1e-36 lambda_min`` (``10^-2(dps + 4) lambda_min`` with ``dps``), where the ``c^{-1/2}``
  density leaves out less than ``1e-17`` of the mass.  Points of one call share the panels,
  so the per-eigenvalue maps are evaluated once per (lam, tau, schedule) on the union of
  their contours, and Silverstein's equation is continued along all contours at once.
* Kernel of C: ``sum w s/(s + lambda) = (gamma - 1)/gamma`` in ``s = 1/mt0``, a monotone
  equation solved by Newton in ``log s`` safeguarded by bisection on a proven bracket.
* Wide spectra: every per-atom quantity is formed from ``R = 1/(1 + lambda mt)`` and
  ``P = 1 - R`` (no power of ``lambda mt``), ``h = 1 - gamma S2`` and the two-resolvent
  denominator without cancellation, and the constant ``-tr(Sigma^{-1})/d`` of
  ``z m_{Sigma^-1}(z)`` (a pole at 0, off the contour) is dropped.  Traces of ``v_0`` and
  ``(1 - k_0)^2`` weighted by ``Sigma^{-1}`` are their value at ``c = 0`` times the exact
  mass plus the integral of the exact differences ``v_0(c) - v_0(0)``, ``r(c) - r(0)``
  (closed-form ``a_t(c) - a_t(0)``), and ``excess_kl_per_dim`` is assembled from those
  differences: it stays accurate when ``Sigma`` has eigenvalues hundreds of decades below
  the noise scale, where both KLs are astronomically large.  ``log v_0`` is continued along
  the contour (without ridge near the hard edge ``v_0`` turns by nearly ``pi``), and the
  oracle KL is summed per eigenvalue from ``e^y - 1 - y`` (no round-off of O(1) terms).
* ``dps``: the same algorithm in mpmath at ``dps + 10`` working digits on numpy object
  arrays (direct products instead of log space, large matrix products in exact integer
  arithmetic); inputs are taken as the decimals their shortest ``repr`` names and outputs
  are mpmath numbers rounded to ``dps`` digits; the per-step recursions and the node-pair
  kernels run in gmpy2.  Its cost grows with ``T`` times the number of contour nodes, with the
  square of that number for finite ``d`` (the two-resolvent term), and with the number of
  distinct eigenvalues.  Not available: the continuum power law (``d=None``: about a thousand
  population atoms at 30 digits, minutes per point; pass ``d``) and contours of more than
  2000 nodes, or 600 with finite ``d`` (near the hard edge, or spectra spanning tens of
  decades): :class:`ParameterError`.
"""
from __future__ import annotations

import dataclasses
import functools
import math
import types

import mpmath
import numpy as np
from mpmath import libmp

from ._backend import NUMPY, check_dps, from_gmpy, gmpy_context, gmpy_namespace, mp_namespace, to_gmpy
from ._generated import ldm as _eq
from ._resources import check_memory
from ._results import GridResult
from .errors import ConvergenceError, ParameterError, check_integer, check_range
from .population import Population, parse_spectrum

_F = types.SimpleNamespace(**vars(NUMPY), logaddexp=np.logaddexp, log1p=np.log1p)
_H = np.pi / 4  # contour angle: Gamma+ runs on arg z = pi/4 between the two real crossings
_GL_X, _GL_W = np.polynomial.legendre.leggauss(10)
_U_MIN_LOG = math.log(1e-13)  # continuum power law: quantiles u below this form one atom
_Y_PANEL = 3.0  # width of its Gauss-Legendre panels in log u (1e-9 agreement with 0.5)
_NEWTON_TOL = 1e-13
_FLOOR_LOG = math.log(1e-36)  # contour floor / lambda_min in double precision
_EIG_RANGE = (1e-250, 1e250, 1e250)  # allowed eigenvalues and max/min ratio
_MP_MAX_NODES = 2000  # dps: contours longer than this (hard edge) would take hours
_MEAN_MAX = 1e300  # double precision: mean_norm tr Sigma^-1/d above this overflows the KLs
# dps with finite d: the two-resolvent term pairs every node with every other; beyond this the
# K^2 pairs at working precision take minutes (442 nodes: 8 s of a 14 s point here)
_MP_MAX_PAIR_NODES = 600
_BLOCK = 1 << 14  # double precision: entries per block of (steps x nodes) maps (cache-sized:
# blocks of a few MB run several times slower, allocation and memory traffic dominating)


# -- arithmetic back ends --------------------------------------------------------------------
class _Backend:
    """Arithmetic of one solve: double precision on numpy arrays, or mpmath on object arrays.

    ``f`` is the namespace of the generated code (elementwise on arrays in both cases);
    tolerances and the quadrature order follow the precision.  The mpmath back end must be
    used inside ``mpmath.workdps(dps + 10)``; its per-eigenvalue maps need no log space
    (mpmath exponents do not overflow).
    """

    def __init__(self, dps: int | None = None):
        self.dps = dps
        self.mp = dps is not None
        if not self.mp:
            self.f = _F
            self.gl = self.gl_vertical = (_GL_X, _GL_W)
            self.panel = 1
            self.floor_log = _FLOOR_LOG
            self.tol, self.loose, self.resid = _NEWTON_TOL, 1e-9, 1e-10
            self.mass, self.branch = 1e-7, 1e-12
            self.ytol = 4 * np.finfo(float).eps  # kernel solve: relative accuracy in s
            self.pi, self.inf, self.H = math.pi, math.inf, _H
            self.imag, self.real = np.imag, np.real
            return
        ew = np.frompyfunc
        ns = mp_namespace(dps + 10)
        self.f = types.SimpleNamespace(**{**vars(ns), "sqrt": ew(mpmath.sqrt, 1, 1),
                                          "log": ew(mpmath.log, 1, 1), "exp": ew(mpmath.exp, 1, 1),
                                          "expm1": ew(mpmath.expm1, 1, 1),
                                          "log1p": ew(mpmath.log1p, 1, 1)})
        # Gauss-Legendre error rho^{-2n} (Bernstein ellipse through the nearest singularity):
        # panels of width 2 in a strip of half-width pi/4, rho = 2.06 (near the trapezoid
        # limit of nodes per unit length); the vertical segments (length pi/4) lie at least
        # one unit from the spectrum, rho = 5.3
        self.panel = 2
        self.gl = _gauss_legendre_mp(math.ceil(1.595 * (dps + 5)), dps + 10)
        self.gl_vertical = _gauss_legendre_mp(math.ceil(0.69 * (dps + 5)), dps + 10)
        self.floor_log = math.log(10.0) * -2 * (dps + 4)
        eps = mpmath.mpf(10) ** -(dps + 10)
        self.tol, self.loose, self.resid, self.ytol = eps * 100, eps * 10**5, eps * 10**6, eps * 10
        self.mass, self.branch = mpmath.mpf(10) ** -dps, eps * 10**5
        self.pi, self.inf, self.H = mpmath.pi, mpmath.inf, mpmath.pi / 4
        self.imag = ew(lambda x: x.imag, 1, 1)
        self.real = ew(lambda x: x.real, 1, 1)

    def num(self, x):
        """A float or array in this precision (mpmath: the decimal that repr names)."""
        if not self.mp:
            return np.asarray(x, dtype=float) if np.ndim(x) else float(x)
        if np.ndim(x) == 0:
            return mpmath.mpf(repr(float(x)))
        return np.array([mpmath.mpf(repr(float(v))) for v in np.ravel(x)],
                        dtype=object).reshape(np.shape(x))

    def array(self, values):
        """A 1-d array of numbers already in this precision."""
        return np.array(list(values), dtype=object) if self.mp else np.asarray(values)

    def wrap(self, x):
        """x as a 0-d object array in mpmath (a no-op in double precision).

        An mpmath number on the left of a numpy array makes mpmath format the whole array
        before deferring to numpy (several times slower than the product itself); a 0-d
        array hands the operation to numpy directly.
        """
        return np.array(x, dtype=object) if self.mp else x

    def matmul(self, X, Y):
        """X @ Y; in mpmath by exact integer products (see :func:`_mp_matmul`)."""
        return _mp_matmul(X, Y) if self.mp else X @ Y

    def finite(self, x) -> bool:
        """Whether every entry of x is finite."""
        if self.mp:
            return all(mpmath.isfinite(v) for v in np.ravel(x))
        return bool(np.isfinite(x).all())

    def has_nan(self, x) -> bool:
        """Whether any entry of x is nan."""
        if self.mp:
            return any(mpmath.isnan(v) for v in np.ravel(x))
        return bool(np.isnan(x).any())

    def bulk(self, fn, *args):
        """Generated ``fn`` on arrays: the nodes x nodes kernels of a high-precision solve run
        in gmpy2 at mpmath's working precision (several times faster than mpmath objects)."""
        if not self.mp:
            return fn(*args, _f=self.f)
        with gmpy_context():
            return from_gmpy(fn(*(to_gmpy(np.asarray(x, dtype=object)) for x in args), _f=gmpy_namespace()))

    def exp_or_inf(self, x):
        """exp(x), or inf where a double would overflow (mpmath numbers never do)."""
        if self.mp:
            return mpmath.exp(x)
        return math.exp(x) if x < 709 else math.inf


def _mp_matmul(X, Y):
    """X @ Y for 1-d or 2-d object arrays of mpmath numbers, in exact integer arithmetic.

    Each row of X and each column of Y is scaled by a power of two to integers of the working
    precision plus 20 bits; numpy's object matmul then multiplies Python integers, about 50
    times faster than mpmath complex numbers, and each result keeps the working precision
    relative to the largest products of its row and column.
    """
    prec = mpmath.mp.prec + 20
    x2, y2 = np.atleast_2d(X), (Y[:, None] if Y.ndim == 1 else Y)

    def ints(M, axis):  # real and imaginary integer parts, and the scale exponents
        mags = np.array([[mpmath.mag(v) if v else -10**9 for v in row] for row in
                         (M if axis == 1 else M.T)], dtype=object)
        ex = [max(row) for row in mags]
        part = [[[libmp.to_fixed(mpmath.mpmathify(v).real._mpf_, prec - e),
                  libmp.to_fixed(mpmath.mpmathify(v).imag._mpf_, prec - e)] for v in row]
                for row, e in zip(M if axis == 1 else M.T, ex)]
        part = np.array(part, dtype=object)
        re, im = part[..., 0], part[..., 1]
        return (re, im, ex) if axis == 1 else (re.T, im.T, ex)

    xr, xi, ex = ints(x2, 1)
    yr, yi, ey = ints(y2, 0)
    p1, p2, p3 = xr @ yr, xi @ yi, (xr + xi) @ (yr + yi)  # Gauss: three real products
    mp_prec = mpmath.mp.prec
    out = np.empty(p1.shape, dtype=object)
    for a in range(p1.shape[0]):
        for b in range(p1.shape[1]):
            e = -(2 * prec - ex[a] - ey[b])
            re = libmp.from_man_exp(p1[a, b] - p2[a, b], e, mp_prec, "n")
            im = libmp.from_man_exp(p3[a, b] - p1[a, b] - p2[a, b], e, mp_prec, "n")
            out[a, b] = mpmath.mpc(re, im)
    if Y.ndim == 1:
        out = out[:, 0]
    return out[0] if X.ndim == 1 else out


@functools.lru_cache(maxsize=8)
def _gauss_legendre_mp(n: int, dps: int):
    """n-point Gauss-Legendre nodes and weights on [-1, 1] at dps digits (Newton on P_n)."""
    with mpmath.workdps(dps + 5):
        xs, ws = [], []
        for i in range(1, n + 1):
            x = mpmath.cos(mpmath.pi * (i - mpmath.mpf(1) / 4) / (n + mpmath.mpf(1) / 2))
            for _ in range(100):
                p0, p1 = mpmath.mpf(1), x
                for k in range(2, n + 1):
                    p0, p1 = p1, ((2 * k - 1) * x * p1 - (k - 1) * p0) / k
                dp = n * (x * p1 - p0) / (x * x - 1)
                dx = p1 / dp
                x -= dx
                if abs(dx) < mpmath.mpf(10) ** -(dps + 3):
                    break
            else:
                raise ConvergenceError("ldm: Gauss-Legendre nodes did not converge")
            xs.append(x)
            ws.append(2 / ((1 - x * x) * dp * dp))
    order = np.argsort([float(x) for x in xs])
    return (np.array([+xs[i] for i in order], dtype=object),
            np.array([+ws[i] for i in order], dtype=object))


# -- schedule and per-eigenvalue maps --------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Schedule:
    """Linear DDPM schedule: beta_t, abar_t, 1 - abar_t, 1 - abar_{t-1}, t = 1..T."""

    beta: np.ndarray
    abar: np.ndarray
    om: np.ndarray
    omp: np.ndarray

    @classmethod
    def linear(cls, T: int, beta_min, beta_max, backend: _Backend | None = None) -> "Schedule":
        """The schedule in double precision, or in the precision of ``backend``."""
        B = backend or _DOUBLE
        t = B.array(range(1, T + 1)) * (mpmath.mpf(1) if B.mp else 1.0)
        beta = _eq.schedule_beta(t, T, beta_min, beta_max, _f=B.f)
        log_abar = np.cumsum(B.f.log1p(-beta))
        om = -B.f.expm1(log_abar)  # 1 - abar without cancellation
        zero = B.array([0 * om[0]])
        return cls(beta, B.f.exp(log_abar), om, np.concatenate([zero, om[:-1]]))


def _log_decay(c, sch: Schedule, lam: float, tau: float, lo: int, hi: int):
    """log E = -tau (m + lam) for steps lo+1..hi (rows); -inf for the converged denoiser."""
    ab, om = sch.abar[lo:hi, None], sch.om[lo:hi, None]
    if math.isinf(tau):
        return np.full(np.broadcast(c, ab).shape, -np.inf)
    return _eq.log_decay(c, ab, om, lam, tau, _f=_F)


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
    """The derived DDPM step over t = T..1 for every real eigenvalue in ``c``, in log space.

    Double precision (v_0(c) may be astronomically small: no ridge, long training);
    ``errors=False`` skips the per-step denoiser terms (q2, w2, cw2 are then None).
    """
    c = np.asarray(c, dtype=float)
    T = len(sch.beta)
    # v_0 = P_T + sum_{t>=2} s_t^2 P_{t-1}, P_k = prod_{u<=k} a_u^2 (derivations/ldm.py, part 4):
    # log P by cumulative sums, log v_0 by a log-sum-exp over t streamed in blocks of steps
    log_p, top, acc = np.zeros_like(c), np.full_like(c, -np.inf), np.zeros_like(c)
    rows = max(1, min(T, _BLOCK // max(1, c.size)))
    for lo in range(0, T, rows):
        hi = min(T, lo + rows)
        ab, om, omp, beta = (x[lo:hi, None] for x in (sch.abar, sch.om, sch.omp, sch.beta))
        log_e = _log_decay(c, sch, lam, tau, lo, hi)
        with np.errstate(divide="ignore"):  # log 0 = -inf is exact (kernel, no ridge)
            log_a = _eq.log_step(c, ab, om, omp, beta, lam, log_e, _f=_F)
            log_s2 = np.log(sch.beta[lo:hi, None])
        if lo == 0:
            log_s2[0] = -np.inf  # s_1 = 0
        cum = log_p + np.cumsum(2 * log_a, axis=0)
        terms = log_s2 + np.concatenate([log_p[None], cum[:-1]])
        log_p = cum[-1]
        new_top = np.maximum(top, terms.max(axis=0))
        with np.errstate(invalid="ignore"):  # -inf - (-inf): no term yet
            acc = (np.where(np.isneginf(top), 0.0, acc * np.exp(top - new_top))
                   + np.exp(terms - new_top).sum(axis=0))
        top = new_top
    # u_T ~ N(0, I): the last term is P_T itself
    new_top = np.maximum(top, log_p)
    with np.errstate(divide="ignore", invalid="ignore"):
        acc = np.where(np.isneginf(top), 0.0, acc * np.exp(top - new_top)) + np.exp(log_p - new_top)
        log_v = np.where(np.isneginf(new_top), -np.inf, new_top + np.log(acc))
    log_r = 0.5 * np.log(sch.abar[-1]) + log_p / 2
    if not errors:
        return Maps(log_v, log_r, None, None, None)
    ab, om = sch.abar[:, None], sch.om[:, None]
    q2, w2, cw2 = _eq.denoiser_terms(c, ab, om, lam, _log_decay(c, sch, lam, tau, 0, T), _f=_F)
    return Maps(log_v, log_r, q2, w2, np.broadcast_to(cw2, q2.shape))


def _zero_maps(B: _Backend, sch: Schedule, lam, tau) -> tuple:
    """The maps at c = 0 (the kernel of C) and the steps a_t(0), t = 1..T.

    Double precision in log space (v_0(0) may be astronomically small); mpmath directly.
    """
    T = len(sch.beta)
    zero = B.array([0 * sch.beta[0]])
    a0, q2, w2, cw2, _ = _step_terms(B, zero, sch, 0, T, lam, tau)
    a0 = a0[:, 0]
    if not B.mp:
        return maps(np.zeros(1), sch, lam, tau), a0
    s2 = sch.beta.copy()
    s2[0] = 0 * s2[0]
    P = np.cumprod(a0 * a0)
    v0 = s2[1:] @ P[:-1] + P[-1]
    r0 = mpmath.sqrt(sch.abar[-1]) * np.prod(a0)
    return Maps(B.f.log(B.array([v0])), B.f.log(B.array([r0])), q2, w2, cw2), a0


def _step_terms(B: _Backend, z, sch: Schedule, lo: int, hi: int, lam, tau, errors=True):
    """(a_t, q_t^2, W_t^2, z W_t^2, a_t(z) - a_t(0)) for t = lo+1..hi (rows) at the nodes z.

    ``errors=False`` leaves the three denoiser terms as None.
    """
    ab, om, omp, beta = (x[lo:hi, None] for x in (sch.abar, sch.om, sch.omp, sch.beta))
    if math.isinf(tau):
        a, q, w, da = _eq.step_terms_z_conv(z, ab, om, omp, beta, B.wrap(lam), _f=B.f)
    else:
        a, q, w, da = _eq.step_terms_z(z, ab, om, omp, beta, B.wrap(lam), B.wrap(tau), _f=B.f)
    a, q, w, da = np.broadcast_arrays(a, q, w, da)
    if not errors:
        return a, None, None, None, da
    return a, q * q, w * w, (z * w) * w, da


def _delta_maps(B: _Backend, z, sch: Schedule, lam, tau, a0, W=None):
    """v_0(z) - v_0(0) and r(z) - r(0) at the nodes z (complex or real), and error integrals.

    With P_t = prod_{u<=t} a_u^2 and L_t = prod_{1<=u<=t} a_u^2 (0-based rows; the first row
    kept apart, as a_1(0) may vanish): P_t(z) - P_t(0) = L_t (d_0 + a_1(0)^2 S_t),
    S_t = sum_{1<=u<=t} L_{u-1}(0) delta(a_u^2)/L_u(z), delta(a^2) = delta a (a(z) + a(0)), and
    v_0 = P_T + sum_{t>=2} s_t^2 P_{t-1} (derivations/ldm.py, parts 2 and 4); the same for
    r = sqrt(abar_T) prod a_t with a in place of a^2.  Every term is a product of accurate
    factors: the differences keep their relative precision however close z is to 0.
    ``W`` is None or (3, nodes, n) weights of n contours scattered on the nodes; then the
    bulk (I_1[q_t^2], I_Sigma[W_t^2], I_1[c W_t^2]), each (T, n), come back as well.
    Steps go in blocks of rows (one row in mpmath) so memory stays bounded.
    """
    if B.mp:
        return _delta_maps_mp(B, z, sch, lam, tau, a0, W)
    T = len(sch.beta)
    s2 = sch.beta.copy()
    s2[0] = 0 * s2[0]  # s_1 = 0
    one = 1.0
    shape, dtype = z.shape, z.dtype
    Lr, S, Sr, sum_l, sum_ls = (np.full(shape, one * k, dtype=dtype) for k in (1, 0, 0, 0, 0))
    Lr0 = one
    err = None if W is None else np.empty((3, T, W.shape[2]))
    rows = max(1, min(T, _BLOCK // max(1, z.size)))
    for lo in range(0, T, rows):
        hi = min(T, lo + rows)
        a, q2, w2, cw2, da = _step_terms(B, z, sch, lo, hi, lam, tau, W is not None)
        b0 = a0[lo:hi, None]
        if lo == 0:  # the first step apart: identity in the products, no share in the sums
            first = (da[0] * (a[0] + b0[0, 0]), b0[0, 0] ** 2, da[0], b0[0, 0])
            a, da, b0 = a.copy(), da.copy(), b0.copy()
            a[0], da[0], b0[0] = one, 0 * one, one
        # products of a (for r) and of a^2 (for v) over the steps after the first
        Lrb, Lr0b = np.cumprod(a, axis=0), np.cumprod(b0, axis=0)
        if lo:
            Lrb, Lr0b = Lr * Lrb, Lr0 * Lr0b
        lr0_prev = np.concatenate([[Lr0], Lr0b[:-1, 0]]).astype(dtype)
        Sr = Sr + _dot("t,tn->n", lr0_prev, da / Lrb)
        Lb = Lrb * Lrb
        Sb = np.cumsum((lr0_prev**2)[:, None] * (da * (a + b0) / Lb), axis=0)
        if lo:
            Sb = Sb + S
        l_prev = np.concatenate([(Lr * Lr)[None], Lb[:-1]])
        sum_l = sum_l + _dot("t,tn->n", s2[lo:hi], l_prev)
        sum_ls = sum_ls + _dot("t,tn->n", s2[lo:hi], l_prev * np.concatenate([S[None], Sb[:-1]]))
        Lr, Lr0, S = Lrb[-1], Lr0b[-1, 0], Sb[-1]
        if W is not None:  # many contours at once: a real matrix product, worth BLAS
            mul = (lambda x, y: x @ y) if W.shape[2] > 8 else (lambda x, y: _dot("tn,nk->tk", x, y))
            err[0, lo:hi] = B.imag(mul(q2, W[0]))
            err[1, lo:hi] = B.imag(mul(w2, W[2]))
            err[2, lo:hi] = B.imag(mul(cw2, W[0]))
    # dP_t = L_t (d_1 + a_1(0)^2 S_t): v_0 - v_0(0) = sum_{t>=2} s_t^2 dP_{t-1} + dP_T
    d1, A1 = first[0], first[1]
    dv = d1 * sum_l + A1 * sum_ls + Lr * Lr * (d1 + A1 * S)
    return dv, math.sqrt(sch.abar[-1]) * Lr * (first[2] + first[3] * Sr), err


def _dot(spec: str, *ops):
    """A contraction by numpy's own loops: the many medium-size products of one solve would,
    through a threaded BLAS, mostly wait for its threads on a busy machine."""
    return np.einsum(spec, *ops, optimize=False)


def _delta_maps_mp(B: _Backend, z, sch: Schedule, lam, tau, a0, W):
    """:func:`_delta_maps` in high precision, one step at a time by the recursions it sums.

    dP_t = dP_{t-1} a_t^2 + P_{t-1}(0) delta(a_t^2) and dPi_t = dPi_{t-1} a_t + Pi_{t-1}(0) delta a_t
    (Pi the products of a): fewer operations than the blocked sums when steps come one by one.
    The T steps at every node are the cost of a high-precision solve, so they run in gmpy2 at
    mpmath's working precision (:func:`rmtsolve._backend.to_gmpy`); the sums come back exactly.
    """
    T = len(sch.beta)
    try:
        return _delta_maps_gmpy(B, z, sch, lam, tau, a0, W, T)
    except ArithmeticError:  # gmpy2's exponent range (OverflowError, gmpy2.RangeError)
        raise ParameterError("tau, dps", "such that tau (abar c + 1 - abar + lam) stays below about 7e8 with "
                             "dps (exp(-tau (m + lam)) leaves the working precision's exponent range)",
                             float(tau)) from None


def _delta_maps_gmpy(B: _Backend, z, sch: Schedule, lam, tau, a0, W, T):
    """The loop of :func:`_delta_maps_mp` in gmpy2."""
    import gmpy2

    with gmpy_context():
        G = types.SimpleNamespace(f=gmpy_namespace(), wrap=lambda x: np.array(x, dtype=object))
        zg, a0g, Wg = to_gmpy(z), to_gmpy(a0), None if W is None else to_gmpy(W)
        sg = Schedule(*(to_gmpy(x) for x in (sch.beta, sch.abar, sch.om, sch.omp)))
        lam_g, tau_g = to_gmpy(lam), to_gmpy(tau)
        zero = gmpy2.mpfr(0)
        dP, dPi, dv = (np.full(z.shape, zero, dtype=object) for _ in range(3))
        P0 = Pi0 = gmpy2.mpfr(1)
        err = None if W is None else np.empty((3, T, W.shape[2]), dtype=object)
        imag = np.frompyfunc(lambda v: v.imag, 1, 1)
        for t in range(T):
            a, q2, w2, cw2, da = (x[0] if x is not None else None for x in
                                  _step_terms(G, zg, sg, t, t + 1, lam_g, tau_g, W is not None))
            b0 = a0g[t]
            if t:  # s_1 = 0; v_0 - v_0(0) collects s_t^2 dP_{t-1}
                dv = dv + dP * sg.beta[t]
            dP = dP * (a * a) + (da * (a + b0)) * P0
            dPi = dPi * a + da * Pi0
            P0, Pi0 = P0 * b0 * b0, Pi0 * b0
            if W is not None:
                err[0, t] = imag(q2 @ Wg[0])
                err[1, t] = imag(w2 @ Wg[2])
                err[2, t] = imag(cw2 @ Wg[0])
        out = (from_gmpy(dv + dP), from_gmpy(dPi) * mpmath.sqrt(sch.abar[-1]),
               None if err is None else from_gmpy(err))
    return out


# -- population spectra ----------------------------------------------------------------------
def population(spectrum, d: int | None) -> Population:
    """The population law of ``spectrum`` (see the module docstring) for LDM, double precision.

    The shared parser (:func:`rmtsolve.population.parse_spectrum`) reads it; LDM needs every
    eigenvalue > 0 (its KLs involve Sigma^{-1}), within [1e-250, 1e250] and spanning at most
    250 decades (the contour then stays within double precision, hard edge included).
    """
    spec = parse_spectrum(spectrum)
    if spec.kind == "values" and np.any(spec.values <= 0):
        raise ParameterError("spectrum", "a non-empty list of finite positive eigenvalues", spec.label)
    if spec.kind == "isotropic" or (d is None and spec.is_isotropic):
        return Population(np.ones(1), np.ones(1), 0.0, spec.label)
    if d is not None or spec.kind == "values":
        vals = spec.ldm_eigenvalues(d) if d is not None else np.asarray(spec.values, dtype=float)
        lo, hi, ratio = _EIG_RANGE
        if vals.min() < lo or vals.max() > hi or np.log(vals.max()) - np.log(vals.min()) > np.log(ratio):
            raise ParameterError("spectrum", "eigenvalues in [1e-250, 1e250] spanning at most 250 "
                                 "decades (max/min <= 1e250)",
                                 f"{spec.label}: min {vals.min():.3g}, max {vals.max():.3g}")
        w = np.full(vals.size, 1.0 / vals.size)
        return Population(vals, w, float(np.mean(np.log(vals))), spec.label, float(np.mean(vals)))
    if spec.K >= 1:
        raise ParameterError("spectrum, d", "powerlaw:K with K < 1 when d is None (for K >= 1 "
                             "the normalised spectrum has no d -> inf limit; pass d)", spec.label)
    # continuum power law: Gauss-Legendre panels in log u down to u_min = 1e-13, and the tail
    # u < u_min as one atom of its exact mass u_min and mean u_min^{1-K} (at lambda =
    # u_min^{-K}).  The Sigma-weighted traces (KL(data || gen)) grow like lambda there: the
    # tail holds u_min^{1-K} of tr Sigma (22% for K = 0.95), while the integrands are flat in
    # lambda that far out, so one atom with the right mass and mean leaves O(u_min) behind.
    body = spec.law(rule=(_Y_PANEL, _GL_X.size, _U_MIN_LOG))
    u_min = math.exp(_U_MIN_LOG)
    return dataclasses.replace(body, lam=np.append(body.lam, u_min ** -spec.K),
                               weight=np.append(body.weight * (1 - u_min), u_min))


def _atoms(B: _Backend, pop: Population, spectrum, d: int | None) -> Population:
    """The law as distinct atoms in the precision of ``B`` (equal eigenvalues merged).

    Merging is exact (every population sum is linear in the atoms) and spares the
    Silverstein sums and the two-resolvent kernel the repeated eigenvalues.
    """
    if not B.mp:
        if not pop.discrete or pop.lam.size == 1:
            return pop
        lam, inv = np.unique(pop.lam, return_inverse=True)
        if lam.size == pop.lam.size:
            return pop
        w = np.bincount(inv, weights=pop.weight)
        return dataclasses.replace(pop, lam=lam, weight=w)
    spec = parse_spectrum(spectrum)
    if pop.lam.size == 1:
        lam = mpmath.mpf(repr(float(pop.lam[0])))
        return Population(B.array([lam]), B.array([mpmath.mpf(1)]), mpmath.log(lam), pop.label, lam)
    if spec.kind == "powerlaw":  # finite d: nu^{-K} normalised to tr Sigma = d, in mpmath
        K = mpmath.mpf(repr(spec.K))
        raw = [mpmath.mpf(nu) ** -K for nu in range(1, d + 1)]
        total = mpmath.fsum(raw)
        vals = [x * d / total for x in raw]
    else:
        vals = [mpmath.mpf(repr(float(x))) for x in pop.lam]
    n = len(vals)
    mean_log = mpmath.fsum(mpmath.log(x) for x in vals) / n
    s2 = mpmath.fsum(vals) / n
    distinct: dict = {}
    for x in vals:
        distinct[x] = distinct.get(x, 0) + 1
    keys = sorted(distinct)
    return Population(B.array(keys), B.array(mpmath.mpf(distinct[k]) / n for k in keys),
                      mean_log, pop.label, s2)


# -- deterministic equivalents of spectral traces --------------------------------------------
@dataclasses.dataclass(frozen=True)
class Spectral:
    """Quadrature for int f dmu_A over the law of C, for A in (1, Sigma^{-1}, Sigma).

    z: contour nodes (values of c); wt: (3, nodes) complex weights such that
    int_bulk f dmu_A = Im(wt[A] @ f(z)); kernel: (3,) overlap masses of the atom at c = 0.
    At finite d both include the O(1/d) mean correction (at gamma = 1 the atom is the
    correction's hard-edge atom, inside the span); null: the kernel dimension of C over d.
    pair: None (d -> inf) or (dw, F++, F+-), the node differentials in log z and the
    two-resolvent kernel z_a z_b tr(Sigma^-1 Q(z_a) Sigma Q(z_b))/d at (z_a, z_b) and
    (z_a, conj z_b), for :func:`_two_resolvent`.  idx: the nodes' positions in the grid
    shared by the contours of one call.
    """

    z: np.ndarray
    wt: np.ndarray
    kernel: np.ndarray
    null: float
    pair: tuple | None = None
    idx: np.ndarray | None = None


def spectral(pop: Population, gamma: float, gamma_m1: float, scale: float,
             d: int | None = None) -> Spectral:
    """Solve Silverstein's equation along Gamma+ and build the contour quadrature.

    ``gamma_m1 = gamma - 1`` is passed exactly (it vanishes when N - 1 = d).  With ``d`` the
    finite-d mean correction (real Gaussian data) is added and the two-resolvent kernel built.
    Double precision, one contour (:func:`ldm` builds many at once).
    """
    return _spectra(_DOUBLE, pop, [(gamma, gamma_m1, scale)], d)[1][0]


def _ends(B: _Backend, pop: Population, gamma, gamma_m1, scale) -> tuple[float, float]:
    """Ends (in w = log z) of the contour around the non-zero spectrum of C.

    The spectrum of C lies in scale [lam_min (1 - sqrt g)^2, lam_max (1 + sqrt g)^2]; the
    crossings keep margins e (right) and e^2 (left).  The left end never goes below the
    floor (hard edge, gamma = 1).
    """
    g, gm1, sc = float(gamma), float(gamma_m1), float(scale)
    lo, hi = float(min(pop.lam)), float(max(pop.lam))
    w_hi = math.log(sc * hi) + 2 * math.log1p(math.sqrt(g)) + 1
    w_floor = math.log(sc * lo) + B.floor_log
    # 1 - sqrt(g) = -(g - 1)/(1 + sqrt(g)), exact through gamma_m1
    w_edge = (math.log(sc * lo) + 2 * (math.log(abs(gm1)) - math.log1p(math.sqrt(g))) - 2
              if gm1 != 0 else -math.inf)
    return max(w_edge, w_floor), w_hi


def _spectra(B: _Backend, pop: Population, points: list, d: int | None):
    """Contour quadratures for several (gamma, gamma - 1, scale) on one shared grid.

    The grid holds Gauss-Legendre panels of width ``B.panel`` in w = log z along
    Im w = pi/4, starting at the lowest left end, and the vertical segments at every contour
    end (ends rounded outwards to the grid).  Each contour runs from its right crossing up,
    left along the panels it needs and down to its left crossing; Silverstein's equation is
    continued along all contours at once (vectorised over them).  Returns the grid nodes z
    and one :class:`Spectral` per point (with ``idx`` into the grid).
    """
    (gx, gw), (vx, vw), h = B.gl, B.gl_vertical, B.panel
    n, nv = len(gx), len(vx)
    exact = [_ends(B, pop, *p) for p in points]
    w0 = min(e[0] for e in exact)
    ends = [(math.floor((lo - w0) / h), math.ceil((hi - w0) / h)) for lo, hi in exact]
    j1 = max(e[1] for e in ends)
    verts = sorted({k for e in ends for k in e})
    half, w0 = B.num(0.5), B.num(w0)
    ih = (mpmath.mpc(0, 1) if B.mp else 1j) * B.H
    w_pan = np.concatenate([w0 + h * (j + half + half * gx) for j in range(j1)]) + ih
    w_ver = np.concatenate([w0 + h * k + ih * half * (1 + vx) for k in verts])
    grid = B.f.exp(np.concatenate([w_pan, w_ver]))
    off = n * j1
    paths = []
    for klo, khi in ends:
        up = off + verts.index(khi) * nv + np.arange(nv)
        left = np.concatenate([j * n + np.arange(n - 1, -1, -1) for j in range(khi - 1, klo - 1, -1)])
        down = off + verts.index(klo) * nv + np.arange(nv - 1, -1, -1)
        dw = np.concatenate([ih * half * vw, np.tile(-half * h * gw[::-1], khi - klo),
                             -ih * half * vw[::-1]])
        paths.append((np.concatenate([up, left, down]), dw))
    K = max(p[0].size for p in paths)
    cap = _MP_MAX_NODES if d is None else _MP_MAX_PAIR_NODES
    if B.mp and K > cap:
        worst = points[max(range(len(paths)), key=lambda i: paths[i][0].size)]
        raise ParameterError("n_over_d, spectrum, dps", "such that the contour needs at most "
                             f"{cap} nodes with dps{'' if d is None else ' and d'} (this point: {K}); it spans "
                             "lambda_min (1 - sqrt(gamma))^2 .. lambda_max (1 + sqrt(gamma))^2, so "
                             "keep gamma = d/N (finite d: d/(N-1)) away from the hard edge 1 and "
                             "the spectrum within a few decades", float(worst[0]))
    pad = np.stack([np.concatenate([p[0], np.full(K - p[0].size, p[0][-1])]) for p in paths])
    gam = B.array([p[0] for p in points])
    gm1 = B.array([p[1] for p in points])
    scale = B.array([p[2] for p in points])
    x = grid[pad] / scale[:, None]
    mt_all = _continuation(B, x, pop, gam, gm1)
    out = []
    for i, (idx, dw) in enumerate(paths):
        k = idx.size
        out.append(_quadrature(B, pop, gam[i], gm1[i], scale[i], x[i, :k], mt_all[i, :k], dw,
                               idx, d))
    return grid, out


def _quadrature(B: _Backend, pop: Population, gamma, gamma_m1, scale, x, mt, dw, idx,
                d) -> Spectral:
    """The :class:`Spectral` of one contour from mt at its nodes x (values of C' = C/scale)."""
    lam, w = pop.lam, pop.weight
    A = np.stack([lam * 0 + 1, 1 / lam, lam])
    R, P = _eq.overlap_factors(mt[:, None], lam[None, :], _f=B.f)
    # x m_A(x) = -sum w A/(1 + lam mt) = -sum w A R (the resolvent term times x); dx = x dw.
    # For A = Sigma^{-1} the constant -sum w/lam (a pole at 0, off the contour, worth zero
    # here) is dropped (derivations/ldm.py, part 6): mt sum w R has no cancellation to suffer
    # when Sigma has eigenvalues far below the others
    rw = B.matmul(R, w)
    zmA = np.stack([-rw, mt * rw, -B.matmul(R, lam * w)])
    kernel, mt0 = _kernel(B, pop, gamma, gamma_m1, A * w)
    null = kernel[0]
    pair = None
    if d is not None:
        with np.errstate(divide="ignore", invalid="ignore"):  # singular h: reported below
            zmA = zmA + _fluctuation(B, R, P, mt, x, pop, gamma, gamma_m1, A) / d
        if gamma_m1 > 0:  # the kernel is the pole at 0: its overlap masses shift by -(z delta_A)(0)
            R0, P0 = _eq.overlap_factors(mt0, lam, _f=B.f)
            zero = B.array([0 * mt0])
            kernel = kernel - _fluctuation(B, R0[None, :], P0[None, :], B.array([mt0]), zero, pop,
                                           gamma, gamma_m1, A, at_kernel=True)[:, 0] / d
        elif gamma_m1 == 0:  # hard edge: the correction's atom at 0 (off the contour)
            rel = min(lam) / lam  # the atom is homogeneous in 1/lam: scaled, 1/lam^2 cannot overflow
            kernel = kernel + B.array([_eq.hard_edge_atom(w @ (a * rel), w @ rel, _f=B.f)
                                       for a in A]) / d
        pair = _pair(B, R, dw, pop, gamma, gamma_m1)
    wt = -zmA * dw / B.pi
    if not (B.finite(wt) and (pair is None or (B.finite(pair[1]) and B.finite(pair[2])))):
        raise ConvergenceError("ldm: the finite-d correction is singular on the contour (h = 1 - "
                               "gamma S2 vanishes to working precision: d too small for the "
                               f"spread of the spectrum) at gamma = {float(gamma)}")
    # consistency: bulk + atom at 0 must hold all the mass (the correction carries none)
    bulk = B.imag(wt[0].sum())
    if not abs(bulk + kernel[0] - 1) <= B.mass:
        raise ConvergenceError(f"ldm: contour quadrature lost mass ({float(bulk)!r} + "
                               f"{float(kernel[0])!r} vs 1) at gamma = {float(gamma)}")
    return Spectral(x * scale, wt, kernel, null, pair, idx)


def _fluctuation(B: _Backend, R, P, mt, z, pop: Population, gamma, gamma_m1, A,
                 at_kernel=False) -> np.ndarray:
    """(3, nodes): z delta_A(z), the O(1) correction of tr(A Q(z)) times z, A rows unweighted.

    ``at_kernel``: z = 0 at the kernel root, where h = gamma sum w R P (derivations/ldm.py,
    part 7) and the general form would cancel.
    """
    w = pop.weight
    fh, fp, f3 = _eq.fluctuation_terms(R, P, _f=B.f)
    gamma, gamma_m1 = B.wrap(gamma), B.wrap(gamma_m1)
    _, base1 = _eq.silverstein_base(mt, z, gamma_m1, _f=B.f)
    G_m = base1 + _eq.silverstein_term(mt[:, None], pop.lam[None, :], gamma, _f=B.f)[1] @ w
    h = (R * P) @ w * gamma if at_kernel else _eq.fluctuation_h(fh @ w, gamma, gamma_m1, _f=B.f)
    Q3 = f3 @ w
    return np.stack([_eq.fluctuation_mean(h, fp @ (w * a), Q3, f3 @ (w * a), G_m, gamma, mt,
                                          _f=B.f) for a in A])


def _pair(B: _Backend, R, dw, pop: Population, gamma, gamma_m1) -> tuple:
    """Two-resolvent kernel on Gamma+ x Gamma+ and Gamma+ x Gamma- (conjugate nodes)."""
    Rw, r = R * pop.weight, B.matmul(R, pop.weight)
    Rc, rc = np.conj(R), np.conj(r)
    gamma, gamma_m1 = B.wrap(gamma), B.wrap(gamma_m1)
    with np.errstate(divide="ignore", invalid="ignore"):  # a singular kernel is reported above
        fpp = B.bulk(_eq.two_point, B.matmul(Rw, R.T), r[:, None], r[None, :], gamma, gamma_m1)
        fpm = B.bulk(_eq.two_point, B.matmul(Rw, Rc.T), r[:, None], rc[None, :], gamma, gamma_m1)
    return dw, fpp, fpm


def _two_resolvent(sp_: Spectral, j, backend: _Backend | None = None):
    """Y = (1/(2 pi i))^2 oint oint j(z1) j(z2) tr(Sigma^-1 Q1 Sigma Q2)/d dz1 dz2.

    ``j`` at the Gamma+ nodes, real on the real axis; Gamma- carries the conjugate nodes with
    weights -conj(dz), and conjugation symmetry folds the four blocks into two.  With
    dz/z = dw the kernel is taken times z1 z2 (bounded however small the nodes).
    """
    B = backend or _DOUBLE
    dw, fpp, fpm = sp_.pair
    a = j * dw
    pp, pm = B.matmul(B.matmul(a, fpp), a), B.matmul(B.matmul(a, fpm), np.conj(a))
    return -(B.real(pp) - B.real(pm)) / (2 * B.pi**2)


def _continuation(B: _Backend, x, pop: Population, gamma, gamma_m1):
    """Companion transform mt along contours: rows of x (one contour each), vectorised.

    Solves G(mt) = (gamma - 1) - z mt - gamma sum w/(1 + lam mt) = 0 (Silverstein's equation
    times mt) by Newton, node after node along each row, starting from mt = -1/z at the
    right end (z beyond the spectrum).
    """
    lam, w = pop.lam[None, :], pop.weight

    def wsum(g):  # sum over atoms without BLAS: thousands of small products, which threaded
        return (g * w).sum(axis=1)  # BLAS can slow a hundredfold on a busy machine

    G, K = x.shape
    out = np.empty((G, K), dtype=x.dtype)
    mt = np.array(-1 / x[:, 0])
    g_col = gamma[:, None]
    for k in range(K):
        zk = x[:, k]
        if k >= 2:  # secant predictor along the contour (padded ends repeat a node: no slope)
            dx = x[:, k - 1] - x[:, k - 2]
            moved = np.asarray(dx != 0, dtype=bool)
            ratio = (zk - x[:, k - 1]) / np.where(moved, dx, 1 + 0 * dx)  # O(1): no overflow
            mt = mt + (out[:, k - 1] - out[:, k - 2]) * np.where(moved, ratio, 0 * ratio)
        act, prev = np.arange(G), np.full(G, np.inf, dtype=object if B.mp else float)
        for it in range(60):  # Newton on the contours not yet converged
            m = mt[act]
            f0, f1 = _eq.silverstein_base(m, zk[act], gamma_m1[act], _f=B.f)
            g0, g1 = _eq.silverstein_term(m[:, None], lam, g_col[act], _f=B.f)
            step = (f0 + wsum(g0)) / (f1 + wsum(g1))
            mt[act] = m = m - step
            size, scale = np.abs(step), np.abs(m)
            # stop at the tolerance (the error left after a step of quadratic convergence is
            # about size^3/prev^2), or at the round-off floor (near the hard edge the
            # conditioning grows like |mt|): steps no longer halving once already tiny
            last = prev[act]
            done = (size <= B.tol * scale) | ((size <= B.loose * scale) & (size > last / 2))
            if it:  # relative sizes: |mt| may be far beyond the cube root of the largest double
                done = done | ((size / scale)**3 <= B.tol * (last / scale)**2)
            done = np.asarray(done, dtype=bool)
            prev[act] = size
            act = act[~done]
            if not act.size:
                break
        f0, _ = _eq.silverstein_base(mt, zk, gamma_m1, _f=B.f)
        g0, _ = _eq.silverstein_term(mt[:, None], lam, g_col, _f=B.f)
        size = np.abs(gamma_m1) + np.abs(zk * mt) + wsum(np.abs(g0))
        bad = ~np.asarray(np.abs(f0 + wsum(g0)) <= B.resid * size, dtype=bool)
        if bad.any():
            raise ConvergenceError(f"ldm: Silverstein Newton did not converge at z = "
                                   f"{complex(zk[bad][0])} (gamma = {float(gamma[bad][0])})")
        wrong = np.asarray((B.imag(zk) > 0) & (B.imag(mt) < -B.branch * np.abs(mt)), dtype=bool)
        if wrong.any():
            raise ConvergenceError(f"ldm: Silverstein root left the physical branch at z = "
                                   f"{complex(zk[wrong][0])}")
        out[:, k] = mt
    return out


def _kernel(B: _Backend, pop: Population, gamma, gamma_m1, A) -> tuple:
    """Overlap masses tr(A P_0)/d of the kernel of C (zero when gamma <= 1), and mt(0).

    Solves sum w R = (gamma - 1)/gamma, R = s/(s + lam), for s = 1/mt(0) (derivations/ldm.py):
    in y = log s by Newton safeguarded with bisection on the bracket
    [log((gamma - 1) lam_min), log((gamma - 1) sum w lam)], so it cannot fail; near the hard
    edge s -> 0 stays well conditioned where mt(0) -> inf would not.
    """
    if not gamma_m1 > 0:
        return A.sum(axis=1) * 0, None
    lam, w = pop.lam, pop.weight
    log = mpmath.log if B.mp else math.log
    exp = mpmath.exp if B.mp else math.exp
    # the side whose sum is <= 1/2 is evaluated directly: both are sums of positive terms,
    # so F has an absolute error of a few ulps and the root a relative one in s
    small_r = gamma_m1 <= 1
    target = log(gamma_m1 / gamma) if small_r else -log(gamma)

    def F(y):
        R, R1 = _eq.kernel_term(exp(y), lam, _f=B.f)
        slope = (R * R1) @ w  # s d(sum w R)/ds
        if small_r:
            total = R @ w
            return log(total) - target, slope / total
        total = R1 @ w
        return target - log(total), slope / total

    lo, hi = log(gamma_m1 * min(lam)), log(gamma_m1 * (w @ lam))
    f_lo, f_hi = F(lo)[0], F(hi)[0]
    if f_lo >= 0 or f_hi <= 0:  # a bracket end is the root (one atom: lo = hi)
        y = lo if abs(f_lo) <= abs(f_hi) else hi
    else:
        y = (lo + hi) / 2
        dx_old = dx = hi - lo
        f, df = F(y)
        for _ in range(400):
            # Newton unless it leaves the bracket or does not halve the step (then bisect)
            if ((y - hi) * df - f) * ((y - lo) * df - f) > 0 or abs(2 * f) > abs(dx_old * df):
                dx_old, dx = dx, (hi - lo) / 2
                y = lo + dx
            else:
                dx_old, dx = dx, f / df
                y = y - dx
            if abs(dx) <= B.ytol * max(1, abs(y)) or hi - lo <= B.ytol * max(1, abs(y)):
                break
            f, df = F(y)
            if f < 0:
                lo = y
            else:
                hi = y
        else:
            raise ConvergenceError("ldm: kernel equation did not converge")
    R, _ = _eq.kernel_term(exp(y), lam, _f=B.f)
    return A @ R, 1 / exp(y)


# -- result and driver -----------------------------------------------------------------------
_KEYS = ("kl_gen_data_per_dim", "kl_data_gen_per_dim", "kl_oracle_per_dim", "excess_kl_per_dim",
         "span_fraction")
_TOTALS = ("kl_gen_data", "kl_data_gen", "kl_oracle", "excess_kl")


@dataclasses.dataclass(frozen=True, repr=False)
class LDMResult(GridResult):
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
    converged : bool or ndarray of bool
        False where ``on_error="nan"`` replaced a divergent or failing point by NaN.

    With ``dps`` every array holds mpmath numbers (object dtype).
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
    converged: np.ndarray | bool = True

    def as_dict(self) -> dict:
        out = {k: _squeeze(getattr(self, k)) for k in _KEYS}
        if self.kl_gen_data is not None:
            out.update({k: _squeeze(getattr(self, k)) for k in _TOTALS})
        out["log_kl_data_gen_per_dim"] = _squeeze(self.log_kl_data_gen_per_dim)
        out["test_error_t"] = self.test_error_t
        out["train_error_t"] = self.train_error_t
        out["converged"] = self.converged
        out["params"] = self.params
        return out

    def _grid_parameters(self) -> dict:
        return dict(self.params)

    def _derived_parameters(self) -> tuple:
        return ("gamma", "N")

    def _grid_outputs(self) -> dict:
        keys = _KEYS + ("log_kl_data_gen_per_dim",) + (_TOTALS if self.kl_gen_data is not None else ())
        return {k: getattr(self, k) for k in keys} | {"converged": self.converged}

    def _grid_curves(self) -> dict:
        steps = np.arange(1, np.shape(self.test_error_t)[-1] + 1)
        return {k: (getattr(self, k), "step", steps) for k in ("test_error_t", "train_error_t")}


def _squeeze(x):
    x = np.asarray(x)
    if x.ndim:
        return x
    return x.item() if x.dtype == object else float(x)


T_MAX = 10**7
LOG_ABAR_MIN = -600.0


def check_schedule(T: int, beta_min, beta_max) -> None:
    """Refuse schedules whose abar_T = prod_t (1 - beta_t) is below e^-600.

    The sampler starts from N(0, I) at abar_T; below about e^-700 double precision underflows
    in the maps' products (the quadrature then loses every digit), and e^-600 keeps a margin.
    Such a schedule has long erased the data (abar_T < 1e-260: the start is pure noise).
    """
    pairs = set(zip(*(np.ravel(np.asarray(x, dtype=float)).tolist()
                      for x in np.broadcast_arrays(beta_min, beta_max))))
    t = np.arange(1, T + 1, dtype=float)
    for bmin, bmax in pairs:
        log_abar = float(np.sum(np.log1p(-_eq.schedule_beta(t, T, bmin, bmax, _f=NUMPY))))
        if log_abar < LOG_ABAR_MIN:
            raise ParameterError(
                "T, beta_min, beta_max", f"a schedule with abar_T = prod(1 - beta_t) >= e^{LOG_ABAR_MIN:g} "
                f"(here log abar_T = {log_abar:.4g} at beta_min={bmin:g}, beta_max={bmax:g})", T)


def check_common(*, n_over_d, lam, tau, T, beta_min, beta_max, mean_norm, d):
    """Validate the shared LDM inputs; returns (tau array with inf for None, T, d)."""
    # d/N and N/d must both stay far inside double range (the contour's hard edge uses both)
    check_range("n_over_d", n_over_d, low=1e-12, high=1e12)
    check_range("lam", lam, low=0)
    tau = np.inf if tau is None else tau
    check_range("tau", tau, low=0, low_open=True, allow_inf=True,
                allowed="> 0 (or None/inf for the converged denoiser)")
    tau_arr = np.asarray(tau, dtype=float)
    T = check_integer("T", T, low=1, high=T_MAX, allowed=f"an integer in [1, {T_MAX:.0e}]")
    check_range("beta_min", beta_min, low=0, high=1, low_open=True, high_open=True)
    check_range("beta_max", beta_max, low=0, high=1, low_open=True, high_open=True)
    try:
        order_bad = np.any(np.asarray(beta_min) > np.asarray(beta_max))
    except ValueError:
        raise ParameterError("beta_min, beta_max", "arrays of shapes that broadcast", None) from None
    if order_bad:
        raise ParameterError("beta_min, beta_max", "0 < beta_min <= beta_max < 1",
                             (beta_min, beta_max))
    check_schedule(int(T), beta_min, beta_max)
    check_range("mean_norm", mean_norm, low=0)
    if d is not None:
        d = check_integer("d", d, low=1, allowed="an integer >= 1 (or None for d -> inf)")
    return tau_arr, T, d


def sample_size(n_over_d: float, d: int) -> int:
    """N = round(n_over_d d), at least 2 (the centred covariance needs two samples)."""
    if not n_over_d * d <= 1e300:  # N an integer of at most 300 digits (inf has none)
        raise ParameterError("n_over_d, d", "such that N = round(n_over_d d) <= 1e300", float(n_over_d * d))
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
        dps: int | None = None, on_error: str = "raise") -> LDMResult:
    """Learning curves of the linear diffusion model (conventions section 2).

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
    dps : int or None
        None: double precision.  An integer in [16, 1000]: the same computation in mpmath
        at ``dps`` decimal digits (plus guard digits), every output an mpmath number, for
        d -> inf and finite d, with and without ``tau``; not for the continuum power law
        (``powerlaw:K`` with K > 0 needs ``d`` with ``dps``).  The cost grows like ``T``
        times the number of contour nodes (more near the hard edge N/d = 1) and with the
        number of distinct eigenvalues: see the module docstring.
    on_error : {"raise", "nan"}
        "raise" (default): the first divergent ridgeless point (lam = 0, converged, N <= d + 1:
        both KLs infinite) raises ParameterError, a point that does not converge
        ConvergenceError.  "nan": such points become NaN, ``result.converged`` marks them, and
        every other point is returned as usual (conventions section 3).  Invalid values raise
        ParameterError under both.

    Returns
    -------
    LDMResult

    Notes
    -----
    Arrays broadcast and are solved together: the contour panels are shared, so the
    per-eigenvalue maps are computed once per distinct (lam, tau, beta_min, beta_max) and
    Silverstein's equation once per distinct N/d, vectorised over all of them.
    """
    dps = check_dps(dps)
    tau_arr, T, d = check_common(n_over_d=n_over_d, lam=lam, tau=tau, T=T, beta_min=beta_min,
                                 beta_max=beta_max, mean_norm=mean_norm, d=d)
    pop = population(spectrum, d)
    if dps is not None and not pop.discrete:
        # the continuum law needs ~0.9 (dps + 4) ln(10) Gauss-Legendre atoms in log u to reach
        # dps digits (about 1000 at 30 digits), each in every Silverstein solve: minutes
        raise ParameterError("spectrum, d, dps", "a finite d with dps for powerlaw:K (the "
                             "continuum law at dps digits takes minutes per point)", pop.label)
    if on_error not in ("raise", "nan"):
        raise ParameterError("on_error", '"raise" or "nan"', on_error)
    try:
        b = np.broadcast_arrays(*(np.asarray(x, dtype=float) for x in
                                  (n_over_d, lam, tau_arr, mean_norm, beta_min, beta_max)))
    except ValueError:
        raise ParameterError("n_over_d, lam, tau, mean_norm, beta_min, beta_max",
                             "arrays of shapes that broadcast", None) from None
    if b[0].size == 0:
        raise ParameterError("n_over_d, lam, tau, mean_norm, beta_min, beta_max", "non-empty", None)
    # the mean's share of the KLs is about mean_norm tr Sigma^-1 / (2 d) per dimension (d times
    # that in total): beyond double range it would read inf (mpmath's exponents are unbounded)
    worst = float(b[3].max()) * float(pop.weight @ (1 / pop.lam)) * (d or 1)
    if dps is None and worst > _MEAN_MAX:
        raise ParameterError("mean_norm, spectrum, d", f"such that mean_norm tr Sigma^-1 <= {_MEAN_MAX:g} "
                             "in double precision (the KLs would overflow; pass dps)", worst)
    flat = [x.ravel() for x in b]
    # the schedule, the block of maps, and per point three error integrals and two per-step
    # errors; an mpmath number takes about 100 bytes against 8
    check_memory("T", (8 if dps is None else 100) * T * (24 + 8 * flat[0].size),
                 f"{flat[0].size} points of T = {T} steps")
    # the contour quadrature keeps a (nodes x distinct eigenvalues) complex matrix and its maps:
    # about 17 KB per distinct eigenvalue, measured (peak RSS at 20,000 and 40,000 eigenvalues,
    # T = 200 and 1000 alike); 20 KB keeps a margin
    n_eig = int(np.unique(pop.lam).size)
    check_memory("spectrum, d", (1 if dps is None else 12) * 20e3 * n_eig,
                 f"a population law with {n_eig} distinct eigenvalues")
    Ns = [math.inf if d is None else sample_size(nd, d) for nd in flat[0]]
    converged = np.ones(flat[0].size, bool)
    for i, (nd, lm, tu) in enumerate(zip(*flat[:3])):
        try:
            if d is None:
                check_degenerate(nd, 1.0, lm, tu, "n_over_d <= 1")
            else:
                check_degenerate(Ns[i] - 1, d, lm, tu, "N <= d + 1")
        except ParameterError:
            if on_error == "raise":
                raise
            converged[i] = False
    if dps is None:
        out = _solve_policy(_DOUBLE, spectrum, pop, flat, T, d, converged, on_error)
    else:
        with mpmath.workdps(dps + 10):
            out = _solve_policy(_Backend(dps), spectrum, pop, flat, T, d, converged, on_error)
        with mpmath.workdps(dps):
            rnd = np.frompyfunc(lambda v: +v, 1, 1)
            out = {k: rnd(v) for k, v in out.items()}
    shape = b[0].shape
    gammas = [1 / nd if d is None else d / (N - 1) for nd, N in zip(flat[0], Ns)]
    params = dict(n_over_d=b[0], spectrum=pop.label if isinstance(spectrum, str) else "array",
                  lam=b[1], tau=b[2], T=T, beta_min=b[4], beta_max=b[5], mean_norm=b[3], d=d,
                  gamma=np.array([float(g) for g in gammas]).reshape(shape))
    res = {k: v.reshape(shape + v.shape[1:]) for k, v in out.items()}
    totals = {}
    if d is not None:
        params["N"] = np.array(Ns).reshape(shape)
        with np.errstate(over="ignore", invalid="ignore"):
            totals = {t: d * res[t + "_per_dim"] for t in _TOTALS}
    conv = converged.reshape(shape)
    return LDMResult(params=params, **res, **totals, converged=conv if conv.ndim else bool(conv))


def _solve_policy(B: _Backend, spectrum, pop: Population, flat: list, T: int, d: int | None,
                  converged: np.ndarray, on_error: str) -> dict:
    """:func:`_solve` on the points marked ``converged`` (updated in place), NaN elsewhere.

    With ``on_error="nan"`` a ConvergenceError of the joint solve is retried point by point, so
    that one failing point costs only itself.
    """
    def run(idx):
        # overflow and 0/0 at extreme inputs become inf/NaN, which _point's finiteness check
        # turns into ConvergenceError; numpy's warnings would only precede that message
        with np.errstate(all="ignore"):
            return _solve(B, spectrum, pop, [x[idx] for x in flat], T, d)

    good = np.flatnonzero(converged)
    parts = []
    if good.size:
        try:
            parts.append((good, run(good)))
        except ConvergenceError:
            if on_error == "raise":
                raise
            for i in good:
                try:
                    parts.append((np.array([i]), run(np.array([i]))))
                except ConvergenceError:
                    converged[i] = False
    n, nan = flat[0].size, (mpmath.nan if B.mp else np.nan)
    out = {}
    for key in (*_KEYS, "test_error_t", "train_error_t", "log_kl_data_gen_per_dim"):
        tail = (T,) if key.endswith("_t") else ()
        full = np.full((n,) + tail, nan, dtype=object if B.mp else float)
        for idx, part in parts:
            full[idx] = part[key]
        out[key] = full
    return out


def _solve(B: _Backend, spectrum, pop: Population, b: list, T: int, d: int | None):
    """All points of a broadcast call: shared contours, maps per (lam, tau, schedule)."""
    atoms = _atoms(B, pop, spectrum, d)
    flat = [x.ravel() for x in b]
    npt = flat[0].size
    # one contour per distinct N (finite d) or n_over_d (d -> inf)
    keys, point_key = {}, []
    for nd in flat[0]:
        key = float(nd) if d is None else sample_size(nd, d)
        point_key.append(keys.setdefault(key, len(keys)))
    specs = []
    for key in keys:
        if d is None:
            nd = B.num(key)
            specs.append((1 / nd, (1 - nd) / nd, B.num(1.0)))
        else:
            N = key
            one = mpmath.mpf(1) if B.mp else 1.0
            specs.append((one * d / (N - 1), one * (d - N + 1) / (N - 1), one * (N - 1) / N))
    grid, spectra = _spectra(B, atoms, specs, d)
    Ns = [math.inf if d is None else list(keys)[point_key[i]] for i in range(npt)]
    # one set of per-eigenvalue maps per distinct (lam, tau, beta_min, beta_max)
    groups: dict = {}
    for i in range(npt):
        groups.setdefault((flat[1][i], flat[2][i], flat[4][i], flat[5][i]), []).append(i)
    rows: list = [None] * npt
    for (lm, tu, bmin, bmax), members in groups.items():
        lam_b, tau_b = B.num(lm), (B.num(tu) if math.isfinite(tu) else B.inf)
        sch = Schedule.linear(T, B.num(bmin), B.num(bmax), B)
        used = sorted({point_key[i] for i in members})
        nodes = np.unique(np.concatenate([spectra[g].idx for g in used]))
        local = {g: np.searchsorted(nodes, spectra[g].idx) for g in used}
        W = np.zeros((3, nodes.size, len(used)), dtype=object if B.mp else complex)
        for col, g in enumerate(used):
            W[:, local[g], col] = spectra[g].wt
        m0, a0 = _zero_maps(B, sch, lam_b, tau_b)
        base = B.f.exp(m0.log_v[0]), B.f.exp(m0.log_r[0])
        dv, dr, err = _delta_maps(B, grid[nodes], sch, lam_b, tau_b, a0, W)
        err = {g: err[:, :, col] for col, g in enumerate(used)}
        # oracle: the same maps at the population eigenvalues
        dvo, dro, _ = _delta_maps(B, atoms.lam, sch, lam_b, tau_b, a0)
        if B.mp:
            mo = Maps(B.f.log(dvo + base[0]), B.f.log(dro + base[1]), None, None, None)
        else:  # log space: v_0(lambda) may be astronomically small
            mo = maps(atoms.lam, sch, lam_b, tau_b, errors=False)
        for i in members:
            g = point_key[i]
            n_inv = 0 * lam_b if d is None else (mpmath.mpf(1) if B.mp else 1.0) / Ns[i]
            loc = local[g]
            rows[i] = _point(B, atoms, spectra[g], base, (dv[loc], dr[loc]), err[g], m0,
                             (mo, dvo, dro), sch, B.num(flat[3][i]), n_inv, (lm, tu))
            bad = [k for k, val in rows[i].items() if B.has_nan(val)]
            if bad:
                raise ConvergenceError(f"ldm: {', '.join(bad)} not finite at n_over_d = "
                                       f"{float(flat[0][i])!r}, lam = {float(lm)!r}, tau = {float(tu)!r} (the "
                                       "quadrature lost all precision)")
    dtype = object if B.mp else float
    out = {k: np.array([row[k] for row in rows], dtype=dtype) for k in rows[0] if k[-2:] != "_t"}
    for k in ("test_error_t", "train_error_t"):
        out[k] = np.array([row[k] for row in rows], dtype=dtype).reshape(npt, T)
    return out


def _point(B: _Backend, pop: Population, sp_: Spectral, base, delta, err, m0: Maps, oracle,
           sch: Schedule, mean_norm, n_inv, where) -> dict:
    """All outputs at one parameter point from the contour quadrature and the kernel.

    ``base`` = (v_0(0), r(0)); ``delta`` = (v_0 - v_0(0), r - r(0)) at the contour nodes;
    ``oracle`` = (its :class:`Maps`, and the same differences at the population eigenvalues).
    Traces of v_0 and r^2 weighted by Sigma^{-1} are taken as their value at c = 0 times the
    exact mass sum w/lambda plus the integral of the difference, which keeps them (and the
    excess KL, a difference of two such traces) accurate when Sigma has eigenvalues many
    decades below the noise scale.
    """
    f = B.f
    v0, r0 = base
    dv, dr = delta
    v, r = dv + v0, dr + r0
    log_v = _log_along(B, v, where)
    k = 1 - r
    inv_mass = pop.weight @ (1 / pop.lam)  # tr Sigma^{-1}/d, the total mass of mu_{Sigma^-1}

    def I(fz, a):  # bulk integral of f against mu_A, a: 0 -> A = 1, 1 -> Sigma^-1, 2 -> Sigma
        return B.imag(sp_.wt[a] @ fz)

    # kernel of C (c = 0), from the real maps
    lv0, lr0 = m0.log_v[0], m0.log_r[0]
    k0 = -f.expm1(lr0)
    M1, Msi, Ms = sp_.kernel
    has_kernel = M1 > 0
    if has_kernel and min(Msi, Ms) <= 0:
        raise ConvergenceError("ldm: the O(1/d) correction exceeds an overlap mass of the "
                               "kernel of C (d too small for the finite-d expansion)")
    dr2 = dr * (r + r0)  # r^2 - r(0)^2
    tr_v = v0 * inv_mass + I(dv, 1)
    logdet_g = I(log_v, 0) + (M1 * lv0 if has_kernel else 0)
    # sample-mean term tr(K Sigma^-1 K Sigma)/d with K = k0 I + (K - k0 I) (two resolvents)
    two = 0 if sp_.pair is None else (k0**2 + 2 * k0 * (I(k, 0) + M1 * k0 - k0)
                                      + _two_resolvent(sp_, k - k0, B))
    t_mu = r0**2 * inv_mass + I(dr2, 1)
    kl_gd = _eq.gaussian_kl(tr_v, logdet_g, pop.mean_log,
                            _eq.mahalanobis(mean_norm, t_mu, n_inv, two, _f=f), _f=f)
    # KL(data || gen): the kernel term mass (1 + k0^2/N) / v0 may be astronomically large
    bulk_dg = _eq.gaussian_kl(I(1 / v, 2), pop.mean_log, logdet_g,
                              _eq.mahalanobis(mean_norm, I(r**2 / v, 0), n_inv, I(k**2 / v, 2),
                                              _f=f), _f=f)
    if has_kernel:
        bulk_dg += M1 * mean_norm * f.exp(2 * lr0 - lv0) / 2
        log_big = f.log(Ms) + f.log1p(n_inv * k0**2) - lv0 - f.log(2 + 0 * Ms)
        log_kl_dg = _log_add(log_big, bulk_dg, B)
    else:
        log_kl_dg = f.log(bulk_dg) if bulk_dg > 0 else -B.inf
    kl_dg = B.exp_or_inf(log_kl_dg)
    # oracle: the population denoiser at c = lambda_nu, xbar = mu
    mo, dvo, dro = oracle
    w_inv = pop.weight / pop.lam
    # diagonal in the eigenbasis of Sigma: (1/2) sum w phi(log(v/lambda)) + maha/2
    # (derivations/ldm.py, part 5), free of the round-off of tr - 1 - log det
    maha_o = _eq.mahalanobis(mean_norm, pop.weight @ f.exp(2 * mo.log_r - f.log(pop.lam)),
                             0, 0, _f=f)
    kl_o = (pop.weight @ _exp_m1_m(B, mo.log_v - f.log(pop.lam)) + maha_o) / 2
    # excess = kl_gd - kl_o from the differences: the v(0) and r(0)^2 parts of the two
    # Sigma^-1 traces are equal (same mass) and cancel exactly
    dro2 = dro * (dro + 2 * r0)
    excess = _eq.gaussian_kl(I(dv, 1) - w_inv @ dvo + 1, logdet_g, pop.weight @ mo.log_v,
                             _eq.mahalanobis(mean_norm, I(dr2, 1) - w_inv @ dro2, n_inv, two,
                                             _f=f), _f=f)
    span = 1 - sp_.null * v0 / (v0 + I(dv, 0))
    # per-step errors (arrays over t): bulk integrals plus the kernel atoms
    iq2 = err[0] + m0.q2[:, 0] * M1
    isw2 = err[1] + m0.w2[:, 0] * Ms
    test, train = _eq.errors(iq2, isw2, err[2], n_inv, sch.abar, _f=f)
    return dict(kl_gen_data_per_dim=kl_gd, kl_data_gen_per_dim=kl_dg, kl_oracle_per_dim=kl_o,
                excess_kl_per_dim=excess, span_fraction=span,
                log_kl_data_gen_per_dim=log_kl_dg, test_error_t=test, train_error_t=train)


def _log_along(B: _Backend, v, where):
    """log v_0 at the contour nodes (in path order), continued along the contour.

    v_0 is real and positive where the contour crosses the real axis; with no zero of v_0
    between the contour and the spectrum (argument principle, conjugate symmetry) its phase
    returns there to 0, which is checked.  Without ridge near the hard edge v_0(z) ~ a_1(z)^2
    turns by nearly pi along the contour: the principal logarithm would jump.
    """
    where = f"(lam={where[0]}, tau={where[1]})"
    if np.any(np.asarray(v == 0, dtype=bool)):
        raise ConvergenceError("ldm: the generated variance on the contour underflows (below the "
                               f"double range, so is KL(data || gen) above it: use dps) {where}")
    if B.mp:
        phase = []
        for x in v:
            a = mpmath.arg(x)
            if phase:
                a += 2 * mpmath.pi * mpmath.nint((phase[-1] - a) / (2 * mpmath.pi))
            phase.append(a)
        logs = B.array(mpmath.log(abs(x)) + mpmath.mpc(0, 1) * a for x, a in zip(v, phase))
        ends = (phase[0], phase[-1])
    else:
        phase = np.unwrap(np.angle(v))
        logs, ends = np.log(np.abs(v)) + 1j * phase, (phase[0], phase[-1])
    if not max(abs(ends[0]), abs(ends[1])) < 1:
        raise ConvergenceError(f"ldm: the generated variance has a zero inside the contour {where}")
    return logs


def _exp_m1_m(B: _Backend, y):
    """e^y - 1 - y (>= 0) for real arrays y, from its series sum_{k>=2} y^k/k! where |y| < 1/2.

    Directly, a value of order y^2/2 would carry the round-off of the O(1) terms.
    """
    if B.mp:
        def one(x):
            if abs(x) >= 0.5:
                return mpmath.expm1(x) - x
            term, total, k = x * x / 2, 0, 2
            while term:
                total += term
                k += 1
                term = term * x / k
                if abs(term) < mpmath.eps * abs(total):
                    break
            return total
        return np.frompyfunc(one, 1, 1)(y)
    y = np.asarray(y, dtype=float)
    small = np.abs(y) < 0.5
    ys = np.where(small, y, 0.0)
    # 18 terms: 0.5^19/19! < 1e-22, below double precision relative to y^2/2
    series = ys * ys / 2 * np.polyval([1 / math.factorial(k) * 2 for k in range(19, 1, -1)], ys)
    with np.errstate(over="ignore", invalid="ignore"):  # -inf (v = 0) gives inf: exact
        direct = np.expm1(y) - y
    return np.where(small, series, direct)


def _log_add(log_a, b, backend: _Backend | None = None):
    """log(exp(log_a) + b) for b of any sign, without overflow."""
    B = backend or _DOUBLE
    if B.mp:
        total = mpmath.exp(log_a) + b
        return mpmath.log(total) if total > 0 else -mpmath.inf
    if log_a > 700:
        return log_a + math.log1p(b * math.exp(-log_a))
    total = math.exp(log_a) + b
    return math.log(total) if total > 0 else -math.inf


_DOUBLE = _Backend()
