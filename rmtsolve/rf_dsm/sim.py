"""Finite-size simulation of RF-DSM with the real nonlinear features (conventions sections 1, 1.5).

Nothing here uses the Gaussian-equivalent model: features are sigma(W y / sqrt(d)) of the
actual noisy inputs y_ij = e^{-t} x_i + sqrt(D) z_ij, with x = Sigma^{1/2} g for a diagonal
Sigma whose d eigenvalues discretise ``spectrum`` as conventions 1.5 says
(:meth:`rmtsolve.population.Spectrum.rf_dsm_eigenvalues`).  The training set is streamed in
chunks: only Phi^T Phi (p x p), Phi^T Z (p x d) and ||Z||^2 are accumulated, so d = 2000
with psi_n, psi_p <= 4 and m <= 8 needs about 1 GB.  The fresh-sample test error is a
Monte Carlo average over ``n_test`` independent (x, z) pairs, each of which already
averages d coordinates, so its error is far below the seed-to-seed spread.
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np

from .._backend import NUMPY
from .._generated import rf_dsm as _eq
from .._parallel import array_backend, check_scaleout, map_seeds, seed_stderr
from .._results import ShortRepr
from ..errors import ParameterError, check_integer, check_scalar
from .._resources import check_memory
from .equations import rf_dsm_spectrum
from .solver import PSI_MAX, PSI_MIN, T_MAX

_CHUNK_BYTES = 256 * 2**20  # feature-chunk budget
_EPS = float(np.finfo(float).eps)
# LU for the ridge when lam >= this x tr(U/N) >= this x the largest eigenvalue: its rounding
# along U's kernel, eps lambda_max / lam, then stays below 1e-8 relative
_SOLVE_RIDGE = 1e8 * _EPS


@dataclasses.dataclass(frozen=True, repr=False)
class RFDSMSimulation(ShortRepr):
    """Means and standard errors (over seeds) of the finite-d errors.

    ``test_error_stderr`` etc. are the standard errors of the means, std / sqrt(seeds);
    ``per_seed`` holds the raw values of every seed.  ``test_error_floor`` is the floor of the
    simulated (discretised) spectrum and score_error = test_error - test_error_floor.
    ``empirical_score_error`` = D E||s_A(y) - s_emp(y)||^2/d on fresh y, with s_emp the exact
    score of the diffused training set (:func:`empirical_score`).
    ``empirical_score_error_independent`` is the same error with the softmax average replaced by
    one training point independent of y (test point j takes training point j mod n): the
    quantity whose d -> inf limit the theory's empirical_score_error computes once the
    softmax has selected one point and its overlap with y has vanished; the difference
    between the two is that selection effect, of order sqrt(log n / d).  For a
    spectrum with finitely many distinct eigenvalues, ``test_error_by_eigenvalue`` holds the
    test error of the coordinates along each of ``eigenvalues`` (means and standard errors).
    """

    test_error: float
    train_error: float
    score_error: float
    gap: float
    test_error_stderr: float
    train_error_stderr: float
    score_error_stderr: float
    gap_stderr: float
    per_seed: dict
    params: dict
    test_error_floor: float = math.nan
    empirical_score_error: float = math.nan
    empirical_score_error_stderr: float = math.nan
    empirical_score_error_independent: float = math.nan
    empirical_score_error_independent_stderr: float = math.nan
    test_error_by_eigenvalue: np.ndarray | None = None
    test_error_by_eigenvalue_stderr: np.ndarray | None = None
    eigenvalues: np.ndarray | None = None
    eigenvalue_weights: np.ndarray | None = None

    def as_dict(self) -> dict:
        keys = ("test_error", "train_error", "score_error", "gap", "empirical_score_error",
                "empirical_score_error_independent")
        out = {k: getattr(self, k) for k in keys}
        out |= {k + "_stderr": getattr(self, k + "_stderr") for k in keys}
        out["test_error_floor"] = self.test_error_floor
        if self.test_error_by_eigenvalue is not None:
            out["test_error_by_eigenvalue"] = {
                "eigenvalue": self.eigenvalues, "weight": self.eigenvalue_weights,
                "test_error": self.test_error_by_eigenvalue, "stderr": self.test_error_by_eigenvalue_stderr}
        return out | {"params": self.params}


def simulate_rf_dsm(*, psi_n: float, psi_p: float, m, t: float, lam: float, activation="relu",
                    d: int = 200, seeds: int = 3, seed: int = 0, n_test: int | None = None,
                    tau: float | None = None, spectrum="isotropic", jobs: int | None = None,
                    scheduler: str | None = None, backend="numpy") -> RFDSMSimulation:
    """Simulate RF-DSM at dimension d with n = round(psi_n d), p = round(psi_p d).

    spectrum: the population spectrum of Sigma (as in :func:`rmtsolve.rf_dsm`), discretised
    at d as conventions 1.5 says; x = Sigma^{1/2} g with Sigma diagonal.
    m must be finite: the exactly noise-averaged loss of m = inf has no closed form for a
    nonlinear activation, and an approximate average would not be a simulation of it
    (the theory's m -> inf limit is checked against large finite m instead).
    tau: gradient-flow time from B = 0, B(tau) = B_ridge (I - exp(-tau (U + lam))) with
    U = Phi^T Phi/(n m), computed exactly in the eigenbasis of U (None: converged).
    jobs: worker processes of a local Dask cluster, one seed per task (None or 1: serial in
    this process); scheduler: the address of an existing Dask cluster instead (not with jobs);
    both need the ``distributed`` extra and give the serial numbers bit for bit where the
    workers use the serial run's BLAS threading (conventions 1.6; ``jobs`` workers do).
    backend: the array namespace of each seed's linear algebra, "numpy" (default), "cupy",
    "torch", "array_api_strict" or a namespace module (the ``gpu`` extra).  Random numbers
    are drawn on the host with numpy, so every backend sees the same draws; the activation
    is applied on the host too (the preactivations make a round trip, the known cost).
    """
    from ..activations import resolve_activation

    psi_n = check_scalar("psi_n", psi_n, low=PSI_MIN, high=PSI_MAX)
    psi_p = check_scalar("psi_p", psi_p, low=PSI_MIN, high=PSI_MAX)
    # below t = 1e-100 the empirical score's 1/D (D ~ 2t) leaves double range in the softmax
    t = check_scalar("t", t, low=1e-100, high=T_MAX, allowed=f"in [1e-100, {T_MAX:g}] for simulations")
    lam = check_scalar("lam", lam, low=0)
    if tau is not None:
        tau = check_scalar("tau", tau, low=0, low_open=True)
    m = check_integer("m", m, low=1, allowed="a finite integer >= 1 for simulations")
    d = check_integer("d", d, low=2)
    seeds = check_integer("seeds", seeds, low=1)
    seed = check_integer("seed", seed, low=0)
    jobs = check_scaleout(jobs, scheduler)
    array_backend(backend)  # an unknown or missing backend fails here, before any computing
    if n_test is not None:
        n_test = check_integer("n_test", n_test, low=1)
    act = resolve_activation(activation)
    spec = rf_dsm_spectrum(spectrum)
    n, p = max(1, round(psi_n * d)), max(1, round(psi_p * d))
    # in floats: p and n may be integers far beyond double precision's range
    check_memory("d, psi_n, psi_p, m", _memory_estimate(float(d), psi_n * d, psi_p * d, float(m), lam, tau),
                 f"a simulation at d = {d} with n = {psi_n * d:.3g}, p = {psi_p * d:.3g}, m = {float(m):.3g}")
    ell = spec.rf_dsm_eigenvalues(int(d))
    groups = None
    if spec.discrete:
        eig, groups = np.unique(ell, return_inverse=True)
    mm = int(m)
    n_test = n_test or max(4000, 2 * p)
    children = np.random.SeedSequence(seed).spawn(seeds)
    vals = {"test_error": [], "train_error": [], "by": [], "empirical": [], "independent": []}
    sqrt_ell = np.sqrt(ell)
    # workers resolve a named activation themselves: an expression's compiled function may not pickle
    spec_act = activation.strip() if isinstance(activation, str) else act
    runs = map_seeds(_seed_task, [(ss, spec_act, d, n, p, mm, t, lam, n_test, tau, sqrt_ell, backend)
                                  for ss in children], jobs, scheduler)
    for te, tr, per_coord, emp, ind in runs:
        vals["test_error"].append(te)
        vals["train_error"].append(tr)
        vals["empirical"].append(emp)
        vals["independent"].append(ind)
        if groups is not None:
            vals["by"].append(np.bincount(groups, per_coord) / np.bincount(groups))
    test = np.array(vals["test_error"])
    train = np.array(vals["train_error"])
    floor = float(np.mean(_eq.test_error_floor(np.asarray(ell, dtype=float), t, _f=NUMPY)))
    series = {"test_error": test, "train_error": train, "score_error": test - floor,
              "gap": test - train, "empirical_score_error": np.array(vals["empirical"]),
              "empirical_score_error_independent": np.array(vals["independent"])}
    mean = {k: float(v.mean()) for k, v in series.items()}
    se = {k + "_stderr": float(seed_stderr(v)) for k, v in series.items()}
    params = dict(psi_n=psi_n, psi_p=psi_p, m=m, t=t, lam=lam, activation=act.name, d=d, n=n, p=p,
                  seeds=seeds, seed=seed, n_test=n_test, tau=tau, spectrum=spec.label, s2=float(np.mean(ell)))
    extra = {}
    if groups is not None:
        by = np.array(vals["by"])
        extra = dict(test_error_by_eigenvalue=by.mean(axis=0), eigenvalues=eig,
                     eigenvalue_weights=np.bincount(groups) / d,
                     test_error_by_eigenvalue_stderr=seed_stderr(by))
    return RFDSMSimulation(**mean, **se, per_seed={k: v.tolist() for k, v in series.items()}, params=params,
                           test_error_floor=floor, **extra)


def _memory_estimate(d, n, p, m, lam, tau) -> float:
    """Peak bytes of one seed: the training data (n x d), five p x d matrices (W, B, Phi^T Z and
    the temporaries of the solve and of the training error; measured 4.8 at d = 1e5), the p x p
    matrices (U and U/N + lam I with the solve's copy, measured 3.8 p^2 in all; eigh for a
    gradient flow adds its vectors and LAPACK's 2 p^2 workspace, measured 7 p^2), and the
    temporaries of a training or test chunk (noise, inputs, features, the softmax's logits:
    measured up to 4.7 chunks); the ridgeless solve keeps the whole feature matrix."""
    # a chunk holds at least one data point with its m noisy copies, or one test point
    chunk = max(_CHUNK_BYTES, 8.0 * m * max(p, d), 8.0 * max(p, n, d))
    square = 7 if tau is not None else 4
    est = 8.0 * (n * d + 5 * p * d + square * p * p + d) + 5 * chunk
    if lam == 0 and tau is None:
        est += 8.0 * n * m * (p + d) * 2
    return est


def _seed_task(seed_seq, activation, d, n, p, m, t, lam, n_test, tau, sqrt_ell, backend):
    """One seed as a task of :func:`rmtsolve._parallel.map_seeds` (module level: workers unpickle it)."""
    from ..activations import resolve_activation

    return _one_seed(np.random.default_rng(seed_seq), resolve_activation(activation), d, n, p, m, t, lam,
                     n_test, tau, sqrt_ell, array_backend(backend))


def _features(act, W, y, d, be):
    pre = y @ W.T * (1.0 / math.sqrt(d))
    if be.xp is np:
        return act(pre)
    # the activation is a numpy function: a host round trip of the preactivations
    return be.asarray(act(be.to_numpy(pre)))


def _one_seed(rng, act, d, n, p, m, t, lam, n_test, tau, sqrt_ell, be):
    """(test error, train error, per-coordinate test error, empirical score error, the same with
    an independent training point) of one seed.

    Random numbers are drawn on the host; the products, solves and sums run on ``be``."""
    xp = be.xp
    W = be.asarray(rng.standard_normal((p, d)))
    a, sD = math.exp(-t), math.sqrt(1 - math.exp(-2 * t))
    N = n * m
    # data points per chunk, each with m noisy copies of d inputs and p features: chunking by p
    # alone let a d >> p chunk hold all n m inputs (2 GiB at n = 12363, m = 2, d = 11019)
    rows = max(1, _CHUNK_BYTES // (8 * m * max(p, d)))
    if lam == 0 and tau is None:
        if N * p * 8 > 4 * 2**30:
            raise ParameterError("lam", "> 0 for simulations this large (ridgeless needs the full feature matrix)", lam)
        Phi, Z = [], []
    U = be.zeros((p, p))
    PZ = be.zeros((p, d))
    zz = 0.0
    X = np.empty((n, d))  # the training inputs: the empirical score needs them
    for start in range(0, n, rows):
        k = min(rows, n - start)
        x = rng.standard_normal((k, 1, d)) * sqrt_ell
        X[start:start + k] = x[:, 0, :]
        z = rng.standard_normal((k, m, d))
        y = be.asarray((a * x + sD * z).reshape(k * m, d))
        z = be.asarray(z.reshape(k * m, d))
        F = _features(act, W, y, d, be)
        if lam == 0 and tau is None:
            Phi.append(F)
            Z.append(z)
            continue
        U += F.T @ F
        PZ += F.T @ z
        zz += float(xp.sum(z * z))
    if lam == 0 and tau is None:
        # Ridgeless: the minimum-norm least-squares solution (on the host: lstsq is not in the
        # array API, and this branch is limited to a few GiB anyway).
        F, Zm = (np.concatenate([be.to_numpy(b) for b in blocks]) for blocks in (Phi, Z))
        Bt = -np.linalg.lstsq(F, Zm, rcond=None)[0]
        train = float(np.sum((F @ Bt + Zm) ** 2)) / (N * d)
        Bt = be.asarray(Bt)
    else:
        # Gradient flow from B = 0: B^T = -f(U/N) Phi^T Z/N, f(s) = (1 - e^{-tau (s + lam)})/(s + lam);
        # the ridge is its tau -> inf limit
        flow = None if tau is None else (lambda s_l: xp.where(
            s_l > 0, -xp.expm1(-tau * s_l) / xp.where(s_l > 0, s_l, 1.0), tau))
        Bt = -ridge_solve(U / N, PZ / N, lam, xp=xp, terms=N, f=flow)  # B^T, p x d
        # ||Phi B^T + Z||^2 from the accumulated moments (Phi is never stored).
        train = (float(xp.sum(Bt * (U @ Bt))) + 2 * float(xp.sum(Bt * PZ)) + zz) / (N * d)
    acc, emp, ind = be.zeros(d), 0.0, 0.0
    sD_D = sD / -math.expm1(-2 * t)
    X = be.asarray(X)
    test_rows = max(1, _CHUNK_BYTES // (8 * max(p, n, d)))  # features, softmax logits or inputs
    for start in range(0, n_test, test_rows):
        k = min(test_rows, n_test - start)
        z = rng.standard_normal((k, d))
        y = be.asarray(a * rng.standard_normal((k, d)) * sqrt_ell + sD * z)
        z = be.asarray(z)
        pred = _features(act, W, y, d, be) @ Bt  # B phi(y) = sqrt(D) s_A(y)
        acc += xp.sum((pred + z) ** 2, axis=0)
        emp += float(xp.sum((pred - sD * empirical_score(y, X, t, xp=xp)) ** 2))
        # test point j against training point j mod n: independent of y by construction
        x_ind = xp.take(X, be.asarray(np.arange(start, start + k) % n), axis=0)
        ind += float(xp.sum((pred + sD_D * (y - a * x_ind)) ** 2))
    # train is ||Phi B^T + Z||^2 >= 0; assembled from moments it may round to about -1e-16 zz/(N d)
    # where the features interpolate
    return (float(xp.sum(acc)) / (n_test * d), max(train, 0.0), be.to_numpy(acc) / n_test, emp / (n_test * d),
            ind / (n_test * d))


def ridge_solve(G, R, lam, *, xp=np, terms=None, f=None):
    """(G + lam I)^{-1} R for a symmetric positive semi-definite G, or f(G + lam I) R.

    G is a Gram matrix (a sum of ``terms`` outer products, default its size) and R lies in its
    range (Phi^T Z against Phi^T Phi), or the result is multiplied by a matrix whose rows do
    (F^T (F F^T + lam)^{-1} Z): either way the exact result has no component along G's kernel.
    LU is used while lam is well above G's rounding; below, LU would amplify the rounding of R
    along the kernel by 1/lam (or find G + lam I singular), so the solve goes through G's
    eigenbasis with the numerical kernel left out -- as does f (a function of the shifted
    eigenvalues, e.g. a gradient flow's (1 - e^{-tau s})/s, which needs the eigenbasis anyway).
    ``xp`` is the array namespace of G and R.
    """
    if f is None and lam >= _SOLVE_RIDGE * float(_trace(G, xp)):
        return xp.linalg.solve(G + lam * xp.eye(G.shape[0], dtype=G.dtype), R)
    ev, V = xp.linalg.eigh(G)
    kernel = ev <= max(G.shape[0], terms or 0) * _EPS * float(xp.max(ev))
    s_l = xp.where(kernel, 0.0, ev) + lam
    coef = xp.where(kernel[:, None], 0.0, V.T @ R)
    return V @ ((f or (lambda s: 1 / s))(s_l)[:, None] * coef)


def _trace(G, xp):
    return xp.linalg.trace(G) if hasattr(xp.linalg, "trace") else np.trace(G)  # numpy < 2: no linalg.trace


def empirical_weights(y, X, t, *, xp=np):
    """The softmax weights w_i, proportional to exp(-||y - e^{-t} x_i||^2/(2D)), of the training
    points (rows of X) in the exact score of the diffused training set at the rows of y.

    ``xp`` is the array namespace of y and X (numpy by default).
    """
    a, D = math.exp(-t), -math.expm1(-2 * t)
    logw = (a * (y @ X.T) - 0.5 * a * a * xp.sum(X * X, axis=1)[None, :]) / D
    logw -= xp.max(logw, axis=1, keepdims=True)
    w = xp.exp(logw)
    return w / xp.sum(w, axis=1, keepdims=True)


def empirical_score(y, X, t, *, xp=np):
    """The exact score of the diffused training set at the rows of y (a softmax over training points).

    The law of e^{-t} x_i + sqrt(D) z with x_i uniform over the rows of X has the score
    -(y - e^{-t} sum_i w_i x_i)/D with the weights of :func:`empirical_weights`.
    """
    a, D = math.exp(-t), -math.expm1(-2 * t)
    return -(y - a * (empirical_weights(y, X, t, xp=xp) @ X)) / D
