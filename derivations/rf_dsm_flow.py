"""RF-DSM under gradient flow: the two-point deterministic equivalent (conventions section 1.4).

Time convention: B(tau) = B_ridge (I - exp(-tau (U + lam))), i.e. the flow of conventions 1.4 with
time measured in units of d (dB/dtau = -(d/2) grad L; tau' = d tau), as for the linear
diffusion model.  With yhat = Phi^T z/N and R(zeta) = (U + zeta)^{-1}:

    b(tau) = f(U) yhat,  f(s) = (1 - e^{-tau (s + lam)})/(s + lam),

and f(U) yhat is the inverse Laplace transform at time tau of xi -> R(lam + xi) yhat / xi
(check: int_0^inf e^{-xi tau} f_tau(s) dtau = 1/(xi (xi + s + lam))).  A Talbot contour turns
it into sum_j W_j R(zeta_j) yhat, so the errors need, at complex ridges zeta:

* one-point terms (the fixed point of derivations/rf_dsm.py at lam = zeta):
  yhat^T R yhat = 1 - L,  c_t^T R yhat = mu1^2 sqrt(D) H_c psi_p h,
  yhat^T R^2 yhat = dL/dlam,  yhat^T R Sigma_t R yhat = dL/dgam - 1 + 2 c_t^T R yhat;
* the two-point term yhat^T R(zeta_1) Sigma_t R(zeta_2) yhat for zeta_1 != zeta_2, derived
  here: leave-one-out for R_1 M R_2 gives
      E[R_1 M R_2] = Qbar_1 M Qbar_2 + sum_tau alpha_tau k_tau1 k_tau2 theta_tau Qbar_1 Sigma_tau Qbar_2,
      theta_tau = tr(Sigma_tau E[R_1 M R_2]) / N   (a 2 x 2 linear system),
  applied in the augmented space (features, target) whose Schur complements turn
  (R~_1 A~ R~_2)_{yy} into the target quadratic form; all traces are Marchenko-Pastur
  integrals of rational functions of the eigenvalue x of Omega, reduced by partial
  fractions to g_i = int dmu/(a_Oi x + a_Ii) and the moments int x dmu = 1,
  int x^2 dmu = 1 + psi_p.

Anisotropic data (conventions 1.5): the same data-level leave-one-out, with the traces over W done
by removing columns of W (derivations/rf_dsm.py, step 10) for Q_j = (W M_j W^T/d + a_Ij)^{-1},
s_j(ell) = 1/(1 + e_j M_j(ell)), e_j = psi_p g_j:

* tau = tr(Q_1 Q_2)/p solves tr(Q_1 W M_1 W^T Q_2)/(d p) = g_2 - a_I1 tau, i.e.
  tau = g_1 g_2 / (1 - psi_p g_1 g_2 E_H[M_1 M_2 s_1 s_2]);
* tr(Q_1 W F W^T Q_2)/(d p) = tau E_H[F s_1 s_2] for diagonal F;
* w_k^T Q_1 C Q_2 w_k / d = s_1 s_2 (mu1^2 V(ell_k) e_1 e_2 + mu1^2 psi_p tau E_H[V s_1 s_2]
  + kappa^2 psi_p tau) for C = mu1^2 W V W^T/d + kappa^2 (the term i = k and the rest);
* tr(C_s Q_1 C_u Q_2)/p from the same pieces.
Every V is linear in ell, so all of it needs only the moments m_j = E_H[ell^j s_1 s_2],
j = 0, 1, 2 (bounded integrands), and the two-point term of the output coordinates along an
eigenvalue ell is a closed function of (ell, m_0, m_1, m_2) -- averaged over H for the total.
"""
from __future__ import annotations

import sympy as sp

from derivations import rf_dsm as R
from derivations._codegen import Document, Function, Module, Tex

x = sp.Symbol("x")  # eigenvalue of Omega = W W^T/d
# One-point solutions at two ridges (complex in use): unknowns and ridge of each.
k0a, k1a, Ga, lama = sp.symbols("k0a k1a Ga lama")
k0b, k1b, Gb, lamb = sp.symbols("k0b k1b Gb lamb")
psi_n, psi_p, iota, t, mu1, mus2, mue2 = R.psi_n, R.psi_p, R.iota, R.t, R.mu1, R.mus2, R.mue2
D = R.D

DOC = Document("RF-DSM under gradient flow", __doc__, {
    # the symbols of the ridge system keep their definitions from derivations/rf_dsm.py
    **{k: R.DOC.symbols[k] for k in ("lam", "t", "mu1", "mu_s2", "mu_e2", "psi_n", "psi_p", "E_H", "ell")},
    "tau": (r"\tau", "gradient-flow time, in units of d (conventions 1.4)"),
    "xi": (r"\xi", "Laplace variable of the flow time"),
    "b": (r"b", "the output weights of one output coordinate at time tau"),
    "yhat": (r"\hat{y}", "Phi^T z/N: the features' correlation with the target coordinate"),
    "R": (r"R", "the resolvent (U + zeta)^{-1} at a (complex) ridge zeta"),
    "U": (r"U", "Phi^T Phi/(n m), the feature Gram matrix"),
    "c_t": (r"c_t", "cross-covariance of test features with the target coordinate"),
    "Sigma_t": (r"\Sigma_t", "covariance of the test features (eigenvalue x of Omega for isotropic data)"),
    "x": (r"x", "an eigenvalue of Omega = W W^T/d"),
    "k_u1": (r"k_{u,1}", "leave-one-out factor of population u at the first ridge"),
    "k_u2": (r"k_{u,2}", "the same at the second ridge"),
    "J_mean": (r"J_{\mathrm{mean}}", "iota tr(Sigma_mean E[R_1 Sigma_t R_2])/p, mean-row population"),
    "J_orth": (r"J_{\mathrm{orth}}", "the same for the orthogonal-row population"),
    "J_u": (r"J_u", "J of population u"),
    "I": (r"I", "the Marchenko-Pastur integral I(P) below"),
    "iS": (r"\iota\Sigma", "iota times the feature covariance of a population (polynomial in x)"),
    "aS": (r"\alpha\Sigma", "alpha_u times the feature covariance of population u"),
    "a_O1": (r"a_{O,1}", "a_O at the first ridge"), "a_O2": (r"a_{O,2}", "a_O at the second ridge"),
    "a_I1": (r"a_{I,1}", "a_I at the first ridge"), "a_I2": (r"a_{I,2}", "a_I at the second ridge"),
    "MP": (r"\mathrm{MP}_{\psi_p}", "the Marchenko-Pastur law of ratio psi_p"),
    "tau_12": (r"\tau_{12}", "tr(Q_1 Q_2)/p for anisotropic data"),
    "g_1": (r"g_1", "g at the first ridge"), "g_2": (r"g_2", "g at the second ridge"),
    "M_1": (r"M_1", "M(ell) at the first ridge"), "M_2": (r"M_2", "M(ell) at the second ridge"),
    "s_1": (r"s_1", "1/(1 + psi_p g_1 M_1(ell))"), "s_2": (r"s_2", "1/(1 + psi_p g_2 M_2(ell))"),
    "m_j": (r"m_j", "E_H[ell^j s_1 s_2], j = 0, 1, 2"),
    "w_k": (r"w_k", "the k-th column of W over sqrt(d)"),
    "Q_1": (r"Q_1", "(W M_1 W^T/d + a_I1)^{-1}"), "Q_2": (r"Q_2", "(W M_2 W^T/d + a_I2)^{-1}"),
    "C": (r"C", "a feature covariance mu1^2 W V W^T/d + kappa^2"),
    "V": (r"V", "the diagonal input variances of a population (linear in ell)"),
    "kappa": (r"\kappa", "nonlinear noise level of a population"),
    "test": (r"\mathrm{test\_error}", "test error at time tau"),
    "train": (r"\mathrm{train\_error}", "train error at time tau"),
})


def populations():
    pops = R.step3_linear_gaussian(R.step2_rotate_groups())
    mean = {k: sp.expand(v.subs(R.m, 1 / iota)) for k, v in pops["mean"].items()}
    return {"mean": mean, "orth": pops["orth"]}, pops["test"], {"mean": iota, "orth": 1 - iota}


def blocks(k0, k1, G, lam, P, alpha):
    """a_O, a_I, H_c, g, h of derivations/rf_dsm at ridge lam (gam = 0)."""
    kk = {"mean": k0, "orth": k1}

    def weighted(key):
        return sum(sp.expand(alpha[k] * P[k][key]) * kk[k] for k in P)

    aO = mu1**2 * weighted("v")
    aI = weighted("kappa2") + lam
    return dict(aO=aO, aI=aI, Hc=weighted("c"), g=G / aI, h=G / (aI + psi_p * aO * G))


def mp_integral(num, a1, b1, a2, b2, g1, g2):
    """int num(x) / ((a1 x + b1)(a2 x + b2)) dMP_{psi_p}(x) for a polynomial num of degree <= 2.

    Partial fractions (checked once on generic symbols, then substituted): with
    num = n0 + n1 x + n2 x^2, q0 = n2/(a1 a2) and r = num - q0 (a1 x + b1)(a2 x + b2) = r0 + r1 x,
    num/(A1 A2) = q0 + C1/A1 + C2/A2, C1 = (a1 r0 - b1 r1)/(a1 b2 - a2 b1),
    C2 = (a2 r0 - b2 r1)/(a2 b1 - a1 b2); int dMP = 1 and int dMP/A_i = g_i.
    """
    poly = sp.Poly(sp.expand(num), x)
    assert poly.degree() <= 2
    coeffs = {_N[j]: poly.coeff_monomial(x**j) for j in range(3)}
    subs = {**coeffs, _A1: a1, _B1: b1, _A2: a2, _B2: b2, _G1: g1, _G2: g2}
    return _GENERIC.xreplace(subs)


def _generic_partial_fractions():
    a1, b1, a2, b2 = _A1, _B1, _A2, _B2
    num = _N[0] + _N[1] * x + _N[2] * x**2
    q0 = _N[2] / (a1 * a2)
    rem = sp.Poly(sp.expand(num - q0 * (a1 * x + b1) * (a2 * x + b2)), x)
    r0, r1 = rem.coeff_monomial(1), rem.coeff_monomial(x)
    C1 = (a1 * r0 - b1 * r1) / (a1 * b2 - a2 * b1)
    C2 = (a2 * r0 - b2 * r1) / (a2 * b1 - a1 * b2)
    assert sp.simplify(q0 + C1 / (a1 * x + b1) + C2 / (a2 * x + b2) - num / ((a1 * x + b1) * (a2 * x + b2))) == 0
    return q0 + C1 * _G1 + C2 * _G2


_N = sp.symbols("n0 n1 n2")
_A1, _B1, _A2, _B2, _G1, _G2 = sp.symbols("a1 b1 a2 b2 g1 g2")
_GENERIC = _generic_partial_fractions()


def _solve_fixed_2(b, M):
    """Solution of J = b + M J (2 x 2), Cramer's rule checked on generic symbols."""
    bs, Ms = sp.symbols("b0 b1"), sp.Matrix(2, 2, sp.symbols("m00 m01 m10 m11"))
    det = (1 - Ms[0, 0]) * (1 - Ms[1, 1]) - Ms[0, 1] * Ms[1, 0]
    Jg = [(bs[0] * (1 - Ms[1, 1]) + Ms[0, 1] * bs[1]) / det, (bs[1] * (1 - Ms[0, 0]) + Ms[1, 0] * bs[0]) / det]
    for i in range(2):
        assert sp.simplify(Jg[i] - bs[i] - Ms[i, 0] * Jg[0] - Ms[i, 1] * Jg[1]) == 0
    subs = {bs[0]: b[0], bs[1]: b[1], Ms[0, 0]: M[0][0], Ms[0, 1]: M[0][1], Ms[1, 0]: M[1][0], Ms[1, 1]: M[1][1]}
    return [e.xreplace(subs) for e in Jg]


@DOC.step
def two_point():
    """The two-point term yhat^T R(lama) Sigma_t R(lamb) yhat, averaged over the output coordinates.

    The traces of the leave-one-out system J = b + M J (one unknown per row population, solved
    by Cramer's rule) are Marchenko-Pastur integrals of rational functions of x, reduced by
    partial fractions to g_1, g_2 and the moments of the law; the Schur complements of the
    augmented matrices turn them into the target quadratic form.
    """
    P, test, alpha = populations()
    A = blocks(k0a, k1a, Ga, lama, P, alpha)
    B = blocks(k0b, k1b, Gb, lamb, P, alpha)
    kA = {"mean": k0a, "orth": k1a}
    kB = {"mean": k0b, "orth": k1b}

    def integral(num):
        return mp_integral(num, A["aO"], A["aI"], B["aO"], B["aI"], A["g"], B["g"])

    sigma_t = mu1**2 * test["v"] * x + test["kappa2"]  # test feature covariance, eigenvalue x
    # iota Sigma_sigma (the row-count factor p/N = psi_p iota/psi_n) and alpha_tau Sigma_tau are
    # polynomials in iota, so m = infinity (iota = 0) stays regular.
    iS = {k: mu1**2 * sp.expand(iota * P[k]["v"]) * x + sp.expand(iota * P[k]["kappa2"]) for k in P}
    aS = {k: mu1**2 * sp.expand(alpha[k] * P[k]["v"]) * x + sp.expand(alpha[k] * P[k]["kappa2"]) for k in P}
    # J_sigma = iota tr(Sigma_sigma E[R_1 Sigma_t R_2])/p, theta_sigma = (psi_p/psi_n) J_sigma,
    # solve J = b + M J, a 2 x 2 linear system (Cramer's rule keeps the expression explicit).
    pops_ = list(P)
    b = [integral(iS[s] * sigma_t) for s in pops_]
    M = [[psi_p / psi_n * kA[u] * kB[u] * integral(iS[s] * aS[u]) for u in pops_] for s in pops_]
    J = dict(zip(pops_, _solve_fixed_2(b, M)))
    # Schur complements of the augmented deterministic matrices: the (y, y) entries, averaged
    # over coordinates k (c = mu1 H_c w_k, (1/d) sum_k w_k^T F(Omega) w_k = psi_p int x F dMP).
    direct = mu1**2 * A["Hc"] * B["Hc"] * psi_p * integral(x * sigma_t)
    spread = 0
    for u in P:
        bracket = (mu1**2 * A["Hc"] * B["Hc"] * psi_p * integral(x * aS[u])
                   - mu1**2 * psi_p * (A["Hc"] * A["h"] + B["Hc"] * B["h"]) * sp.expand(alpha[u] * P[u]["c"])
                   + sp.expand(alpha[u] * P[u]["q"]))
        spread += psi_p / psi_n * kA[u] * kB[u] * J[u] * bracket
    DOC.show("test feature covariance", sp.Eq(sp.Symbol("Sigma_t"), sigma_t))
    return direct + spread, (A, B, sigma_t)


m_sym = sp.symbols("m0 m1 m2")  # E_H[ell^j s_a s_b]
ell = R.ell


def aniso_blocks(k0, k1, G, lam, P, alpha):
    """M(ell), a_I, H_c, g, e = psi_p g, s(ell), h(ell) of derivations/rf_dsm step 11 (gam = 0)."""
    kk = {"mean": k0, "orth": k1}

    def weighted(key):
        return sum(sp.expand(alpha[k] * P[k][key]) * kk[k] for k in P)

    M = mu1**2 * weighted("v")
    aI = weighted("kappa2") + lam
    g = G / aI
    s = 1 / (1 + psi_p * g * M)
    return dict(M=M, aI=aI, Hc=weighted("c"), g=g, e=psi_p * g, s=s, h=g * s)


def moment(poly):
    """E_H[poly(ell) s_a s_b] for a polynomial of degree <= 2 in ell, as sum_j c_j m_j."""
    p = sp.Poly(sp.expand(poly), ell)
    assert p.degree() <= 2
    return sum(p.coeff_monomial(ell**j) * m_sym[j] for j in range(3))


@DOC.step
def two_point_aniso():
    """The two-point term for anisotropic data, along an eigenvalue ell, given the moments m_j.

    The same leave-one-out system with the traces over W done by removing columns of W
    (derivations/rf_dsm.py, step 10); every input variance is linear in ell, so the term is a
    closed function of ell and the three moments m_j = E_H[ell^j s_1 s_2].
    """
    _, pops = R.step9_anisotropic_rows()
    P = {"mean": {k: sp.expand(v.subs(R.m, 1 / iota)) for k, v in pops["mean"].items()}, "orth": pops["orth"]}
    test, alpha = pops["test"], {"mean": iota, "orth": 1 - iota}
    A = aniso_blocks(k0a, k1a, Ga, lama, P, alpha)
    B = aniso_blocks(k0b, k1b, Gb, lamb, P, alpha)
    kA = {"mean": k0a, "orth": k1a}
    kB = {"mean": k0b, "orth": k1b}
    for X in (A, B):
        assert sp.Poly(sp.expand(X["M"]), ell).degree() == 1  # M linear in ell
    tau_ = A["g"] * B["g"] / (1 - psi_p * A["g"] * B["g"] * moment(A["M"] * B["M"]))

    def T(V):  # tr(Q_a W V W^T Q_b)/(d p)
        return tau_ * moment(V)

    def node(V, kappa2):  # w_k^T Q_a C Q_b w_k/d along ell, C = mu1^2 W V W^T/d + kappa2
        return A["s"] * B["s"] * (mu1**2 * (V * A["e"] * B["e"] + psi_p * T(V)) + kappa2 * psi_p * tau_)

    def trace(Cs, Cu):  # tr(C_s Q_a C_u Q_b)/p, C = (V, kappa2)
        (Vs, ks), (Vu, ku) = Cs, Cu
        quartic = A["e"] * B["e"] / psi_p * moment(Vs * Vu) + tau_ * moment(Vu) * moment(Vs)
        return ks * ku * tau_ + ks * mu1**2 * T(Vu) + ku * mu1**2 * T(Vs) + mu1**4 * quartic

    Ct = (test["v"], test["kappa2"])
    iC = {k: (sp.expand(iota * P[k]["v"]), sp.expand(iota * P[k]["kappa2"])) for k in P}
    aC = {k: (sp.expand(alpha[k] * P[k]["v"]), sp.expand(alpha[k] * P[k]["kappa2"])) for k in P}
    pops_ = list(P)
    b = [trace(iC[s_], Ct) for s_ in pops_]
    Mx = [[psi_p / psi_n * kA[u] * kB[u] * trace(iC[s_], aC[u]) for u in pops_] for s_ in pops_]
    J = dict(zip(pops_, _solve_fixed_2(b, Mx)))
    HH = mu1**2 * A["Hc"] * B["Hc"]
    direct = HH * node(*Ct)
    spread = 0
    for u in P:
        bracket = (HH * node(*aC[u])
                   - mu1**2 * psi_p * (A["Hc"] * A["h"] + B["Hc"] * B["h"]) * sp.expand(alpha[u] * P[u]["c"])
                   + sp.expand(alpha[u] * P[u]["q"]))
        spread += psi_p / psi_n * kA[u] * kB[u] * J[u] * bracket
    moments = (A["s"] * B["s"], ell * A["s"] * B["s"], ell**2 * A["s"] * B["s"])
    cross = mu1**2 * sp.sqrt(D) * A["Hc"] * psi_p * A["h"]  # c_t^T R(lama) yhat along ell
    return direct + spread, moments, cross, A


def build() -> Module:
    DOC.reset()
    T2, (A, B, sigma_t) = two_point()
    args2 = (k0a, k1a, Ga, lama, k0b, k1b, Gb, lamb, psi_n, psi_p, iota, t, mu1, mus2, mue2)
    P, test, alpha = populations()
    one = blocks(k0a, k1a, Ga, lama, P, alpha)
    c_ty = mu1**2 * sp.sqrt(D) * one["Hc"] * psi_p * one["h"]  # c_t^T R yhat (test cross term)
    args1 = (k0a, k1a, Ga, lama, psi_n, psi_p, iota, t, mu1, mus2, mue2)
    functions = [
        Function("two_point", args2, (T2,),
                 "yhat^T R(lama) Sigma_t R(lamb) yhat (per coordinate), lama != lamb."),
        Function("test_cross", args1, (c_ty,), "c_t^T R(lama) yhat (per coordinate)."),
    ]
    T2n, moments, cross_n, _ = two_point_aniso()
    functions += [
        Function("node_moments", (ell,) + args2, moments,
                 "Anisotropic: integrands s_a s_b, ell s_a s_b, ell^2 s_a s_b of the moments m_0, m_1, m_2."),
        Function("node_two_point", (ell,) + m_sym + args2, (T2n,),
                 "Anisotropic: yhat^T R(lama) Sigma_t R(lamb) yhat of the coordinates along ell (any lama, lamb)."),
        Function("node_test_cross", (ell,) + args1, (cross_n,),
                 "Anisotropic: c_t^T R(lama) yhat of the coordinates along ell."),
    ]
    eqs = [
        ("gradient flow", Tex(r"b(\tau) = \mathcal{L}^{-1}\left[\frac{R(\lambda + \xi)\,\hat{y}}{\xi}\right](\tau)",
                              "b(tau) = L^{-1}[R(lam + xi) yhat / xi](tau)", ("b", "tau", "R", "lam", "xi", "yhat"))),
        ("test_error(tau)", Tex(r"\mathrm{test\_error} = 1 - 2 c_t^T b + b^T \Sigma_t b",
                                "test = 1 - 2 c_t^T b + b^T Sigma_t b", ("test", "c_t", "b", "Sigma_t"))),
        ("train_error(tau)", Tex(r"\mathrm{train\_error} = 1 - 2 \hat{y}^T b + b^T U b",
                                 "train = 1 - 2 yhat^T b + b^T U b", ("train", "yhat", "b", "U"))),
        ("two-point system", Tex(
            r"J_{\mathrm{mean}} = I(\iota\Sigma_{\mathrm{mean}} \Sigma_t) + \sum_u \frac{\psi_p}{\psi_n} k_{u,1} k_{u,2} "
            r"J_u\, I(\iota\Sigma_{\mathrm{mean}}\, \alpha\Sigma_u)",
            "J_mean = I(iS_mean Sigma_t) + sum_u (psi_p/psi_n) k_u1 k_u2 J_u I(iS_mean aS_u)",
            ("J_mean", "I", "iS", "Sigma_t", "psi_p", "psi_n", "k_u1", "k_u2", "J_u", "aS"))),
        ("", Tex(r"J_{\mathrm{orth}} = I(\iota\Sigma_{\mathrm{orth}} \Sigma_t) + \sum_u \frac{\psi_p}{\psi_n} k_{u,1} k_{u,2} "
                 r"J_u\, I(\iota\Sigma_{\mathrm{orth}}\, \alpha\Sigma_u)",
                 "J_orth = I(iS_orth Sigma_t) + sum_u (psi_p/psi_n) k_u1 k_u2 J_u I(iS_orth aS_u)",
                 ("J_orth", "I", "iS", "Sigma_t", "psi_p", "psi_n", "k_u1", "k_u2", "J_u", "aS"))),
        ("I(P)", Tex(r"I(P) = \int \frac{P(x)}{(a_{O,1} x + a_{I,1})(a_{O,2} x + a_{I,2})}\, d\mathrm{MP}_{\psi_p}(x)",
                     "I(P) = int P(x)/((a_O1 x + a_I1)(a_O2 x + a_I2)) dMP_{psi_p}(x)",
                     ("I", "x", "a_O1", "a_O2", "a_I1", "a_I2", "MP"))),
        ("Sigma_t(x)", sp.Eq(sp.Symbol("Sigma_t"), sigma_t)),
        ("anisotropic data", Tex(r"\tau_{12} = \frac{g_1 g_2}{1 - \psi_p g_1 g_2\, \mathbb{E}_H[M_1 M_2 s_1 s_2]}",
                                 "tau_12 = g_1 g_2/(1 - psi_p g_1 g_2 E_H[M_1 M_2 s_1 s_2])",
                                 ("tau_12", "g_1", "g_2", "psi_p", "E_H", "M_1", "M_2", "s_1", "s_2"))),
        ("", Tex(r"m_j = \mathbb{E}_H[\ell^j s_1(\ell) s_2(\ell)],\quad s_i = \frac{1}{1 + \psi_p g_i M_i(\ell)},\quad j = 0, 1, 2",
                 "m_j = E_H[ell^j s_1(ell) s_2(ell)], s_i = 1/(1 + psi_p g_i M_i(ell)), j = 0, 1, 2",
                 ("m_j", "E_H", "ell", "s_1", "s_2", "psi_p", "g_1", "g_2", "M_1", "M_2"))),
        ("", Tex(r"\frac{w_k^T Q_1 C Q_2 w_k}{d} = s_1 s_2 \left(\mu_1^2 V(\ell_k) \psi_p^2 g_1 g_2 + \mu_1^2 \psi_p \tau_{12}"
                 r"\, \mathbb{E}_H[V s_1 s_2] + \kappa^2 \psi_p \tau_{12}\right)",
                 "w_k^T Q_1 C Q_2 w_k/d = s_1 s_2 (mu1^2 V(ell_k) psi_p^2 g_1 g_2 + mu1^2 psi_p tau_12 E_H[V s_1 s_2] "
                 "+ kappa^2 psi_p tau_12)",
                 ("w_k", "Q_1", "Q_2", "C", "s_1", "s_2", "mu1", "V", "ell", "psi_p", "g_1", "g_2", "tau_12", "E_H", "kappa"))),
    ]
    DOC.system("gradient flow: Talbot inverse Laplace transform and the two-point deterministic equivalent", eqs)
    return Module("rf_dsm_flow", functions, DOC)
