"""Linear diffusion models (conventions section 2): the DDPM sampler as a spectral map of C.

Route.  Every matrix the trained denoiser and the sampler use is a function of the sample
covariance ``C`` (``M_t = abar_t C + (1 - abar_t) I``, ``W_t = w_t(M_t)``), so in the
eigenbasis of ``C`` the sampler acts on each eigen-direction separately:

1. the denoiser on a direction with sample eigenvalue ``c`` (ridge ``lam``, gradient-flow
   time ``tau`` through ``E = exp(-tau (m + lam))``; ``E -> 0`` is the converged ridge);
2. one DDPM step ``u' = a_t(c) u + h_t(c) xbar + s_t xi``, rewritten without cancellations
   (every term of the numerator of ``a_t`` is >= 0) and in log form;
3. the mean: the deficit ``r_t = sqrt(abar_t) - k_t`` of the generated mean ``k_t xbar``
   obeys ``r_{t-1} = a_t r_t`` exactly, so ``1 - k_0 = sqrt(abar_T) prod_t a_t``;
4. the variance map ``v_{t-1} = a_t^2 v_t + s_t^2`` (``v_T = 1``), iterated numerically;
5. the Gaussian KL divergences, the train/test errors and the span fraction as traces of
   spectral functions of ``C``, possibly weighted by ``Sigma^{+-1}`` (overlaps);
6. deterministic equivalents of those traces: Silverstein's equation for the companion
   transform, the overlap-weighted Stieltjes transform, the kernel (atom at 0) and the
   contour formula that turns them into spectral integrals;
7. at finite d, the O(1/d) per dimension mean correction of every such trace for real
   Gaussian data (Bai-Silverstein, extended to overlap weights by a population derivative)
   and the two-resolvent equivalent for the sample-mean term of KL(generated || data).

Every identity used numerically is asserted here; ``build()`` emits the code.
"""
from __future__ import annotations

import sympy as sp
from sympy.codegen.cfunctions import expm1

from ._codegen import Document, Function, Module


class logaddexp(sp.Function):
    """log(exp(x) + exp(y)) evaluated without overflow (printed as ``_f.logaddexp``)."""

    def _eval_rewrite_as_log(self, x, y, **kwargs):
        return sp.log(sp.exp(x) + sp.exp(y))

    def _pythoncode(self, printer):
        x, y = (printer._print(a) for a in self.args)
        return f"_f.logaddexp({x}, {y})"

    def _latex(self, printer):
        x, y = (printer._print(a) for a in self.args)
        return rf"\log\left(e^{{{x}}} + e^{{{y}}}\right)"


class recip(sp.Function):
    """1/x, printed as a division (numpy's complex x**-2 is slow; (x*recip)**2 is not)."""

    def _eval_rewrite_as_Pow(self, x, **kwargs):
        return 1 / x

    def _pythoncode(self, printer):
        return f"(1/({printer._print(self.args[0])}))"

    def _latex(self, printer):
        return rf"\frac{{1}}{{{printer._print(self.args[0])}}}"


def _zero(expr) -> bool:
    return sp.simplify(expr) == 0


# symbols: c sample eigenvalue, z its complex continuation, abar = abar_t, abp = abar_{t-1},
# om = 1 - abar_t and omp = 1 - abar_{t-1} passed separately to avoid cancellations.
c, lam, tau, beta = sp.symbols("c lam tau beta", nonnegative=True)
abar, abp = sp.symbols("abar abar_prev", positive=True)
om, omp = sp.symbols("om omp", nonnegative=True)
z = sp.Symbol("z")
log_e = sp.Symbol("log_e")  # log E = -tau (m + lam); -inf for the converged denoiser
E = sp.exp(log_e)

DOC = Document("Linear diffusion models: the law a DDPM sampler generates from N samples", __doc__, {
    "c": (r"c", "an eigenvalue of the sample covariance C"),
    "z": (r"z", "complex continuation of c (contour integrals)"),
    "lam": (r"\lambda", "ridge"),
    "tau": (r"\tau", "gradient-flow (early-stopping) time of the denoiser"),
    "beta": (r"\beta", "beta_t of the noise schedule"),
    "abar": (r"\bar{\alpha}", "abar_t = prod_{u<=t} (1 - beta_u)"),
    "abar_prev": (r"\bar{\alpha}_{t-1}", "abar_{t-1}"),
    "om": (r"\omega", "1 - abar_t"),
    "omp": (r"\omega'", "1 - abar_{t-1}"),
    "log_e": (r"\log E", "log E = -tau (m + lam); -inf for the converged denoiser"),
    "W": (r"W", "the denoiser's weight on a direction of C (a function of the flow time)"),
    "W_t": (r"W_t", "the denoiser's weight on a direction of C"),
    "q_t": (r"q_t", "1 - sqrt(1 - abar) W_t: the noise left unexplained"),
    "a_t": (r"a_t", "the sampler's contraction of one DDPM step on a direction of C"),
    "a": (r"a", "a_t as a function of the step"),
    "h_t": (r"h_t", "the sampler's weight on the sample mean in one step"),
    "beta_t": (r"\beta_t", "linear schedule beta_min + (beta_max - beta_min) t/T"),
    "beta_min": (r"\beta_{\min}", "first beta of the schedule"),
    "beta_max": (r"\beta_{\max}", "last beta of the schedule"),
    "t": (r"t", "sampler step"),
    "T": (r"T", "number of sampler steps"),
    "k_0": (r"k_0", "the generated mean is k_0(C) xbar"),
    "abar_T": (r"\bar{\alpha}_T", "abar at the last step"),
    "v_{t-1}": (r"v_{t-1}", "variance of the sampler on a direction after step t"),
    "v": (r"v", "variance before the step"),
    "s2": (r"s^2", "s_t^2 = beta_t, the injected noise variance (0 at t = 1)"),
    "KL": (r"\mathrm{KL}", "Gaussian KL divergence per dimension"),
    "tr_ratio": (r"\operatorname{tr}(V_2^{-1} V_1)/d", "trace term of the KL"),
    "logdet_p": (r"\log\det V_1/d", "log-determinant of the first law per dimension"),
    "logdet_q": (r"\log\det V_2/d", "log-determinant of the second law per dimension"),
    "maha": (r"\mathrm{maha}", "the mean mismatch (m_1 - m_2)^T V_2^{-1} (m_1 - m_2)/d"),
    "mean_norm": (r"\|\mu\|^2/d", "squared norm of the data mean per dimension"),
    "t_mu": (r"t_\mu", "tr(P (I - K)^2)/d"),
    "n_inv": (r"1/N", "inverse number of samples"),
    "t_e": (r"t_e", "tr(K P K Sigma)/d"),
    "test": (r"\mathrm{test}_t", "test error of the denoiser at step t"),
    "train": (r"\mathrm{train}_t", "train error of the denoiser at step t"),
    "iq2": (r"I_1[q_t^2]", "tr(q_t^2)/d"),
    "isw2": (r"I_\Sigma[W_t^2]", "tr(Sigma W_t^2)/d"),
    "icw2": (r"I_1[c W_t^2]", "tr(C W_t^2)/d"),
    "m1": (r"m_1", "mean of the first Gaussian"), "m2": (r"m_2", "mean of the second Gaussian"),
    "d": (r"d", "dimension"),
    "gamma": (r"\gamma", "d/n, n = N - 1 (centring removes one sample)"),
    "lam_nu": (r"\lambda_\nu", "an eigenvalue of the population covariance Sigma"),
    "w_nu": (r"w_\nu", "its weight in the population law (weights sum to 1)"),
    "nu": (r"\nu", "population atom index"),
    "mt": (r"\tilde{m}", "companion transform -1/(z (1 + delta)) of the sample covariance"),
    "mt0": (r"\tilde{m}_0", "mt at z -> 0 when n < d (the kernel of C)"),
    "zz": (r"z", "spectral argument"),
    "m_A": (r"m_A", "tr(A Q(z))/d, the A-weighted Stieltjes transform"),
    "delta_A": (r"\delta_A", "O(1/d) mean correction of tr(A Q(z)) for real Gaussian data"),
    "R_12": (r"R_{12}", "tr(Sigma^-1 Q(z_1) Sigma Q(z_2))/d"),
    "I_A^bulk[f]": (r"I_A^{\mathrm{bulk}}[f]", "the continuous part of the A-weighted spectral integral of f"),
    "f": (r"f", "a spectral function"),
    "A_nu": (r"A_\nu", "the weight A on atom nu"),
    "gamma_m1": (r"\gamma - 1", "gamma - 1, passed exactly"),
    "s": (r"s", "1/mt0"),
    "G_m": (r"G_m", "dG/dmt, the derivative of Silverstein's residual in mt"),
    "P_A": (r"P_A", "w A-weighted sum of u/(1+u)^2"),
    "Q3": (r"Q_3", "w-weighted sum of u^2/(1+u)^3"),
    "Q3_A": (r"Q_{3,A}", "w A-weighted sum of u^2/(1+u)^3"),
    "h": (r"h", "1 - gamma S2"),
    "S": (r"S", "kap1 kap2 tr(Sigma Qbar1 Sigma Qbar2)/n, the two-resolvent coupling"),
    "z_1": (r"z_1", "first contour point"),
    "z_2": (r"z_2", "second contour point"),
    "v1": (r"v_1", "variance of the first Gaussian"), "v2": (r"v_2", "variance of the second Gaussian"),
})


# -- 1. the denoiser on one eigen-direction -------------------------------------------------
@DOC.step
def denoiser():
    """W_t(c) and q_t(c) = 1 - sqrt(1 - abar) W_t(c) (the noise left unexplained)."""
    m = abar * c + om  # eigenvalue of M_t = abar C + (1 - abar) I
    # gradient flow dW/dtau = -(1/2) dL/dW = sqrt(1-abar) - W (m + lam) from W(0) = 0
    W = sp.Function("W")
    sol = sp.dsolve(sp.Eq(W(tau).diff(tau), sp.sqrt(om) - W(tau) * (m + lam)), W(tau),
                    ics={W(0): 0})
    w_tau = sp.sqrt(om) * (1 - sp.exp(-tau * (m + lam))) / (m + lam)
    assert _zero(sol.rhs - w_tau)
    w = w_tau.subs(sp.exp(-tau * (m + lam)), E)  # E = exp(-tau (m + lam)), E -> 0: ridge
    assert _zero(w.subs(log_e, -tau * (m + lam)) - w_tau)
    # the converged ridge solution (conventions 2.2): W = sqrt(1 - abar) (M + lam)^{-1}
    # (m + lam > 0 on the spectrum, so tau -> inf sends E = exp(-tau (m + lam)) -> 0)
    assert _zero(w.subs(log_e, -sp.oo) - sp.sqrt(om) / (m + lam))
    # q = 1 - sqrt(om) w written with non-negative terms only (om = 1 - abar)
    q = (abar * c + lam + om * E) / (m + lam)
    assert _zero(1 - sp.sqrt(om) * w - q)
    # 1 - E through expm1, exact also when tau (m + lam) is tiny
    w_stable = sp.sqrt(om) * (-expm1(log_e)) / (m + lam)
    assert _zero(w_stable.rewrite(sp.exp) - w)
    DOC.show("gradient flow", sp.Eq(W(tau).diff(tau), sp.sqrt(om) - W(tau) * (m + lam)))
    DOC.show("", sp.Eq(sp.Symbol("W_t"), w_stable))
    DOC.show("", sp.Eq(sp.Symbol("q_t"), q))
    return m, w, q, w_stable


# -- 2. one DDPM step ------------------------------------------------------------------------
@DOC.step
def sampler_step(m, w):
    """u_{t-1} = (u - beta/sqrt(1-abar) (W u + b)) / sqrt(1-beta) + s xi, b = -sqrt(abar) W xbar.

    On a direction of C this is u' = a u + h xbar + s xi.
    """
    a_naive = (1 - beta / sp.sqrt(om) * w) / sp.sqrt(1 - beta)
    h = beta * sp.sqrt(abar) * w / (sp.sqrt(om) * sp.sqrt(1 - beta))
    # schedule: abar = abar_prev (1 - beta), so 1 - abar - beta = (1 - beta)(1 - abar_prev)
    sched = {abar: abp * (1 - beta), om: 1 - abp * (1 - beta), omp: 1 - abp}
    A = abar * c + (1 - beta) * omp + lam  # >= 0 term by term
    a = (A + beta * E) / ((m + lam) * sp.sqrt(1 - beta))
    assert _zero((a_naive - a).subs(sched))
    log_a = logaddexp(sp.log(A), sp.log(beta) + log_e) - sp.log(m + lam) - sp.log(1 - beta) / 2
    # the log form equals log a at a generic exact point (sympy cannot simplify logaddexp)
    point = {c: sp.Rational(1, 3), lam: sp.Rational(1, 7), beta: sp.Rational(1, 50),
             abp: sp.Rational(2, 3), log_e: -1}
    diff = (log_a.rewrite(sp.log) - sp.log(a)).subs(sched).subs(point)
    assert abs(sp.N(diff, 60)) < sp.Float("1e-50")
    # the converged denoiser at t = 1 (abar_0 = 1) removes the out-of-span direction exactly:
    # a_1(0) = lam / ((beta + lam) sqrt(1 - beta)) vanishes without ridge (degenerate law)
    a1 = a.subs(log_e, -sp.oo).subs(sched).subs(abp, 1).subs(c, 0)
    assert _zero(a1 - lam / ((beta + lam) * sp.sqrt(1 - beta)))
    DOC.show("a_t(c)", sp.Eq(sp.Symbol("a_t"), a))
    DOC.show("h_t(c)", sp.Eq(sp.Symbol("h_t"), h))
    DOC.show("log form", sp.Eq(sp.log(sp.Symbol("a_t")), log_a))
    return a, h, log_a, sched


@DOC.step
def step_difference(a, sched):
    """delta a_t(c) = a_t(c) - a_t(0) in closed form, free of cancellation.

    Traces weighted by Sigma^{-1} of v_0 or (1 - k_0)^2 are dominated by their value at c = 0
    when Sigma has eigenvalues far below the noise scale; the excess KL compares two such
    traces, so it is built from v_0(c) - v_0(0) and r(c) - r(0), which follow from delta a_t
    (see :func:`variance_recursion`).  With q = lam + 1 - abar and E(c) = E0 exp(-tau abar c),
    E0 = exp(-tau q), and the schedule identity (1 - abar) - (1 - beta)(1 - abar_prev) = beta:
      delta a = beta [abar c (1 - E0) + q E0 expm1(-tau abar c)] / ((abar c + q) q sqrt(1 - beta)),
    and beta abar c / ((abar c + q) q sqrt(1 - beta)) for the converged denoiser.
    """
    q = lam + om
    E0 = sp.exp(-tau * q)
    a_tau = a.subs(log_e, -tau * (abar * c + q))
    delta = (beta * (abar * c * (1 - E0) + q * E0 * expm1(-tau * abar * c))
             / ((abar * c + q) * q * sp.sqrt(1 - beta)))
    assert _zero((a_tau - a_tau.subs(c, 0) - delta.rewrite(sp.exp)).subs(sched))
    delta_conv = beta * abar * c / ((abar * c + q) * q * sp.sqrt(1 - beta))
    assert _zero((a.subs(log_e, -sp.oo) - a.subs(log_e, -sp.oo).subs(c, 0) - delta_conv).subs(sched))
    return delta, delta_conv


# -- 3. the mean -----------------------------------------------------------------------------
@DOC.step
def mean_recursion(a, h, sched):
    """Generated mean k_t xbar with k_T = 0 and k_{t-1} = a_t k_t + h_t.

    With r_t = sqrt(abar_t) - k_t:  r_{t-1} = a_t r_t + (sqrt(abar_{t-1}) - a_t sqrt(abar_t) - h_t)
    and the bracket vanishes identically, so 1 - k_0 = r_0 = sqrt(abar_T) prod_t a_t(c).
    """
    source = sp.sqrt(abp) - a * sp.sqrt(abar) - h
    assert _zero(source.subs(sched))
    DOC.show("the source of r vanishes", sp.Eq(source.subs(sched), 0))
    return source


# -- 4. the variance -------------------------------------------------------------------------
@DOC.step
def variance_recursion():
    """v_{t-1} = a_t^2 v_t + s_t^2 with v_T = 1 (u_T ~ N(0, I)), s_t^2 = beta_t (t > 1), s_1 = 0.

    Log form log v_{t-1} = logaddexp(2 log a_t + log v_t, log s_t^2); checked against the
    unrolled sum v_0 = prod a^2 + sum_{t>=2} s_t^2 prod_{u<t} a_u^2 for T = 3, which the code
    evaluates through cumulative products P_k = prod_{u<=k} a_u^2, v_0 = P_T +
    sum_{t>=2} s_t^2 P_{t-1} (real eigenvalues in double precision: log P_k = sum_{u<=k} 2 log a_u
    and log v_0 by log-sum-exp; vectorised over t instead of a loop of T steps).
    """
    la, lv, ls2 = sp.symbols("log_a log_v log_s2")
    log_step = logaddexp(2 * la + lv, ls2)
    a_, v_, s2_ = sp.symbols("a v s2", positive=True)
    assert _zero(sp.exp(log_step.rewrite(sp.log)).subs({la: sp.log(a_), lv: sp.log(v_),
                                                          ls2: sp.log(s2_)}) - (a_**2 * v_ + s2_))
    a1, a2, a3, s2, s3 = sp.symbols("a1 a2 a3 s2 s3", positive=True)
    v = sp.Integer(1)
    for at, st in ((a3, s3), (a2, s2), (a1, 0)):
        v = at**2 * v + st**2
    assert _zero(v - (a1**2 * a2**2 * a3**2 + s3**2 * a1**2 * a2**2 + s2**2 * a1**2))
    var_step = a_**2 * v_ + s2_
    DOC.show("variance map", sp.Eq(sp.Symbol("v_{t-1}"), var_step))
    return (la, lv, ls2, log_step), (a_, v_, s2_, var_step)


# -- 5. Gaussian KL, errors, span ------------------------------------------------------------
@DOC.step
def gaussian_kl():
    """KL(N(m1, v1) || N(m2, v2)) on one direction from the densities, then the matrix form.

    KL = E_1[log p1 - log p2] with E_1 (x - m1)^2 = v1, E_1 (x - m2)^2 = v1 + (m1 - m2)^2.
    For matrices the same computation gives, per dimension (traces divided by d),
    KL = (1/2) [tr(V2^{-1} V1)/d - 1 + (logdet V2 - logdet V1)/d + (m1-m2)^T V2^{-1} (m1-m2)/d].
    """
    m1, m2 = sp.symbols("m1 m2", real=True)
    v1, v2 = sp.symbols("v1 v2", positive=True)
    x = sp.Symbol("x", real=True)
    logp = lambda mm, vv: -sp.log(2 * sp.pi * vv) / 2 - (x - mm) ** 2 / (2 * vv)  # noqa: E731
    integrand = sp.expand(logp(m1, v1) - logp(m2, v2))
    # expectation under N(m1, v1): E x = m1, E x^2 = v1 + m1^2
    kl = integrand.subs(x**2, v1 + m1**2).subs(x, m1)
    closed = (v1 / v2 - 1 + sp.log(v2 / v1) + (m1 - m2) ** 2 / v2) / 2
    assert _zero(sp.expand_log(kl - closed, force=True))
    tr, ld1, ld2, maha = sp.symbols("tr_ratio logdet_p logdet_q maha")
    kl_matrix = (tr - 1 + ld2 - ld1 + maha) / 2
    DOC.show("one direction", sp.Eq(sp.Symbol("KL"), closed))
    DOC.show("matrices", sp.Eq(sp.Symbol("KL"), kl_matrix))
    # one direction reproduces the scalar closed form
    assert _zero(kl_matrix.subs({tr: v1 / v2, ld1: sp.log(v1), ld2: sp.log(v2),
                                 maha: (m1 - m2) ** 2 / v2}) - closed)
    # the oracle's matrices are diagonal in one basis: with weights summing to one and
    # x_nu = v_nu / lambda_nu, KL = (1/2) sum w phi(log x) + maha/2, phi(y) = e^y - 1 - y >= 0,
    # evaluated from its series sum_{k>=2} y^k/k! for small |y| (tiny oracle KLs would
    # otherwise carry the absolute round-off of the O(1) terms tr - 1 - log det)
    y1, y2, w1 = sp.symbols("y_1 y_2 w_1")
    phi = lambda y: sp.exp(y) - 1 - y  # noqa: E731
    two_atoms = kl_matrix.subs({tr: w1 * sp.exp(y1) + (1 - w1) * sp.exp(y2),
                                ld1: w1 * y1 + (1 - w1) * y2, ld2: 0})
    assert _zero(two_atoms - (w1 * phi(y1) + (1 - w1) * phi(y2) + maha) / 2)
    yy = sp.Symbol("y")
    assert _zero(sp.series(phi(yy), yy, 0, 8).removeO()
                 - sum(yy**k / sp.factorial(k) for k in range(2, 8)))
    return (tr, ld1, ld2, maha), kl_matrix


@DOC.step
def mean_mismatch():
    """E over xbar = mu + e (e ~ N(0, Sigma/N), independent of C) and over a generic mu.

    mu - m_g = (I - K) mu - K e with K = k_0(C); for P = Sigma^{-1} or S_g^{-1}:
    E (mu - m_g)^T P (mu - m_g) / d = mean_norm tr(P (I - K)^2)/d + tr(K P K Sigma)/(N d),
    using mu^T B mu -> ||mu||^2 tr(B)/d for mu in a generic direction, ||mu||^2 = d mean_norm.
    (For P = S_g^{-1} = f(C) the second trace is tr(Sigma K^2 S_g^{-1}), one overlap.  For
    P = Sigma^{-1} it needs two resolvents, see two_point().)
    """
    mn, tmu, ninv, te = sp.symbols("mean_norm t_mu n_inv t_e")
    # check on one direction: mu ~ generic scalar with mu^2 = mean_norm, e with variance sig/N
    kk, p, sig, e = sp.symbols("k p sigma e", real=True)
    N = sp.Symbol("N", positive=True)
    quad = sp.expand(((1 - kk) * sp.sqrt(mn) - kk * e) ** 2 * p)
    expect = quad.subs(e**2, sig / N).subs(e, 0)
    assert _zero(expect - (mn * p * (1 - kk) ** 2 + kk**2 * p * sig / N))
    return (mn, tmu, ninv, te), mn * tmu + ninv * te


@DOC.step
def errors():
    """Per-step errors; x_t = sqrt(abar) x0 + sqrt(om) eps, b = -sqrt(abar) W xbar.

    eps - W x_t - b = q(W) eps - sqrt(abar) W (x0 - xbar) with q = 1 - sqrt(om) W, so
    test  = tr(q^2)/d + abar tr(W^2 (Sigma + (mu - xbar)(mu - xbar)^T))/d
          -> tr(q^2)/d + abar (1 + 1/N) tr(Sigma W^2)/d       (average over xbar),
    train = tr(q^2)/d + abar tr(W^2 C)/d                      (the training points).
    """
    iq2, isw2, icw2, ninv = sp.symbols("iq2 isw2 icw2 n_inv")
    # scalar check of the expansion with independent eps, x0 - xbar of variance sig
    ww, eps, y, sig = sp.symbols("w eps y sigma", real=True)
    expr = sp.expand((eps - ww * (sp.sqrt(abar) * y + sp.sqrt(om) * eps)) ** 2)
    expect = expr.subs({eps**2: 1, y**2: sig}).subs({eps: 0, y: 0})
    assert _zero(expect - ((1 - sp.sqrt(om) * ww) ** 2 + abar * ww**2 * sig))
    test = iq2 + abar * (1 + ninv) * isw2
    train = iq2 + abar * icw2
    DOC.show("test", sp.Eq(sp.Symbol("test"), test))
    DOC.show("train", sp.Eq(sp.Symbol("train"), train))
    return (iq2, isw2, icw2, ninv), test, train


# -- 6. deterministic equivalents ------------------------------------------------------------
@DOC.step
def silverstein():
    """Traces of spectral functions of C weighted by a function A of Sigma.

    C =_d ((N-1)/N) C' with C' = Sigma^{1/2} Z Z^T Sigma^{1/2} / n, n = N - 1 (centring removes
    one sample exactly for Gaussian data).  For C' the deterministic equivalent of the
    resolvent (derivations/mp.py) is Qbar(z) = (Sigma/(1 + delta) - z)^{-1}, delta =
    tr(Sigma Qbar)/n.  With the companion transform mt = -1/(z (1 + delta)):
      Qbar = -(1/z) (I + mt Sigma)^{-1},   tr(A Qbar)/d = -(1/z) sum_nu w_nu A_nu / (1 + lam_nu mt)
    and the definition of delta becomes Silverstein's equation
      z = -1/mt + gamma sum_nu w_nu lam_nu / (1 + lam_nu mt),   gamma = d/n,
    (w_nu the population weights, summing to 1).  The kernel of C' (n < d) has overlap
    tr(A P_0)/d = lim_{z->0} -z tr(A Qbar)/d = sum w A / (1 + lam mt0), where mt0 > 0 solves
    gamma sum w lam mt0/(1 + lam mt0) = 1 (z -> 0 in mt times Silverstein's equation).
    Solved in s = 1/mt0 with R = s/(s + lam) = 1/(1 + lam mt0): sum w R = (gamma - 1)/gamma, or
    equivalently sum w (1 - R) = 1/gamma; sum w R increases from 0 to 1 with s, and
    s/(s + lam_min) >= sum w R >= s/(s + sum w lam) (convexity in lam) bracket the root in
    [(gamma - 1) lam_min, (gamma - 1) sum w lam].  Near the hard edge (gamma -> 1+) s -> 0 and
    mt0 -> inf, where Newton in mt loses all digits to round-off; in s the equation stays
    well conditioned.
    For f analytic around the non-zero spectrum, with Gamma+ the upper half of a closed
    contour around it (from its right end, counter-clockwise, to its left end):
      int f dmu_A = -(1/pi) Im int_{Gamma+} f(z) m_A(z) dz.
    """
    mt, lnu, g = sp.symbols("mt lam_nu gamma")
    A_nu = sp.Symbol("A_nu")
    zz = sp.Symbol("z")
    # Qbar from 1 + delta = -1/(z mt): lam/(1 + delta) - z = -z (1 + lam mt)
    assert _zero((lnu * (-zz * mt) - zz) - (-zz * (1 + lnu * mt)))
    # definition of delta, one atom of weight 1 (the sum is linear in the atoms):
    # delta = gamma lam/(lam/(1 + delta) - z)  <=>  Silverstein with 1 + delta = -1/(z mt)
    delta_def = -1 / (zz * mt) - 1 - g * lnu / (-zz * (1 + lnu * mt))
    silv = -1 / mt + g * lnu / (1 + lnu * mt) - zz
    assert _zero(delta_def * (-zz) + silv)
    # Marchenko-Pastur check: Sigma = I, s = tr(Qbar)/d = -1/(z (1 + mt)) solves
    # gamma z s^2 + (z - 1 + gamma) s + 1 = 0 whenever mt solves Silverstein's equation
    s_mp = -1 / (zz * (1 + mt))
    z_of_mt = -1 / mt + g / (1 + mt)
    assert _zero((g * zz * s_mp**2 + (zz - 1 + g) * s_mp + 1).subs(zz, z_of_mt))
    # Newton form: multiply by mt and use sum w = 1,
    #   G(mt) = (gamma - 1) - z mt - gamma sum_nu w_nu / (1 + lam_nu mt) = 0,
    # free of the cancellation between -1/mt and the sum near the hard edge (gamma ~ 1)
    gm1 = sp.Symbol("gamma_m1")  # gamma - 1, passed exactly (it vanishes at N - 1 = d)
    base = gm1 - zz * mt
    term = -g / (1 + lnu * mt)
    assert _zero(silv * mt - (base.subs(gm1, g - 1) + term))  # one atom of weight 1 (linear in atoms)
    # the numeric form through R = 1/(1 + lam mt): |lam mt| spans hundreds of decades on the
    # contour for wide spectra, and (1 + lam mt)^2 would overflow where R^2 merely underflows
    R = recip(1 + lnu * mt)
    term_R = (-g * R, g * lnu * R**2)
    assert _zero(term_R[0].rewrite(sp.Pow) - term)
    assert _zero(term_R[1].rewrite(sp.Pow) - sp.diff(term, mt))
    res_term = -A_nu / (zz * (1 + lnu * mt))
    # A = Sigma^{-1}: R/lam = 1/lam - mt R, so z m_{Sigma^-1} = -sum w/lam + mt sum w R; the
    # constant is a pole of m at z = 0, outside the contour (it integrates to zero there), and
    # is dropped: it would leave quadrature noise of order tr(Sigma^{-1})/d when Sigma has tiny
    # eigenvalues
    assert _zero((res_term * zz).subs(A_nu, 1 / lnu) - (-1 / lnu + mt / (1 + lnu * mt)))
    # kernel equation gamma sum w lam mt0/(1 + lam mt0) = 1, in s = 1/mt0 (one atom of weight 1;
    # the sums are linear in the atoms): R = s/(s + lam), 1 - R = lam/(s + lam)
    s = sp.Symbol("s", positive=True)
    kR, kR1 = s * recip(s + lnu), lnu * recip(s + lnu)
    kterm = lnu * mt / (1 + lnu * mt)
    kR_, kR1_ = kR.rewrite(sp.Pow), kR1.rewrite(sp.Pow)
    assert _zero((1 / (1 + lnu * mt)).subs(mt, 1 / s) - kR_)
    assert _zero(kR_ + kR1_ - 1)
    assert _zero((g * kterm - 1).subs(mt, 1 / s) + g * (kR_ - gm1 / g).subs(gm1, g - 1))
    # s dR/ds = R (1 - R): the slope of both forms in log s (formed from the two outputs)
    assert _zero(s * sp.diff(kR_, s) - kR_ * kR1_)
    kernel = (s, (kR, kR1), kterm)
    # the kernel mass of A = 1 is 1 - 1/gamma (= 1 - n/d) at the root
    return mt, lnu, A_nu, zz, g, gm1, base, term_R, res_term, kernel


# -- 7. finite-d corrections (real Gaussian data) -------------------------------------------
@DOC.step
def fluctuation_mean():
    """The O(1) (total, i.e. O(1/d) per dimension) mean correction of spectral traces.

    For real Gaussian data Bai & Silverstein (Ann. Probab. 32, 2004, Thm 1.1, kappa = 2) give
    E tr f(C') - d int f dF^{gamma, H} -> -(1/(2 pi i)) oint f(z) M(z) dz with
      M(z) = gamma sum w mt^3 lam^2/(1 + lam mt)^3 / h(z)^2,
      h(z) = 1 - gamma sum w (lam mt)^2/(1 + lam mt)^2,
    and M = -(1/2) h'/h, i.e. E log det(C' - z) gains (1/2) log h(z).  Weighted traces follow
    from the exact identity  tr(A (I + z Q(z))) = d/de tr log(C'_e - z),  C'_e the sample
    covariance of the population lam_nu (1 + e A_nu) with the same Z (A commutes with Sigma):
      correction of tr(A Q(z)) = delta_A(z) = (1/z) d/de (1/2) log h = dh_A/(2 z h),
    with mt following the population through Silverstein's equation G(mt; lam) = 0.
    Per atom, u = lam mt:  h = 1 - gamma S2,  dh_A = -2 gamma (Q3_A + Q3 dm),
      dm = (d mt/de)/mt = -gamma P_A/(mt G_m),  G_m = dG/dmt,
    S2 = sum w u^2/(1+u)^2, P_A = sum w A u/(1+u)^2, Q3(_A) = sum w (A) u^2/(1+u)^3.
    Numerically h = gamma sum w R (1 + P) - (gamma - 1) with R = 1/(1+u), P = u/(1+u): h -> 0
    at the hard edge (gamma = 1, z -> 0), where 1 - gamma S2 would cancel all its digits.
    The kernel of C' (gamma > 1) is the pole at z = 0: its overlap mass changes by
    -(z delta_A)(0) (zero for A = 1: the kernel dimension d - n is exact).  At gamma = 1 the
    same limit is a hard-edge atom at 0 of mass (sum w A/lam)/(4 d sum w/lam).
    """
    mt, g, zz, e = sp.symbols("mt gamma z epsilon")
    l1, l2, w1, A1, A2 = sp.symbols("lam_1 lam_2 w_1 A_1 A_2", positive=True)
    atoms = ((l1, w1, A1), (l2, 1 - w1, A2))  # two generic atoms: the sums are linear in atoms

    def G(m, lams):  # Newton form of Silverstein's equation
        return (g - 1) - zz * m - g * sum(w / (1 + lv * m) for lv, (_, w, _) in zip(lams, atoms))

    def h_of(m, lams):
        return 1 - g * sum(w * (lv * m) ** 2 / (1 + lv * m) ** 2 for lv, (_, w, _) in zip(lams, atoms))

    lams = [lv for lv, _, _ in atoms]
    Gm = sp.diff(G(mt, lams), mt)
    # Bai-Silverstein mean density equals -(1/2) h'/h (mt' = -G_z/G_m along Silverstein)
    dmt_dz = -sp.diff(G(mt, lams), zz) / Gm
    h = h_of(mt, lams)
    M_bs = g * sum(w * mt**3 * lv**2 / (1 + lv * mt) ** 3 for lv, w, _ in atoms) / h**2
    # on Silverstein's curve z(mt) = -1/mt + gamma sum w lam/(1 + lam mt)
    on_curve = {zz: -1 / mt + g * sum(w * lv / (1 + lv * mt) for lv, w, _ in atoms)}
    assert _zero((-sp.diff(h, mt) * dmt_dz / (2 * h) - M_bs).subs(on_curve))
    # the population derivative: lam_nu -> lam_nu (1 + e A_nu), mt(e) by the implicit function
    lam_e = [lv * (1 + e * a) for lv, _, a in atoms]
    Ge = sp.diff(G(mt, lam_e), e).subs(e, 0)
    dmt_de = -Ge / Gm
    dh_total = (sp.diff(h_of(mt, lam_e), e) + sp.diff(h_of(mt, lam_e), mt) * dmt_de).subs(e, 0)
    # the per-atom form used numerically
    S2, PA, Q3, Q3A, Gm_s, gam = sp.symbols("S2 P_A Q3 Q3_A G_m gamma")
    dm = -gam * PA / (mt * Gm_s)
    dh_A = -2 * gam * (Q3A + Q3 * dm)
    zdelta = dh_A / (2 * (1 - gam * S2))
    sums = {S2: sum(w * (lv * mt) ** 2 / (1 + lv * mt) ** 2 for lv, w, _ in atoms),
            PA: sum(w * a * lv * mt / (1 + lv * mt) ** 2 for lv, w, a in atoms),
            Q3: sum(w * (lv * mt) ** 2 / (1 + lv * mt) ** 3 for lv, w, _ in atoms),
            Q3A: sum(w * a * (lv * mt) ** 2 / (1 + lv * mt) ** 3 for lv, w, a in atoms),
            Gm_s: Gm, gam: g}
    assert _zero(dh_A.subs(sums) - dh_total)
    # A = 1 is a rescaling of C: z delta_1 = -(z/2) h'/h = z M, the Bai-Silverstein density
    one = {A1: 1, A2: 1}
    assert _zero((zdelta.subs(sums).subs(one) - zz * M_bs).subs(on_curve))
    # the trace identity tr(A (I + z Q)) = d/de log det(C'_e - z) on an exact 2 x 2 example
    # (log det(C'_e - z) = log det Sigma_e + log det(Z Z^T/n - z Sigma_e^{-1}))
    Z = sp.Matrix([[1, 2, -1], [3, 0, 1]]) / 3
    Sig_e = sp.diag(*lam_e)
    logdet = sp.log(Sig_e.det()) + sp.log((Z * Z.T - zz * Sig_e.inv()).det())
    Sh = sp.diag(sp.sqrt(l1), sp.sqrt(l2))
    Q = (Sh * Z * Z.T * Sh - zz * sp.eye(2)).inv()
    Am = sp.diag(A1, A2)
    assert _zero(sp.diff(logdet, e).subs(e, 0) - (Am * (sp.eye(2) + zz * Q)).trace())
    # gamma = 1 (n = d): the bulk reaches 0 and mt -> inf as z -> 0; the correction keeps a
    # hard-edge atom at 0 (f(0)/4 for A = 1 and isotropic data, as in the Bai-Silverstein mean
    # (f(a) + f(b))/4 - ...).  Its overlap mass -(z delta_A)(0) is the limit along the curve:
    S_inv, SA_inv = sp.symbols("S_inv SA_inv")  # sum w/lam and sum w A/lam
    edge = (-zdelta.subs(sums).subs(on_curve)).subs(g, 1)
    edge_lim = sp.limit(edge, mt, sp.oo)
    atom = SA_inv / (4 * S_inv)
    inv_sums = {S_inv: sum(w / lv for lv, w, _ in atoms), SA_inv: sum(w * a / lv for lv, w, a in atoms)}
    assert _zero(edge_lim - atom.subs(inv_sums))
    u = sp.Symbol("u")
    per_atom = (u**2 / (1 + u) ** 2, u / (1 + u) ** 2, u**2 / (1 + u) ** 3)
    # evaluated through R = 1/(1 + u) and P = u/(1 + u) (both bounded on the contour): no power
    # of u, which overflows when lam mt spans hundreds of decades
    Rs, Ps = sp.symbols("R P")
    per_atom_rp = (Ps**2, Ps * Rs, Ps**2 * Rs)
    for f, frp in zip(per_atom, per_atom_rp):
        assert _zero(frp.subs({Rs: 1 / (1 + u), Ps: u / (1 + u)}) - f)
    # h = 1 - gamma S2 without cancellation: 1 - P^2 = R (1 + P) per atom, sum w = 1
    Hs, gm1 = sp.symbols("h gamma_m1")
    h_rp = Rs * (1 + Ps)
    assert _zero(g * sum(w * h_rp.subs({Rs: 1 / (1 + lv * mt), Ps: lv * mt / (1 + lv * mt)})
                         for lv, w, _ in atoms) - (g - 1) - h)
    zdelta_h = dh_A / (2 * Hs)
    assert _zero(zdelta_h.subs(Hs, 1 - gam * S2) - zdelta)
    # at the kernel root (z = 0, gamma sum w R = gamma - 1) the same h is gamma sum w R P, a sum
    # of positive terms (the form above cancels there completely when lam << 1/mt0 for all
    # atoms that matter)
    one_atom_h = g * h_rp - (g - 1)
    assert _zero((one_atom_h - g * Rs * Ps).subs(g, 1 / (1 - Rs)).subs(Ps, 1 - Rs))
    per_atom_num = (h_rp,) + per_atom_rp[1:]  # R (1 + P) in place of P^2: the sum of h
    return (Hs, PA, Q3, Q3A, Gm_s, gam, mt), zdelta_h, (u, per_atom, (Rs, Ps), per_atom_num), \
        ((SA_inv, S_inv), atom), (Hs, gam, gm1)


@DOC.step
def two_point():
    """tr(Sigma^{-1} Q(z1) Sigma Q(z2))/d for the sample-mean term of KL(gen || data).

    E (K e)^T Sigma^{-1} K e = tr(K Sigma^{-1} K Sigma)/N with K = k_0(C); write K = k0 I + J,
    J = j(C), j = k_0 - k_0(0) (no kernel part), so per dimension
      X = k0^2 + 2 k0 (I_1[k_0] - k0) + Y,  Y = (1/(2 pi i))^2 oint oint j j tr(Sigma^-1 Q1 Sigma Q2)/d.
    Deterministic equivalent of two resolvents (leave-one-out; e.g. Couillet & Liao, Random
    Matrix Methods for Machine Learning, 2022, sect. 2.2): with Qbar_i = (kap_i Sigma - z_i)^{-1},
    kap_i = 1/(1 + delta_i),
      E Q1 B Q2 = Qbar1 B Qbar2 + S_B/(1 - S) Qbar1 Sigma Qbar2,
      S_B = kap1 kap2 tr(Sigma Qbar1 B Qbar2)/n,  S = S_Sigma.
    For B = Sigma (all matrices commute with Sigma): tr(Sigma^-1 Q1 Sigma Q2)/d = T/(1 - S),
    per atom T = R1 R2/(z1 z2), S = gamma P1 P2 with R = 1/(1 + lam mt), P = lam mt R; and
    S(z, z) = 1 - h(z).  Numerically the factor 1/(z1 z2) goes with dz1 dz2 (dz/z = d log z):
    the kernel z1 z2 tr(Sigma^-1 Q1 Sigma Q2)/d stays O(1) however small the nodes are.
    """
    m1, m2, z1, z2, lv, g = sp.symbols("mt_1 mt_2 z_1 z_2 lam_nu gamma")
    kap1, kap2 = -z1 * m1, -z2 * m2  # 1 + delta = -1/(z mt)
    Qb1, Qb2 = 1 / (kap1 * lv - z1), 1 / (kap2 * lv - z2)
    R1, R2 = 1 / (1 + lv * m1), 1 / (1 + lv * m2)
    P1, P2 = lv * m1 * R1, lv * m2 * R2
    # one atom of each trace (sums over atoms are linear)
    assert _zero((1 / lv) * Qb1 * lv * Qb2 - R1 * R2 / (z1 * z2))
    assert _zero(g * kap1 * kap2 * lv * Qb1 * lv * Qb2 - g * P1 * P2)
    u = lv * m1
    assert _zero((g * P1 * P1).subs(m2, m1) - g * u**2 / (1 + u) ** 2)
    # the decomposition of X: Sigma diagonal, J symmetric, generic 2 x 2
    s1, s2, ja, jb, jc, k0 = sp.symbols("s_1 s_2 j_a j_b j_c k0", positive=True)
    Sg, J = sp.diag(s1, s2), sp.Matrix([[ja, jb], [jb, jc]])
    K = k0 * sp.eye(2) + J
    assert _zero((K * Sg.inv() * K * Sg).trace() - (2 * k0**2 + 2 * k0 * J.trace()
                                                     + (Sg.inv() * J * Sg * J).trace()))
    Tsum, Ssum = sp.symbols("T S")
    two = Tsum / (z1 * z2 * (1 - Ssum))
    # 1 - S without cancellation (S -> 1 at the hard edge): per atom 1 - P1 P2 = R1 + R2 - R1 R2,
    # so with r_i = sum w R_i and sum w = 1: 1 - S = gamma (r1 + r2 - T) - (gamma - 1)
    r1, r2, gm1 = sp.symbols("r_1 r_2 gamma_m1")
    assert _zero(1 - P1 * P2 - (R1 + R2 - R1 * R2))
    one_minus_s = g * (r1 + r2 - Tsum) - gm1
    assert _zero((one_minus_s.subs({r1: R1, r2: R2, Tsum: R1 * R2, gm1: g - 1}))
                 - (1 - g * P1 * P2))
    return (m1, lv), (R1, P1), (Tsum, r1, r2, g, gm1), two, Tsum / one_minus_s


def build() -> Module:
    DOC.reset()
    m, w, q, w_stable = denoiser()
    a, h, log_a, sched = sampler_step(m, w)
    delta_a, delta_a_conv = step_difference(a, sched)
    mean_recursion(a, h, sched)
    (la, lv, ls2, log_step), (a_, v_, s2_, var_step) = variance_recursion()
    kl_args, kl_matrix = gaussian_kl()
    maha_args, maha = mean_mismatch()
    err_args, test, train = errors()
    mt, lnu, A_nu, zz, g, gm1, base, term_R, res_term, (s_k, kernel_R, kterm) = silverstein()
    fm_args, zdelta, (u, per_atom, rp_args, per_atom_rp), (edge_args, edge_atom), h_args = \
        fluctuation_mean()
    (m1, lv1), (R1, P1), tp_args, tp, tp_scaled = two_point()

    t, T, bmin, bmax = sp.symbols("t T beta_min beta_max", positive=True)
    beta_t = bmin + (bmax - bmin) * t / T
    # complex-z variants for the contour: divisions through recip, and the converged
    # denoiser (tau = inf) with E = 0 substituted (no exponentials to evaluate)
    inv = recip(m + lam)
    # per-step real factors as reciprocals (numpy would divide a complex array by a real one
    # as a complex division, several times slower than multiplying)
    k_step = recip(sp.sqrt(1 - beta))
    a_z = ((abar * c + (1 - beta) * omp + lam + beta * E) * inv * k_step).subs(c, z)
    q_z = ((abar * c + lam + om * E) * inv).subs(c, z)
    w_z = (sp.sqrt(om) * (-expm1(log_e)) * inv).subs(c, z)
    assert _zero(a_z.rewrite(sp.Pow) - a.subs(c, z))
    assert _zero(q_z.rewrite(sp.Pow) - q.subs(c, z))
    assert _zero((w_z.rewrite(sp.Pow) - w_stable.subs(c, z)))
    conv = {log_e: -sp.oo}
    a_zc, q_zc = a_z.subs(conv), q_z.subs(conv)
    w_zc = (sp.sqrt(om) * inv).subs(c, z)
    assert _zero(w_zc.rewrite(sp.Pow) - w.subs(conv).subs(c, z))
    # with tau given, log E = -tau (m + lam) is formed inside (shared with 1/(m + lam))
    # with tau given, E = exp(-tau (m + lam)) and expm1(log E) from one complex expm1:
    # with e = expm1(-tau abar z) and the per-step e0 = expm1(-tau q), q = lam + 1 - abar,
    # E = E0 (1 + e) with E0 = exp(-tau q) itself (1 + e0 would round to 0 where tau q is
    # large, and at c = 0 the step a_t is E0 times a factor: mpmath represents exp(-1e8)) and
    # expm1(a + b) = e0 + e + e0 e (no cancellation)
    q_ = lam + om
    e_z, e_0 = expm1(-tau * abar * z), expm1(-tau * q_)
    E0 = sp.exp(-tau * q_)
    E_z, E1_z = E0 * (1 + e_z), e_0 + e_z + e_0 * e_z
    assert _zero(E_z.rewrite(sp.exp) - sp.exp(-tau * (abar * z + q_)))
    assert _zero(E1_z.rewrite(sp.exp) - sp.exp(-tau * (abar * z + q_)) + 1)
    k_delta = beta * k_step * recip(q_)
    da_exp = ((abar * z * (1 - sp.exp(-tau * q_)) + q_ * sp.exp(-tau * q_) * expm1(-tau * abar * z))
              * inv.subs(c, z) * k_delta)
    da_z = (abar * z * -e_0 + q_ * E0 * e_z) * inv.subs(c, z) * k_delta  # 1 - E0 = -e0
    da_zc = abar * z * inv.subs(c, z) * k_delta
    assert _zero(da_exp.rewrite(sp.Pow) - delta_a.subs(c, z))
    assert _zero((da_z - da_exp).rewrite(sp.exp))
    assert _zero(da_zc.rewrite(sp.Pow) - delta_a_conv.subs(c, z))
    fns = [
        Function("schedule_beta", (t, T, bmin, bmax), (beta_t,), "beta_t of the linear DDPM schedule."),
        Function("log_decay", (c, abar, om, lam, tau), (-tau * (m + lam),),
                 "log E = -tau (m + lam), m = abar c + 1 - abar (gradient-flow factor)."),
        Function("log_step", (c, abar, om, omp, beta, lam, log_e), (log_a,),
                 "log a_t(c): one DDPM step on a direction of C, in log space."),
        Function("denoiser_terms", (c, abar, om, lam, log_e), (q**2, w_stable**2, c * w_stable**2),
                 "(q^2, W^2, c W^2) on a direction of C; q = 1 - sqrt(1-abar) W."),
        # q and W themselves (squared by the caller: sympy would print (x y)^2 as x^2 y^2,
        # which overflows for eigenvalues near 1e250 where (x y)^2 does not)
        Function("step_terms_z", (z, abar, om, omp, beta, lam, tau),
                 tuple(x.subs({expm1(log_e): E1_z}).subs({E: E_z}) for x in (a_z, q_z, w_z))
                 + (da_z,),
                 "(a_t, q_t, W_t, a_t(z) - a_t(0)) at complex z (contour integrals; also real c), "
                 "sharing 1/(m + lam)."),
        Function("step_terms_z_conv", (z, abar, om, omp, beta, lam), (a_zc, q_zc, w_zc, da_zc),
                 "step_terms_z for the converged denoiser (tau = inf)."),
        Function("gaussian_kl", kl_args, (kl_matrix,), "KL per dimension from per-dimension traces."),
        Function("mahalanobis", maha_args, (maha,), "E (mu - m_g)^T P (mu - m_g) / d."),
        Function("errors", (*err_args, abar), (test, train), "(test_error_t, train_error_t)."),
        Function("silverstein_base", (mt, zz, gm1), (base, sp.diff(base, mt)),
                 "((gamma - 1) - z mt, derivative): G(mt) without the population sum."),
        Function("silverstein_term", (mt, lnu, g), term_R,
                 "(-gamma/(1 + lam mt), derivative): one population atom of G(mt)."),
        Function("kernel_term", (s_k, lnu), kernel_R,
                 "(R, 1 - R) with R = s/(s + lam) = 1/(1 + lam mt0), s = 1/mt0: the kernel of C "
                 "(s dR/ds = R (1 - R))."),
        Function("fluctuation_terms", rp_args, per_atom_rp,
                 "Per atom (1 - u^2/(1+u)^2, u/(1+u)^2, u^2/(1+u)^3), u = lam mt, from R = 1/(1+u) "
                 "and P = u/(1+u): the sums of h, P_A, Q3 of the finite-d mean correction."),
        Function("fluctuation_h", (sp.Symbol("sum_h"), h_args[1], h_args[2]),
                 (h_args[1] * sp.Symbol("sum_h") - h_args[2],),
                 "h = 1 - gamma S2 = gamma sum w R (1 + P) - (gamma - 1), free of cancellation."),
        Function("fluctuation_mean", fm_args, (zdelta,),
                 "z delta_A(z): the O(1) correction of tr(A Q(z)) for real Gaussian data, times z."),
        Function("hard_edge_atom", edge_args, (edge_atom,),
                 "d times the overlap mass of the hard-edge atom at 0 when gamma = 1."),
        Function("overlap_factors", (m1, lv1), (R1, P1),
                 "(R, P) = (1/(1 + lam mt), lam mt/(1 + lam mt)) for the two-resolvent trace."),
        Function("two_point", tp_args, (tp_scaled,),
                 "z1 z2 tr(Sigma^-1 Q(z1) Sigma Q(z2))/d = T/(1 - S), T = sum w R1 R2, "
                 "S = gamma sum w P1 P2, 1 - S = gamma (r1 + r2 - T) - (gamma - 1), r = sum w R."),
    ]
    eqs = [
        ("beta_t", sp.Eq(sp.Symbol("beta_t"), beta_t)),
        ("W_t(c)", sp.Eq(sp.Symbol("W_t"), w)),
        ("q_t(c)", sp.Eq(sp.Symbol("q_t"), q)),
        ("a_t(c)", sp.Eq(sp.Symbol("a_t"), a)),
        ("h_t(c)", sp.Eq(sp.Symbol("h_t"), h)),
        ("mean deficit", sp.Eq(1 - sp.Symbol("k_0"), sp.sqrt(sp.Symbol("abar_T")) * sp.Product(
            sp.Function("a")(t), (t, 1, T)))),
        ("variance map", sp.Eq(sp.Symbol("v_{t-1}"), var_step)),
        ("KL per dim", sp.Eq(sp.Symbol("KL"), kl_matrix)),
        ("mean mismatch", sp.Eq(sp.Symbol("maha"), maha)),
        ("test_error_t", sp.Eq(sp.Symbol("test"), test)),
        ("train_error_t", sp.Eq(sp.Symbol("train"), train)),
        ("Silverstein", sp.Eq(zz, -1 / mt + g * sp.Sum(
            sp.Symbol("w_nu") * lnu / (1 + lnu * mt), (sp.Symbol("nu"), 1, sp.Symbol("d"))))),
        ("Newton form", sp.Eq(0, base + sp.Sum(sp.Symbol("w_nu") * term_R[0].rewrite(sp.Pow),
                                                (sp.Symbol("nu"), 1, sp.Symbol("d"))))),
        ("kernel of C", sp.Eq(1, g * sp.Sum(sp.Symbol("w_nu") * kterm.subs(mt, sp.Symbol("mt0")),
                                             (sp.Symbol("nu"), 1, sp.Symbol("d"))))),
        ("  solved in s = 1/mt0", sp.Eq((g - 1) / g, sp.Sum(
            sp.Symbol("w_nu") * kernel_R[0].rewrite(sp.Pow), (sp.Symbol("nu"), 1, sp.Symbol("d"))))),
        ("overlap transform", sp.Eq(sp.Symbol("m_A"), sp.Sum(
            sp.Symbol("w_nu") * res_term, (sp.Symbol("nu"), 1, sp.Symbol("d"))))),
    ]
    eqs += [
        ("finite-d mean correction: z delta_A(z)", sp.Eq(zz * sp.Symbol("delta_A"), zdelta)),
        ("  with h = 1 - gamma S2 and S2, P_A, Q3, Q3_A the w- (P_A, Q3_A: w A-) weighted sums of",
         sp.Tuple(*(f.subs(u, lnu * mt) for f in per_atom))),
        ("two resolvents, R_12 = tr(Sigma^-1 Q(z_1) Sigma Q(z_2))/d", sp.Eq(sp.Symbol("R_12"), tp)),
    ]
    f_, mA = sp.Function("f"), sp.Function("m_A")
    eqs.append(("bulk part of I_A[f], contour Gamma+", sp.Eq(sp.Symbol("I_A^bulk[f]"),
                                         -sp.im(sp.Integral(f_(zz) * mA(zz), zz)) / sp.pi)))
    DOC.system("per-eigenvalue maps and spectral traces", eqs,
               "E = exp(-tau (m + lam)), m = abar c + 1 - abar, om = 1 - abar.")
    DOC.sections.append(dict(title="spectral assembly", prose=ASSEMBLY, equations=[]))
    return Module("ldm", fns, DOC)


ASSEMBLY = """Spectral assembly: I_A[f] = int f dmu_A + f(0) tr(A P_0)/d, A in {1, Sigma^-1, Sigma}
  finite d: m_A -> m_A + delta_A/d and tr(A P_0)/d -> tr(A P_0)/d - (z delta_A)(0)/d
    (gamma = 1: an atom at 0 of mass (sum w A/lam)/(4 d sum w/lam), inside the span)
  KL(gen||data): tr_ratio = I_{Sigma^-1}[v_0], logdet_p = I_1[log v_0], logdet_q = int log lambda dH,
    maha = mean_norm I_{Sigma^-1}[(1 - k_0)^2] + (1/N) X,
    X = k0^2 + 2 k0 (I_1[k_0] - k0) + Y[k_0 - k0], k0 = k_0(0) (two resolvents)
  KL(data||gen): tr_ratio = I_Sigma[1/v_0], logdet_p = int log lambda dH, logdet_q = I_1[log v_0],
    maha = mean_norm I_1[(1 - k_0)^2/v_0] + (1/N) I_Sigma[k_0^2/v_0]
  errors: iq2 = I_1[q_t^2], isw2 = I_Sigma[W_t^2], icw2 = I_1[c W_t^2]
  span_fraction = 1 - v_0(0) tr(P_0)/d / I_1[v_0]
  numerically, with the total masses exact (I_A[1] = tr(A)/d), f = f(0) + (f - f(0)) for f = v_0
    and (1 - k_0)^2 (differences from the closed-form a_t(c) - a_t(0)): I_{Sigma^-1}[f] =
    f(0) tr(Sigma^-1)/d + I_{Sigma^-1}[f - f(0)], I_1[v_0] = v_0(0) + I_1[v_0 - v_0(0)], and
  excess_kl = KL(gen||data) - kl_oracle, H the population law (the oracle sampler):
    (1/2) [I_{Sigma^-1}[v_0 - v_0(0)] - H_{Sigma^-1}[v_0 - v_0(0)] - I_1[log v_0] + H_1[log v_0]
    + mean_norm (I_{Sigma^-1}[(1-k_0)^2 - (1-k_0(0))^2] - H_{Sigma^-1}[same]) + (1/N) X]
    (the f(0) parts cancel exactly: both are large when Sigma has tiny eigenvalues)
"""
