"""RF-DSM: asymptotic train/test errors of denoising score matching with random features.

Conventions are those of SPEC section 1.  The derivation runs in seven steps; each one is
a sympy computation (with ``assert`` on the identities it relies on) so it can be re-run
and checked:

1. Gaussian equivalence with the shared/private split of the nonlinear part.
2. Rotating the m noisy copies of each data point onto their mean and m - 1 orthogonal
   directions: two independent row populations, no more correlations within a group.
3. Conditionally on W each population is a linear-Gaussian regression (features,
   target coordinate) with its own covariance, cross-covariance and target variance.
4. The ridge loss as a Schur complement of the augmented Gram matrix, with a test term
   gamma * E_test added so that the test error is a derivative in gamma.
5. The deterministic equivalent of the multi-population augmented Gram resolvent
   (leave-one-out / Sherman-Morrison) gives scalar fixed points delta_tau.
6. Every matrix is a function of Omega = W W^T / d, so the traces become integrals over the
   Marchenko-Pastur law of ratio psi_p, closed by one quadratic for g = int dmu/(a x + b).
7. iota = 1/m makes finite m and m = infinity one system (iota = 0); train and test
   errors are derivatives of the averaged loss in lam and gamma, taken through the
   implicit function theorem by the solver with the Jacobians generated here.
8. The same fixed point at a complex ridge lam = -z (gam = 0) is the deterministic
   equivalent of the resolvent (U - z)^{-1} of U = Phi^T Phi/(n m): its normalised trace is
   g = G / a_I, the Stieltjes transform of the spectral law of U (SPEC 1.4).
"""
from __future__ import annotations

import sympy as sp

from derivations._codegen import Function, Module, eq_block

# Parameters and order parameters (names as in SPEC / the Python API).
psi_n, psi_p, t, lam, gam = sp.symbols("psi_n psi_p t lam gam", nonnegative=True)
iota = sp.Symbol("iota", nonnegative=True)  # 1/m
m = sp.Symbol("m", positive=True)
mu1, mus2, mue2 = sp.symbols("mu1 mu_s2 mu_e2", real=True)  # mu1, mu_s^2, mu_e^2
g = sp.Symbol("g")  # int dmu(x)/(a_O x + a_I) over MP(psi_p)
k0, k1, G = sp.symbols("k0 k1 G")  # unknowns: 1/(1 + delta_tau) and a_I g
rho = sp.exp(-2 * t)  # squared signal coefficient e^{-2t}
D = 1 - rho  # noise variance D_t


def step1_gaussian_equivalence():
    """Covariances of the Gaussian-equivalent features of two copies of one data point.

    With h = W y / sqrt(d), two copies y_j, y_k of the same x have preactivations of
    unit variance and correlation rho = e^{-2t} (j != k).  Hermite expansion
    sigma = sum_k c_k He_k/sqrt(k!) gives E sigma(u) sigma(v) = sum_k rho^k c_k^2, so the
    part beyond mu0 and the linear term mu1 h splits into mu_s^2 = sum_{k>=2} rho^k c_k^2
    shared within a group and mu_e^2 = mustar^2 - mu_s^2 private to each copy.
    """
    K = sp.Function("K")  # kernel E sigma(u) sigma(v) at correlation rho
    mu0, mustar2 = sp.symbols("mu0 mustar2")
    shared = K(rho) - mu0**2 - rho * mu1**2  # = mu_s^2 by definition
    private = (mu0**2 + mu1**2 + mustar2) - mu0**2 - mu1**2 - shared  # E sigma^2 - ... - shared
    # Gaussian-equivalent copy: mu0 + mu1 h_j + mu_s xi + mu_e eta_j reproduces both moments.
    ge_same = mu0**2 + mu1**2 + mus2 + mue2
    ge_cross = mu0**2 + rho * mu1**2 + mus2
    subs = {mus2: shared, mue2: private}
    assert sp.simplify(ge_same.subs(subs) - (mu0**2 + mu1**2 + mustar2)) == 0
    assert sp.simplify(ge_cross.subs(subs) - K(rho)) == 0
    return [("shared", sp.Eq(mus2, shared)), ("private", sp.Eq(mue2, private))]


def step2_rotate_groups():
    """Second moments of a rotated row sum_j a_j (y_j, z_j, features_j).

    The rotation matrix has rows with sum_j a_j = sqrt(m), sum a_j^2 = 1 (mean row) or
    sum_j a_j = 0, sum a_j^2 = 1 (m - 1 orthogonal rows).  Only S1 = sum a_j and
    S2 = sum a_j^2 enter the second moments, so they follow from two symbols.
    """
    S1, S2 = sp.symbols("S1 S2")
    # y_j = e^{-t} x + sqrt(D) z_j (per coordinate); nonlinear part mu_s xi + mu_e eta_j.
    var_y = rho * S1**2 + D * S2  # Var(sum a_j y_j)
    cov_zy = sp.sqrt(D) * S2  # Cov(sum a_j z_j, sum a_j y_j)
    var_z = S2
    noise = mus2 * S1**2 + mue2 * S2  # variance of the nonlinear part of the rotated features
    mean_row = {S1: sp.sqrt(m), S2: 1}
    orth_row = {S1: 0, S2: 1}
    pops = {}
    for name, sub in (("mean", mean_row), ("orth", orth_row)):
        pops[name] = dict(v=sp.simplify(var_y.subs(sub)), c=cov_zy.subs(sub),
                          q=var_z.subs(sub), kappa2=sp.expand(noise.subs(sub)))
    # Rows of different populations (and different groups) are uncorrelated, hence
    # independent in the Gaussian model: two independent populations of sizes n, n(m-1).
    assert sp.simplify(pops["orth"]["v"] - D) == 0 and pops["orth"]["kappa2"] == mue2
    return pops


def step3_linear_gaussian(pops):
    """Per population, given W: feature covariance a_O Omega + a_I I, cross-covariance.

    Features phi = mu1 W u / sqrt(d) + kappa zeta with Var u = v, target z_k with
    Cov(z_k, u) = c e_k.  So Sigma = mu1^2 v Omega + kappa^2 I, E[phi z_k] = mu1 c w_k
    (w_k = W e_k / sqrt(d)), E z_k^2 = q.  Test row: a fresh (x, z), i.e. m = 1.
    """
    test = dict(v=sp.Integer(1), c=sp.sqrt(D), q=sp.Integer(1), kappa2=mus2 + mue2)
    return {**pops, "test": test}


def step4_schur_complement():
    """Ridge loss minimum = 1 / [(S_aug + lam P + gam T_aug)^{-1}]_{last,last}.

    For K = [[A, c], [c^T, q]] positive definite, min_b (-b, 1) K (-b, 1)^T = q - c^T A^{-1} c
    = 1 / (K^{-1})_{last}.  Checked here on a generic 2 + 1 block.
    """
    a11, a12, a22, c1, c2, qq = sp.symbols("a11 a12 a22 c1 c2 q")
    A = sp.Matrix([[a11, a12], [a12, a22]])
    c = sp.Matrix([c1, c2])
    K = A.row_join(c).col_join(c.T.row_join(sp.Matrix([[qq]])))
    schur = qq - (c.T * A.inv() * c)[0]
    assert sp.simplify(1 / K.inv()[2, 2] - schur) == 0
    b = sp.Matrix(sp.symbols("b1 b2"))
    u = (-b).col_join(sp.Matrix([1]))
    quad = sp.expand((u.T * K * u)[0])
    bstar = sp.solve([sp.diff(quad, bi) for bi in b], list(b), dict=True)[0]
    assert sp.simplify(quad.subs(bstar) - schur) == 0
    return schur


def step5_sherman_morrison():
    """Leave-one-out identity behind the deterministic equivalent.

    For Q = (S + M)^{-1}, S = (1/N) sum_r x_r x_r^T: x_r^T Q = x_r^T Q_{-r}/(1 + x_r^T Q_{-r} x_r/N);
    x_r^T Q_{-r} x_r / N concentrates on delta_tau = tr(Sigma_tau Qbar)/N, giving
    Qbar = (sum_tau alpha_tau Sigma_tau / (1 + delta_tau) + M)^{-1}.  Checked on a 2x2 case.
    """
    x = sp.Matrix(sp.symbols("x1 x2"))
    Qm = sp.Matrix(2, 2, sp.symbols("p11 p12 p21 p22"))
    N = sp.Symbol("N", positive=True)
    Q = (Qm.inv() + x * x.T / N).inv()
    lhs = x.T * Q
    rhs = x.T * Qm / (1 + (x.T * Qm * x)[0] / N)
    assert sp.simplify(lhs - rhs) == sp.zeros(1, 2)


def step6_omega_traces(pops):
    """Deterministic equivalents as functions of Omega and MP integrals.

    With alpha_mean = iota, alpha_orth = 1 - iota, p/N = psi_p iota / psi_n and
    A = a_O Omega + a_I: g = int dmu/(a_O x + a_I), h = int x dmu/(a_O x + a_I) over the MP
    law of ratio psi_p.  The deterministic equivalent of Omega = (1/d) sum_j w_j w_j^T
    (columns w_j in R^p) gives g = 1/(a_O/(1 + psi_p a_O g) + a_I) and h = g/(1 + psi_p a_O g).
    """
    aO_, aI_ = sp.symbols("a_O a_I", positive=True)
    # The quadratic for g; cross-check against the MP Stieltjes equation of derivations/mp:
    # s(z) = a_O g at z = -a_I/a_O solves psi_p z s^2 + (z - 1 + psi_p) s + 1 = 0.
    g_eq = psi_p * aO_ * aI_ * g**2 + (aO_ * (1 - psi_p) + aI_) * g - 1
    fixed = sp.numer(sp.together(g - 1 / (aO_ / (1 + psi_p * aO_ * g) + aI_)))
    assert sp.expand(fixed - g_eq) == 0 or sp.expand(fixed + g_eq) == 0
    z = -aI_ / aO_
    s = aO_ * g
    mp_eq = psi_p * z * s**2 + (z - 1 + psi_p) * s + 1
    assert sp.simplify(mp_eq + g_eq) == 0
    h = hh_formula(g, aO_)
    # a_O h + a_I g = 1 holds on solutions of the quadratic (tr of A A^{-1} / p = 1).
    assert sp.simplify(sp.rem(sp.numer(sp.together(aO_ * h + aI_ * g - 1)), g_eq, g)) == 0

    # Population weights and per-row moments (step 2, with m -> 1/iota).
    mean = {k: sp.expand(v.subs(m, 1 / iota)) for k, v in pops["mean"].items()}
    orth, test = pops["orth"], pops["test"]
    alpha = {"mean": iota, "orth": 1 - iota}
    P = {"mean": mean, "orth": orth}
    # Numerically the leave-one-out factors enter as k_tau = 1/(1 + delta_tau) in (0, 1],
    # and g as G = a_I g in (0, 1] (g <= 1/a_I): both stay O(1) in the ridgeless limit
    # of the over-parameterised regime, where delta ~ 1/lam and g ~ 1/lam.
    kk = {"mean": k0, "orth": k1}

    def weighted(key):
        # alpha_tau * (moment of tau) is a polynomial in iota: expand it before multiplying.
        return sum(sp.expand(alpha[k] * P[k][key]) * kk[k] for k in P) + gam * test[key]

    aO = mu1**2 * weighted("v")
    aI = weighted("kappa2") + lam
    Hc = weighted("c")  # cross-covariance coefficient of z_k with mu1 w_k
    qbar = weighted("q")
    F, Lbar = closed_system(aO, aI, Hc, qbar, P)
    assert sp.simplify(F[2] * (aO + aI) / aI - g_eq.subs({aO_: aO, aI_: aI, g: G / aI}, simultaneous=True)) == 0
    shown = sp.symbols("a_O a_I H_c q")  # the same system with the scalar blocks kept as symbols
    F_shown, L_shown = closed_system(*shown, P)
    return F, Lbar, dict(zip(shown, (aO, aI, Hc, qbar))), F_shown, L_shown


def closed_system(aO, aI, Hc, qbar, P):
    """Equations in (k0, k1, G) and the averaged loss, given the scalar blocks."""
    g_of_G = G / aI
    h_of_G = G / (aI + psi_p * aO * G)  # = g / (1 + psi_p a_O g)
    assert sp.simplify(h_of_G - hh_formula(g_of_G, aO)) == 0
    # delta_tau = tr(Sigma_tau Qbar)/N, p/N = psi_p iota/psi_n; (iota * moment) is again
    # polynomial in iota, so iota = 0 stays regular.  Written as k (1 + delta) = 1.
    delta = {k: psi_p / psi_n * (sp.expand(iota * mu1**2 * P[k]["v"]) * h_of_G
                                 + sp.expand(iota * P[k]["kappa2"]) * g_of_G) for k in P}
    F = [
        1 - k0 - k0 * delta["mean"],
        1 - k1 - k1 * delta["orth"],
        # MP quadratic for g with g = G/a_I, divided by a_O + a_I: O(1) residuals whatever
        # the ratio a_O/a_I (which diverges in the ridgeless limit of linear features).
        (psi_p * aO * G**2 + (aO * (1 - psi_p) + aI) * G - aI) / (aO + aI),
    ]
    # Averaged loss: q - (1/d) sum_k c_k^T A^{-1} c_k = q - psi_p mu1^2 Hc^2 h.
    Lbar = qbar - psi_p * mu1**2 * Hc**2 * h_of_G
    return F, Lbar


def hh_formula(g_, aO_):
    return g_ / (1 + psi_p * aO_ * g_)


def build() -> Module:
    ge = step1_gaussian_equivalence()
    pops = step3_linear_gaussian(step2_rotate_groups())
    step4_schur_complement()
    step5_sherman_morrison()
    F, Lbar, blocks, F_shown, L_shown = step6_omega_traces(pops)
    for e in F + [Lbar]:  # step 7: m = infinity is iota = 0, a regular point of the system
        assert sp.denom(sp.together(e)).subs(iota, 0) != 0
    u = [k0, k1, G]
    args = (k0, k1, G, psi_n, psi_p, iota, t, lam, gam, mu1, mus2, mue2)
    J = [sp.diff(f, v) for f in F for v in u]
    Fg = [sp.diff(f, gam) for f in F]
    Fl = [sp.diff(f, lam) for f in F]
    Lu = [sp.diff(Lbar, v) for v in u]
    functions = [
        Function("newton_step_terms", args, tuple(F) + tuple(J),
                 "Residuals F (3) and Jacobian dF/d(k0, k1, G) row-major (9)."),
        Function("loss_terms", args,
                 (Lbar,) + tuple(Lu) + (sp.diff(Lbar, gam), sp.diff(Lbar, lam)) + tuple(Fg) + tuple(Fl),
                 "Lbar, dLbar/du (3), dLbar/dgam, dLbar/dlam, dF/dgam (3), dF/dlam (3)."),
        Function("feature_stieltjes", args, (G / blocks[sp.Symbol("a_I")],),
                 "Step 8: tr((U - z)^{-1})/p = G/a_I at lam = -z, gam = 0."),
    ]
    eqs = ge + [(str(sym), sp.Eq(sym, expr)) for sym, expr in blocks.items()] + [
        ("k0 = 1/(1+delta0)", sp.Eq(F_shown[0], 0)),
        ("k1 = 1/(1+delta1)", sp.Eq(F_shown[1], 0)),
        ("G = a_I g (MP law of W W^T/d, ratio psi_p)", sp.Eq(F_shown[2], 0)),
        ("loss L(lam, gam)", sp.Eq(sp.Symbol("L"), L_shown)),
        ("test_error", sp.Eq(sp.Symbol("test_error"), sp.Derivative(sp.Symbol("L"), gam))),
        ("train_error", sp.Eq(sp.Symbol("train_error"),
                              sp.Symbol("L") - lam * sp.Derivative(sp.Symbol("L"), lam))),
        ("score_error", sp.Eq(sp.Symbol("score_error"), sp.Symbol("test_error") - rho)),
    ]
    latex, text = eq_block(
        "RF-DSM deterministic equivalent (iota = 1/m; m = infinity is iota = 0); "
        "total derivatives through the fixed point (implicit function theorem)", eqs)
    return Module("rf_dsm", functions, latex, text)
