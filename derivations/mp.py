"""Marchenko-Pastur and generalised Marchenko-Pastur (Silverstein) laws, from the resolvent.

Conventions (conventions section 3).  ``X`` is ``N x d`` with iid N(0, 1) entries, ``c = d / N``.
``S = Sigma^{1/2} X^T X Sigma^{1/2} / N`` is the ``d x d`` sample covariance, ``Sigma`` has
spectral law ``H = sum_k w_k delta_{t_k}``.  ``s(z) = tr (S - z)^{-1} / d`` is the Stieltjes
transform of the law of ``S`` (``Im s > 0`` for ``Im z > 0``); ``sb(z)`` is the transform of
the ``N x N`` companion ``X Sigma X^T / N``.  Marchenko-Pastur is the case ``H = delta_1``.

Route: Sherman-Morrison isolates one sample, its quadratic form concentrates on a trace,
the resolvent identity gives a deterministic equivalent, and eliminating the trace gives
Silverstein's equation for ``sb``; specialising to one atom gives the MP quadratic, its
discriminant factorises over the edges, and the physical root follows from ``s ~ -1/z``.
Moments (series at infinity) and the log-moment (Bartlett decomposition) complete the
closed forms; the solvers iterate Silverstein's equation in ``v = 1/sb``.  Every identity
used numerically is asserted here.
"""
from __future__ import annotations

import sympy as sp

from ._codegen import Document, Function, Module

z, c, s, sb, delta = sp.symbols("z c s sb delta")
N = sp.Symbol("N", positive=True)
cp = sp.Symbol("c", positive=True)  # where the sign of c matters (sqrt c, logs)
_k, _K = sp.symbols("k K", integer=True, positive=True)
_tk, _wk = sp.IndexedBase("t")[_k], sp.IndexedBase("w")[_k]


DOC = Document("Marchenko-Pastur and generalised Marchenko-Pastur laws", __doc__, {
    "z": (r"z", "spectral argument, complex (Im z > 0 on the physical sheet)"),
    "c": (r"c", "aspect ratio d/N (dimension over sample size)"),
    "N": (r"N", "number of samples (rows of X)"),
    "s": (r"s", "Stieltjes transform tr (S - z)^{-1}/d of the sample covariance S"),
    "sb": (r"\underline{s}", "companion transform: the Stieltjes transform of X Sigma X^T/N"),
    "delta": (r"\delta", "tr(Sigma Qbar)/N, the limit of the leave-one-out quadratic form"),
    "t": (r"t", "atoms t_k of the population law H (eigenvalues of Sigma)"),
    "w": (r"w", "weights w_k of the atoms (sum to 1)"),
    "k": (r"k", "atom index; moment order"),
    "K": (r"K", "number of atoms"),
    "v": (r"v", "Newton variable v = 1/sb"),
    "w_0": (r"w_{0}", "mass of the population's atoms at 0"),
    "a": (r"a", "lower support edge (1 - sqrt c)^2"),
    "b": (r"b", "upper support edge (1 + sqrt c)^2"),
    "R": (r"R", "branch of the discriminant, sqrt(z - a) sqrt(z - b), ~ z at infinity"),
    "x": (r"x", "a real point of the support"),
    "rho": (r"\rho", "density of the Marchenko-Pastur law"),
    "m": (r"m", "moments m_k of the Marchenko-Pastur law"),
    "n": (r"n", "moment order"),
    "m_n": (r"m_{n}", "n-th moment"),
    "m_{n+1}": (r"m_{n+1}", "(n+1)-th moment"),
    "m_k": (r"m_{k}", "k-th moment"),
    "j": (r"j", "summation index of the Narayana terms"),
    "t_j": (r"t_{j}", "j-th Narayana term c^j C(k, j) C(k, j+1)/k"),
    "t_{j+1}": (r"t_{j+1}", "the next Narayana term"),
    "E[log x]": (r"\mathbb{E}[\log x]", "log-moment of the law (c < 1)"),
    "E[log x | x > 0]": (r"\mathbb{E}[\log x \mid x > 0]", "log-moment of the non-zero part (c > 1)"),
    "u": (r"u", "1/z (series at infinity) or i/d (Bartlett)"),
    "p": (r"p", "x - a"),
    "q": (r"q", "b - x"),
    "conv_plus": (r"\mathrm{conv}_{+}", "sum_{i=1}^{n} m_i m_{n-i}"),
    "Bt": (r"\tilde{B}", "sum over positive atoms of w_k h_k / t_k"),
    "tau": (r"\tau", "1/t for an atom t > 0"),
})


def _is_zero(expr) -> bool:
    return sp.simplify(expr) == 0


# -- 1. Sherman-Morrison: removing one sample ---------------------------------------------
@DOC.step
def sherman_morrison_check() -> None:
    """(A + u u^T / N)^{-1} u = A^{-1} u / (1 + u^T A^{-1} u / N), checked on a generic 2x2.

    With A = S_{-i} - z I and u = x_i this is Q x_i = Q_{-i} x_i / (1 + x_i^T Q_{-i} x_i / N).
    """
    a11, a12, a22, u1, u2 = sp.symbols("a11 a12 a22 u1 u2")
    A = sp.Matrix([[a11, a12], [a12, a22]])
    u = sp.Matrix([u1, u2])
    lhs = (A + u * u.T / N).inv() * u
    q = (u.T * A.inv() * u)[0] / N  # x_i^T Q_{-i} x_i / N
    rhs = A.inv() * u / (1 + q)
    assert sp.simplify(lhs - rhs) == sp.zeros(2, 1)
    # hence the quadratic form with the full resolvent: x_i^T Q x_i / N = q / (1 + q)
    assert sp.simplify((u.T * lhs)[0] / N - q / (1 + q)) == 0
    DOC.show_tex("leave one out", r"Q x_i = \frac{Q_{-i} x_i}{1 + x_i^{T} Q_{-i} x_i / N}",
                 "Q x_i = Q_{-i} x_i / (1 + x_i^T Q_{-i} x_i / N)", ("N",),
                 "Q = (S - z)^{-1}, Q_{-i} the same without sample x_i")


# -- 2. Resolvent identity: the deterministic equivalent ------------------------------------
@DOC.step
def resolvent_identity_check() -> None:
    """A^{-1} - B^{-1} = A^{-1} (B - A) B^{-1}, checked on generic 2x2 matrices.

    With A = S - z, B = Sigma/(1 + delta) - z:  Q - Qbar = Q (Sigma/(1+delta) - S) Qbar.
    By step 1, E[Q S] = (1/N) sum_i E[Q_{-i} x_i x_i^T] / (1 + delta) = E[Q_{-i}] Sigma / (1+delta),
    and Q_{-i} differs from Q by a rank-one term of norm O(1/N): the two terms cancel and
    Q ~ Qbar = (Sigma / (1 + delta) - z)^{-1} with delta = tr(Sigma Qbar) / N.
    """
    A = sp.Matrix(2, 2, sp.symbols("p0:4"))
    B = sp.Matrix(2, 2, sp.symbols("r0:4"))
    assert sp.simplify(A.inv() - B.inv() - A.inv() * (B - A) * B.inv()) == sp.zeros(2, 2)
    # the cancellation, with non-commuting placeholders for the matrices
    Q, Sig, Qb = sp.symbols("Q Sigma Qbar", commutative=False)
    ES = Q * Sig * Qb / (1 + delta)  # E[Q S Qbar] after step 1 and Q_{-i} -> Q
    assert sp.expand(Q * (Sig / (1 + delta)) * Qb - ES) == 0
    DOC.show_tex("deterministic equivalent", r"Q \simeq \bar{Q} = \left(\frac{\Sigma}{1 + \delta} - z\right)^{-1},"
                 r"\quad \delta = \operatorname{tr}(\Sigma \bar{Q})/N",
                 "Q ~ Qbar = (Sigma/(1 + delta) - z)^{-1}, delta = tr(Sigma Qbar)/N", ("delta", "z", "N"))


@DOC.step
def silverstein_derivation():
    """Steps 3-5: the trace identity, the companion transform and Silverstein's equation.

    Trace identity: (S - z) Q = I gives tr(SQ)/d = 1 + z s, while tr(SQ)/d = (1/d) sum_i
    q_i/(1 + q_i) by step 1, and q_i = x_i^T Q_{-i} x_i/N concentrates on delta (Hanson-Wright),
    so 1 + z s = delta/(c (1 + delta)).  Companion: X Sigma X^T/N shares the non-zero eigenvalues
    of S plus N - d zeros, so sb = c s - (1 - c)/z = -1/(z (1 + delta)).  Substituting
    1 + delta = -1/(z sb) in delta = tr(Sigma Qbar)/N turns it into Silverstein's equation.
    Checked on a population with K = 3 generic atoms.
    """
    K = 3
    t = sp.symbols(f"t1:{K + 1}", positive=True)
    w = sp.symbols(f"w1:{K + 1}", positive=True)
    # 3. trace identity: (S - z) Q = I gives tr(SQ)/d = 1 + z s, while
    #    tr(SQ)/d = (1/d) sum_i x_i^T Q x_i / N = (1/d) sum_i q_i/(1 + q_i) by step 1, and
    #    q_i = x_i^T Q_{-i} x_i / N concentrates on delta = tr(Sigma Q)/N (Hanson-Wright; x_i
    #    is independent of Q_{-i}), so tr(SQ)/d = (N/d) delta/(1+delta).
    trace_identity = sp.Eq(1 + z * s, (1 / c) * delta / (1 + delta))  # N/d = 1/c
    s_of_delta = sp.solve(trace_identity, s)[0]
    # in the eigenbasis of Sigma, tr(Qbar)/d and tr(Sigma Qbar)/N are sums over the atoms
    s_eq = sum(wk / (tk / (1 + delta) - z) for tk, wk in zip(t, w))
    delta_eq = c * sum(wk * tk / (tk / (1 + delta) - z) for tk, wk in zip(t, w))
    # 4. companion: X Sigma X^T/N shares the non-zero eigenvalues, plus N - d zeros, so
    #    N sb = d s - (N - d)/z, i.e. sb = c s - (1 - c)/z; with step 3 this is -1/(z(1+delta))
    sb_of_s = c * s - (1 - c) / z
    assert _is_zero(sb_of_s.subs(s, s_of_delta) + 1 / (z * (1 + delta)))
    delta_of_sb = -1 / (z * sb) - 1
    # 5. substitute 1 + delta = -1/(z sb): each atom gives t/(t/(1+delta) - z) = -(t/z)/(1 + t sb)
    for tk in t:
        assert _is_zero((tk / (tk / (1 + delta) - z)).subs(delta, delta_of_sb)
                        + (tk / z) / (1 + tk * sb))
    atom_sum = sum(wk * tk / (1 + tk * sb) for tk, wk in zip(t, w))
    # delta = delta_eq becomes Silverstein's equation z = -1/sb + c sum_k w_k t_k / (1 + t_k sb)
    silverstein = z + 1 / sb - c * atom_sum
    assert _is_zero((delta_eq - delta).subs(delta, delta_of_sb) - silverstein / z)
    # s from sb without the cancellation of sb + (1 - c)/z at small |z|:
    #   s = sum_k w_k / (t_k/(1+delta) - z) = -(1/z) sum_k w_k / (1 + t_k sb)
    s_direct = -sum(wk / (1 + tk * sb) for tk, wk in zip(t, w)) / z
    assert _is_zero(s_eq.subs(delta, delta_of_sb) - s_direct)
    # ... which equals the companion relation s = (sb + (1 - c)/z)/c on solutions: use
    # sum w/(1 + t sb) = sum w - sb sum w t/(1 + t sb) with sum w = 1 and the equation
    z_sol = -1 / sb + c * atom_sum
    wnorm = {w[-1]: 1 - sum(w[:-1])}
    assert _is_zero((s_direct - (sb + (1 - c) / z) / c).subs(z, z_sol).subs(wnorm))
    DOC.show("trace identity", trace_identity)
    DOC.show("companion", sp.Eq(sb, sb_of_s))
    DOC.show("", sp.Eq(sb, -1 / (z * (1 + delta))))
    DOC.show("Silverstein", sp.Eq(z, -1 / sb + c * sp.Sum(_wk * _tk / (1 + _tk * sb), (_k, 1, _K))))
    DOC.show("s from sb", sp.Eq(s, -sp.Sum(_wk / (1 + _tk * sb), (_k, 1, _K)) / z),
             "no cancellation at small |z|")
    return silverstein


# -- 6. one atom t = 1: the Marchenko-Pastur quadratic --------------------------------------
@DOC.step
def mp_quadratic():
    """Step 6: one atom t = 1, the Marchenko-Pastur quadratic.

    Silverstein's equation with H = delta_1, multiplied by sb (1 + sb), is a quadratic in sb;
    through the companion relation it is the quadratic in s below (times c).
    """
    one_atom = z + 1 / sb - c * 1 / (1 + sb)  # Silverstein with H = delta_1
    quad_sb = sp.expand(one_atom * sb * (1 + sb))
    assert _is_zero(quad_sb - (z * sb**2 + (z + 1 - c) * sb + 1))
    quad = c * z * s**2 + (z - 1 + c) * s + 1
    assert _is_zero(quad_sb.subs(sb, c * s - (1 - c) / z) - c * quad)
    DOC.show("in sb", sp.Eq(quad_sb, 0))
    DOC.show("in s", sp.Eq(quad, 0))
    return quad


# -- 7. discriminant, edges and the physical root -------------------------------------------
a_edge = (1 - sp.sqrt(cp)) ** 2
b_edge = (1 + sp.sqrt(cp)) ** 2
R = sp.Symbol("R")  # R = sqrt(z - a) sqrt(z - b): analytic off [a, b], ~ z at infinity
B_coef = z - 1 + c


@DOC.step
def mp_roots(quad):
    """Step 7: the discriminant, the edges and the physical root.

    The discriminant factorises over the edges a, b; R = sqrt(z - a) sqrt(z - b) (principal
    roots) is analytic off [a, b] and ~ z at infinity, and the root with R behaves as -1/z at
    infinity (a probability measure): the physical branch.  Two algebraically equal forms of
    the root; the solvers use the better-conditioned one.
    """
    disc = sp.expand(B_coef**2 - 4 * c * z)
    assert sp.expand(disc.subs(c, cp) - (z - a_edge) * (z - b_edge)) == 0
    n1, d1 = -B_coef + R, 2 * c * z  # s = n1/d1: the textbook form
    n2, d2 = sp.Integer(2), -B_coef - R  # s = n2/d2: the same root since n1 d2 = n2 d1 mod R^2
    assert sp.expand(sp.expand(n1 * d2 - n2 * d1).subs(R**2, disc)) == 0
    assert sp.expand(sp.expand(quad.subs(s, n1 / d1) * d1**2).subs(R**2, disc)) == 0
    # physical branch: with R ~ z the root behaves as -1/z (a probability measure)
    u = sp.Symbol("u", positive=True)  # u = 1/z
    R_inf = sp.sqrt(1 - a_edge * u) * sp.sqrt(1 - b_edge * u) / u
    zs = (n1 / d1 * z).subs(c, cp).subs(R, R_inf).subs(z, 1 / u)
    assert sp.limit(zs, u, 0, "+") == -1
    DOC.show("discriminant", sp.Eq(disc.subs(c, cp), (z - sp.Symbol("a")) * (z - sp.Symbol("b"))))
    DOC.show("root", sp.Eq(s, n1 / d1))
    DOC.show("", sp.Eq(s, n2 / d2), "the same root, no cancellation where z - 1 + c and R nearly cancel")
    DOC.show("at infinity", sp.Eq(sp.Limit(z * s, z, sp.oo), -1))
    return (n1, d1, n2, d2)


@DOC.step
def mp_density(roots):
    """Boundary value on a < x < b: R(x + i0) = sqrt(x - a) * i sqrt(b - x)."""
    x, p, q = sp.symbols("x p q", positive=True)  # p = x - a, q = b - x
    n1, d1, _, _ = roots
    s_edge = (n1 / d1).subs({R: sp.sqrt(p) * sp.I * sp.sqrt(q), z: x, c: cp})
    dens = sp.sqrt(p * q) / (2 * sp.pi * cp * x)
    assert _is_zero(sp.im(s_edge) / sp.pi - dens)
    DOC.show("density", sp.Eq(sp.Function("rho")(x), dens))
    return dens.subs({p: x - a_edge, q: b_edge - x})


# -- 8. moments: the series at infinity ------------------------------------------------------
@DOC.step
def moment_recursion(quad, order=8):
    """s = -sum_k m_k / z^{k+1}: matching powers of 1/z in the quadratic gives
    m_0 = 1 and m_{n+1} = (1 - c) m_n + c sum_{i+j=n} m_i m_j; checked against Narayana.

    The evaluated form keeps only positive terms: with m_0 = 1 the sum is m_n + conv_plus.
    """
    m = sp.symbols(f"m0:{order + 2}")
    u = sp.Symbol("u")
    series = -sum(m[k] * u ** (k + 1) for k in range(order + 2))
    expr = sp.expand(quad.subs(s, series).subs(z, 1 / u))
    assert sp.expand(expr.coeff(u, 0) - (1 - m[0])) == 0
    m_n, conv = sp.symbols("m_n conv")
    step = (1 - c) * m_n + c * conv
    for n in range(order + 1):
        conv_n = sum(m[i] * m[n - i] for i in range(n + 1))
        assert sp.expand(expr.coeff(u, n + 1) + m[n + 1] - step.subs({m_n: m[n], conv: conv_n})) == 0
    vals = [sp.Integer(1)]
    for n in range(order):
        conv_n = sum(vals[i] * vals[n - i] for i in range(n + 1))
        vals.append(sp.expand(step.subs({m_n: vals[n], conv: conv_n})))
    for k in range(1, order + 1):
        narayana = sum(c**j / (j + 1) * sp.binomial(k, j) * sp.binomial(k - 1, j) for j in range(k))
        assert sp.expand(vals[k] - narayana) == 0
    # The form to evaluate: with m_0 = 1, conv = m_n + conv_plus, conv_plus = sum_{i=1}^{n}
    # m_i m_{n-i} >= 0, so m_{n+1} = m_n + c conv_plus is a sum of positive terms (the form
    # above cancels c m_n against (c - 1) m_n and loses every digit of m_1 = 1 once c > 1e16).
    conv_plus = sp.Symbol("conv_plus")
    stable = m_n + c * conv_plus
    assert sp.expand(step.subs(conv, conv_plus + m_n) - stable) == 0
    DOC.show("moments", sp.Eq(sp.Symbol("m_{n+1}"), (1 - c) * m_n + c * sp.Sum(
        sp.IndexedBase("m")[_k] * sp.IndexedBase("m")[sp.Symbol("n") - _k], (_k, 0, sp.Symbol("n")))))
    DOC.show("positive terms", sp.Eq(sp.Symbol("m_{n+1}"), stable))
    # O(k) instead of O(k^2) for one high moment: m_k = sum_{j<k} t_j with the Narayana terms
    # t_j = c^j C(k, j) C(k, j+1)/k, t_0 = 1 and a positive term ratio
    k, j = sp.symbols("k j", integer=True, nonnegative=True)
    t_j = c**j * sp.binomial(k, j) * sp.binomial(k, j + 1) / k
    ratio = c * (k - j) * (k - j - 1) / ((j + 1) * (j + 2))
    assert sp.simplify(sp.combsimp(t_j.subs(j, j + 1) / t_j) - ratio) == 0
    assert t_j.subs(j, 0).simplify() == 1
    for kk in range(1, order + 1):
        assert sp.expand(sum(t_j.subs({k: kk, j: jj}) for jj in range(kk)) - vals[kk]) == 0
    DOC.show("Narayana terms", sp.Eq(sp.Symbol("m_k"), sp.Sum(sp.Symbol("t_j"), (j, 0, k - 1))),
             "t_0 = 1")
    DOC.show("", sp.Eq(sp.Symbol("t_{j+1}") / sp.Symbol("t_j"), ratio))
    return m_n, conv_plus, stable, (c, k, j, ratio)


# -- 9. log-moment: Bartlett decomposition ---------------------------------------------------
@DOC.step
def log_moment(n_series=24):
    """det(X^T X) = prod_{i<d} chi^2_{N-i} (Bartlett), and chi^2_{N-i}/N -> 1 - i/N = 1 - c u
    with u = i/d, so int log x dmu = int_0^1 log(1 - c u) du for c <= 1.

    At small c the closed form cancels; its series is used there.  For c >= 1 the non-zero
    eigenvalues follow the law c MP(1/c).
    """
    u = sp.Symbol("u", positive=True)
    cc = sp.Symbol("c", positive=True)
    integral = sp.integrate(sp.log(1 - cc * u), (u, 0, 1), conds="none")
    closed = -1 - (1 - cc) / cc * sp.log(1 - cc)
    for cv in (sp.Rational(1, 3), sp.Rational(3, 4)):
        assert abs(sp.N(integral.subs(cc, cv) - closed.subs(cc, cv), 30)) < 1e-25
    # small c: the closed form cancels; its series is -sum_k c^k / (k (k + 1))
    series = -sum(cc**k / (k * (k + 1)) for k in range(1, n_series + 1))
    assert sp.expand(sp.series(closed, cc, 0, n_series + 1).removeO() - series) == 0
    # c >= 1: the non-zero eigenvalues are those of X X^T / N = c (X X^T / d), i.e. c MP(1/c)
    nonzero = sp.expand_log(sp.log(cc) + closed.subs(cc, 1 / cc), force=True)
    target = sp.log(cc) - 1 - (cc - 1) * sp.log((cc - 1) / cc)
    assert abs(sp.N((nonzero - target).subs(cc, sp.Rational(5, 2)), 30)) < 1e-25
    DOC.show("Bartlett", sp.Eq(sp.Symbol("E[log x]"), sp.Integral(sp.log(1 - cc * u), (u, 0, 1))))
    DOC.show("", sp.Eq(sp.Symbol("E[log x]"), closed))
    DOC.show("c > 1", sp.Eq(sp.Symbol("E[log x | x > 0]"), target))
    return closed.subs(cc, c), series.subs(cc, c), target.subs(cc, c)


# -- 10. the Newton variable v = 1/sb -------------------------------------------------------
@DOC.step
def newton_variable():
    """Silverstein's equation in v = 1/sb, the form the solvers iterate.

    At large |z|, v ~ -z + c E[t], so F(v) is nearly linear there, while in sb it has a
    1/sb term that makes Newton crawl.  With tau = 1/t (atoms t > 0; t = 0 drops out) and
    h = 1/(1 + tau v) = t/(v + t) per atom: t/(1 + t sb) = v h, d(v h)/dv = h^2, and
    1/(1 + t sb) = v tau h; the physical branch Im sb > 0 is Im v < 0.
    """
    t = sp.Symbol("t", positive=True)
    v, tau, H1, H2, Bt, w0 = sp.symbols("v tau H1 H2 Bt w0")
    h = 1 / (1 + tau * v)
    assert _is_zero((t / (1 + t * sb)).subs(sb, 1 / v) - (v * h).subs(tau, 1 / t))
    assert _is_zero(sp.diff(v * h, v) - h**2)
    assert _is_zero((1 / (1 + t * sb)).subs(sb, 1 / v) - (v * tau * h).subs(tau, 1 / t))
    # F(v) = Silverstein's residual z + 1/sb - c sum_k w_k t_k/(1 + t_k sb) at sb = 1/v,
    # with H1 = sum_{t>0} w_k h_k; the Jacobian needs H2 = sum_{t>0} w_k h_k^2 (same matrix)
    F_h1 = z + v - c * v * H1
    one_atom = (z + 1 / sb - c * t / (1 + t * sb)).subs(sb, 1 / v)
    assert _is_zero(one_atom - F_h1.subs(H1, h.subs(tau, 1 / t)))
    dF = sp.diff(z + v, v) - c * H2
    assert _is_zero(sp.diff(F_h1.subs(H1, h), v) - dF.subs(H2, h**2))
    # v - c v H1 cancels when c ~ 1 and v -> 0 (H1 -> 1).  Since 1 - h = v tau h and the
    # weights sum to 1, H1 = 1 - w0 - v Bt with Bt = sum_{t>0} w_k tau_k h_k, so
    # F = z + (1 - c (1 - w0)) v + c v^2 Bt has no cancellation; checked on 2 atoms + t = 0:
    tau1, tau2, w1, w2 = sp.symbols("tau1 tau2 w1 w2", positive=True)
    hs = [1 / (1 + tau1 * v), 1 / (1 + tau2 * v)]
    H1_2 = w1 * hs[0] + w2 * hs[1]
    Bt_2 = w1 * tau1 * hs[0] + w2 * tau2 * hs[1]
    F = z + (1 - c * (1 - w0)) * v + c * v**2 * Bt
    assert _is_zero((F.subs(Bt, Bt_2) - F_h1.subs(H1, H1_2)).subs(w0, 1 - w1 - w2))
    # s = -(1/z) [w_0 + sum_{t>0} w / (1 + t sb)] = -(w_0 + v Bt)/z
    s_v = -(w0 + v * Bt) / z
    DOC.show("Newton form", sp.Eq(0, F.subs(w0, sp.Symbol("w_0"))))
    DOC.show("", sp.Eq(s, s_v.subs(w0, sp.Symbol("w_0"))))
    return [
        Function("silverstein_atom", (tau, v), (h,),
                 "Per-atom h = 1/(1 + tau v) = t/(v + t) (tau = 1/t, v = 1/sb)."),
        Function("silverstein_residual", (z, c, v, w0, Bt, H2),
                 (F, dF, sp.Abs(z) + sp.Abs((1 - c * (1 - w0)) * v) + c * sp.Abs(v**2 * Bt)),
                 "(F, dF/dv, scale): Silverstein's equation in v = 1/sb, "
                 "F = z + (1 - c (1 - w0)) v + c v^2 Bt, Bt = sum_k w_k tau_k h_k, "
                 "H2 = sum_k w_k h_k^2 (positive atoms), w0 = mass of zero atoms."),
        Function("silverstein_s", (z, v, w0, Bt), (s_v,),
                 "s = -(w0 + v Bt)/z (no cancellation at small z)."),
    ]


def build() -> Module:
    DOC.reset()
    sherman_morrison_check()
    resolvent_identity_check()
    silverstein_derivation()
    quad = mp_quadratic()
    roots = mp_roots(quad)
    dens = mp_density(roots)
    *_, narayana = moment_recursion(quad)
    L, L_series, L_nonzero = log_moment()
    v_terms = newton_variable()
    L_inv = sp.Symbol("L_inv")
    x = sp.Symbol("x")

    # numerics near c = 1: with cm1 = c - 1 given separately (exact in floating point there),
    # z + cm1 keeps all digits of a small z and 1 - sqrt c = -cm1/(1 + sqrt c) does not cancel
    # in the lower edge; the residual is the quadratic divided by s (no overflow as s -> oo)
    cm1 = sp.Symbol("cm1")
    a = (cm1 / (1 + sp.sqrt(c))) ** 2
    b = b_edge.subs(cp, c)
    assert _is_zero(a.subs(cm1, c - 1).subs(c, cp) - a_edge)
    R_expr = sp.sqrt(z - a) * sp.sqrt(z - b)
    dens_num = sp.sqrt((b - x) * (x - a)) / (2 * sp.pi * c * x)
    for cv, xv in ((sp.Rational(3, 10), sp.Rational(1, 2)), (sp.Rational(5, 2), sp.Rational(3))):
        exact = dens.subs(cp, cv).subs({sym: xv for sym in dens.free_symbols if sym.name == "x"})
        assert abs(sp.N(dens_num.subs(cm1, cv - 1).subs({c: cv, x: xv}) - exact, 40)) < 1e-35
    quad_s = c * z * s + (z + (c - 1)) + 1 / s
    assert _is_zero(quad_s - quad / s)
    roots_num = tuple(r.subs(c - 1, cm1) for r in roots)
    for r, rn in zip(roots, roots_num):
        assert _is_zero(rn.subs(cm1, c - 1) - r)

    functions = [
        Function("mp_shift", (c,), (c - 1,),
                 "c - 1, exact in floating point near c = 1: pass it as cm1 so that z + (c - 1) "
                 "is not rounded through 1."),
        Function("mp_edges", (c, cm1), (a, b),
                 "Support edges (a, b) = ((1 - sqrt c)^2, (1 + sqrt c)^2), a as cm1^2/b."),
        Function("mp_sqrt_disc", (c, cm1, z), (R_expr,),
                 "R = sqrt(z - a) sqrt(z - b) (principal roots): analytic off [a, b], R ~ z at infinity."),
        Function("mp_root_parts", (c, cm1, z, R), roots_num,
                 "(n1, d1, n2, d2) with s = n1/d1 = n2/d2 the physical root; use the better-conditioned "
                 "form."),
        Function("mp_residual", (c, cm1, z, s),
                 (quad_s.subs(c - 1, cm1), sp.Abs(c * z * s) + sp.Abs(z + cm1) + sp.Abs(1 / s)),
                 "(F, scale): F = c z s + (z + c - 1) + 1/s (the quadratic over s) and the sum of "
                 "the terms' moduli."),
        Function("mp_density", (c, cm1, x), (dens_num,),
                 "Density sqrt((b - x)(x - a)) / (2 pi c x) for a < x < b."),
        Function("mp_narayana_ratio", narayana[:3], (narayana[3],),
                 "t_{j+1}/t_j of the Narayana terms of m_k = sum_{j<k} t_j, t_0 = 1 (positive)."),
        Function("mp_log_moment", (c,), (L,), "int log x dmu for 0 < c < 1 (Bartlett)."),
        Function("mp_log_moment_series", (c,), (L_series,),
                 "Series of mp_log_moment at small c (no cancellation), truncated after c^24."),
        Function("mp_log_moment_nonzero", (c, L_inv), (sp.log(c) + L_inv,),
                 "int log x over the non-zero part (law c MP(1/c)) for c > 1, given L_inv = "
                 "mp_log_moment(1/c)."),
        *v_terms,
    ]
    k, K = sp.symbols("k K", integer=True, positive=True)
    tk, wk = sp.IndexedBase("t")[k], sp.IndexedBase("w")[k]
    v, w_0 = sp.symbols("v w_0")
    DOC.system("Generalised Marchenko-Pastur (Silverstein), H = sum_k w_k delta_{t_k}, c = d/N", [
        ("silverstein", sp.Eq(z, -1 / sb + c * sp.Sum(wk * tk / (1 + tk * sb), (k, 1, K)))),
        ("stieltjes", sp.Eq(s, -sp.Sum(wk / (1 + tk * sb), (k, 1, K)) / z)),
        ("companion", sp.Eq(sb, c * s - (1 - c) / z)),
        ("newton_variable", sp.Eq(v, 1 / sb)),
        ("newton_form", sp.Eq(0, z + v - c * v * sp.Sum(wk * tk / (v + tk), (k, 1, K)))),
        ("newton_form_stable", sp.Eq(0, z + (1 - c * (1 - w_0)) * v
                                     + c * v**2 * sp.Sum(wk / (v + tk), (k, 1, K)))),
    ])
    DOC.system("Marchenko-Pastur (H = delta_1)", [
        ("quadratic", sp.Eq(quad, 0)),
        ("edges", sp.Eq(sp.Tuple(sp.Symbol("a"), sp.Symbol("b")), sp.Tuple(a_edge, b_edge))),
        ("root", sp.Eq(s, roots[0] / roots[1])),
        ("root_stable", sp.Eq(s, roots[2] / roots[3])),
        ("branch", sp.Eq(R, sp.sqrt(z - sp.Symbol("a")) * sp.sqrt(z - sp.Symbol("b")))),
        ("density", sp.Eq(sp.Function("rho")(x), sp.sqrt((sp.Symbol("b") - x) * (x - sp.Symbol("a")))
                          / (2 * sp.pi * c * x))),
        ("moments", sp.Eq(sp.Symbol("m_{n+1}"), (1 - c) * sp.Symbol("m_n") + c * sp.Sum(
            sp.IndexedBase("m")[k] * sp.IndexedBase("m")[sp.Symbol("n") - k], (k, 0, sp.Symbol("n"))))),
        ("log_moment", sp.Eq(sp.Symbol("E[log x]"), L)),
        ("log_moment_nonzero", sp.Eq(sp.Symbol("E[log x | x > 0]"), L_nonzero)),
    ])
    return Module("mp", functions, DOC)
