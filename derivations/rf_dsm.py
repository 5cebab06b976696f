"""RF-DSM: asymptotic train/test errors of denoising score matching with random features.

Conventions: docs/conventions.md, section 1.  The derivation runs in the steps below; each one is
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
   g = G / a_I, the Stieltjes transform of the spectral law of U (conventions 1.4).

Anisotropic data x ~ N(0, Sigma) (conventions 1.5) re-derive steps 2, 3 and 6 without Omega:

9. The rotated rows along an eigen-direction of Sigma with eigenvalue ell: input variances
   v_tau(ell) linear in ell; Gaussian equivalence at preactivation variance v_t = rho s2 + D.
10. Leave-one-out over the columns w_i of W (Silverstein structure) for
    Q = (W M W^T/d + a_I)^{-1}, M = diag(M(ell_i)): tr Q/p = g with
    1 = a_I g + g E_H[M/(1 + psi_p g M)], and w_i^T Q w_i/d = psi_p h(ell_i),
    h = g/(1 + psi_p g M) -- expectations over the population law H of Sigma.
11. Every residual and the loss are affine in such expectations, so the system is in node
    form: F = E_H[f(ell)], L = E_H[l(ell)], and the coordinate-wise loss l(ell) gives the test
    error by eigenvalue.  At H = delta_1 it is asserted to have the same solutions and the same
    loss as the isotropic system of steps 1-7 (two independent routes: the MP law of Omega
    there, the column leave-one-out here).
12. The floor of the test error: the best linear predictor E[z|y] = sqrt(D) Sigma_t^{-1} y
    gives e^{-2t} ell/(e^{-2t} ell + D) per coordinate, and test - floor = D E||s_A - s*||^2/d.
13. The kernel limit psi_p -> inf at fixed lam, as limits of step 11 (sympy computes them):
    for finite m, k_tau = lam eps K_tau, gam = lam eps Gamma, G = 1 - O(eps), eps = 1/psi_p
    give L = lam eps Ltilde(K, Gamma) + O(eps^2), a fixed point for y_tau = 1/K_tau, and
    test_error = dLtilde/dGamma, train_error = 0 (kernel interpolation: the ridge's effect
    vanishes like N lam/p); for m = inf (iota = 0), k_1 = 1 exactly, k_0 = eps K_0 with
    K_0 = psi_n (mu_e^2 + lam)/mu_s^2, and test_error = e^{-2t} E_H[ell]/D, train_error = 0.
14. The empirical-score error D E||s_A(y) - s_emp(y)||^2/d at a fresh y, s_emp the exact score of
    the diffused training set: its softmax weights have log-spreads of order sqrt(d), so as
    d -> inf one training point x* carries the weight, asymptotically independent of y (their
    overlap is O(sqrt(log n / d)) per dimension), and the error tends to
    test_error + 2 e^{-2t} s2/D + 2 e^{-t} E[B phi(y) . x]/(sqrt(D) d), whose cross term is
    -mu1^2 e^{-t} psi_p E_H[ell H_c h(ell)] (the deterministic equivalent of b_k = -A^{-1} c_k
    against Cov(phi, x_k) = mu1 e^{-t} ell_k w_k/sqrt(d)).
"""
from __future__ import annotations

import sympy as sp
from sympy.codegen.cfunctions import expm1

from derivations._codegen import Document, Function, Module

# Parameters and order parameters (names as in the conventions / the Python API).
psi_n, psi_p, t, lam, gam = sp.symbols("psi_n psi_p t lam gam", nonnegative=True)
iota = sp.Symbol("iota", nonnegative=True)  # 1/m
m = sp.Symbol("m", positive=True)
mu1, mus2, mue2 = sp.symbols("mu1 mu_s2 mu_e2", real=True)  # mu1, mu_s^2, mu_e^2
g = sp.Symbol("g")  # int dmu(x)/(a_O x + a_I) over MP(psi_p)
ell = sp.Symbol("ell", nonnegative=True)  # an eigenvalue of Sigma (anisotropic data)
s2 = sp.Symbol("s2", positive=True)  # tr Sigma / d
k0, k1, G = sp.symbols("k0 k1 G")  # unknowns: 1/(1 + delta_tau) and a_I g
rho = sp.exp(-2 * t)  # squared signal coefficient e^{-2t}
D = 1 - rho  # noise variance D_t

DOC = Document("RF-DSM: asymptotic errors of denoising score matching with random features", __doc__, {
    "psi_n": (r"\psi_n", "n/d, training points per dimension"),
    "psi_p": (r"\psi_p", "p/d, random features per dimension"),
    "m": (r"m", "noise draws per training point"),
    "iota": (r"\iota", "1/m (m = infinity is iota = 0)"),
    "t": (r"t", "diffusion time; the noisy input is y = e^{-t} x + sqrt(D) z, D = 1 - e^{-2t}"),
    "lam": (r"\lambda", "ridge"),
    "gam": (r"\gamma", "weight of a fresh test row added to the loss (test_error = dL/dgam at gam = 0)"),
    "mu0": (r"\mu_0", "E sigma(h), h the preactivation"),
    "mu1": (r"\mu_1", "E sigma'(h): the linear Gaussian-equivalence coefficient"),
    "mustar2": (r"{\mu_*^2}", "E sigma(h)^2 - mu0^2 - var(h) mu1^2: the nonlinear variance"),
    "mu_s2": (r"{\mu_s^2}", "the nonlinear variance shared by the m noisy copies of one data point"),
    "mu_e2": (r"{\mu_e^2}", "the nonlinear variance private to each copy, mustar^2 - mu_s^2"),
    "K": (r"K", "kernel E sigma(h_j) sigma(h_k) of two preactivations as a function of their covariance"),
    "S1": (r"S_1", "sum_j a_j of a row of the rotation of a group of m copies"),
    "S2": (r"S_2", "sum_j a_j^2 of that row"),
    "g": (r"g", "int dmu(x)/(a_O x + a_I) over the Marchenko-Pastur law of W W^T/d (ratio psi_p)"),
    "a_O": (r"a_O", "coefficient of Omega = W W^T/d in the averaged feature covariance"),
    "a_I": (r"a_I", "coefficient of the identity in the averaged feature covariance (includes lam)"),
    "H_c": (r"H_c", "cross-covariance coefficient of the target coordinate with mu1 w_k"),
    "q": (r"q", "averaged target variance"),
    "k0": (r"k_0", "1/(1 + delta_mean), leave-one-out factor of the mean-row population"),
    "k1": (r"k_1", "1/(1 + delta_orth), leave-one-out factor of the orthogonal-row population"),
    "G": (r"G", "a_I g, the normalised Stieltjes unknown"),
    "L": (r"L", "the averaged minimal ridge loss per output coordinate"),
    "test_error": (r"\mathrm{test\_error}", "test error (conventions 1.2)"),
    "train_error": (r"\mathrm{train\_error}", "train error (conventions 1.2)"),
    "score_error": (r"\mathrm{score\_error}", "test_error - test_error_floor: D E||s_A - s*||^2/d"),
    "test_error_floor": (r"\mathrm{test\_error\_floor}", "smallest possible test error"),
    "empirical_score_error": (r"\mathrm{empirical\_score\_error}",
                              "D E||s_A - s_emp||^2/d, s_emp the score of the diffused training set"),
    "ell": (r"\ell", "an eigenvalue of the data covariance Sigma"),
    "s2": (r"s_2", "tr Sigma/d, the mean eigenvalue"),
    "E_H": (r"\mathbb{E}_H", "expectation over the population law H of Sigma's eigenvalues ell"),
    "v_t": (r"v_t", "preactivation variance e^{-2t} s2 + D"),
    "M(ell)": (r"M(\ell)", "coefficient of w_i w_i^T/d along eigenvalue ell in the feature covariance"),
    "h(ell)": (r"h(\ell)", "w_i^T Q w_i/(d psi_p) along eigenvalue ell"),
    "K_tau": (r"K_\tau", "k_tau/(lam eps): the rescaled leave-one-out factor at psi_p = inf"),
    "K0": (r"K_0", "K_tau of the mean-row population"),
    "K1": (r"K_1", "K_tau of the orthogonal-row population"),
    "c_tau": (r"c_\tau", "the per-eigenvalue term of 1/K_tau in the kernel limit"),
    "v_tau": (r"v_\tau", "input variance of population tau along ell"),
    "kappa_tau": (r"\kappa_\tau", "nonlinear noise level of population tau (kappa_tau^2 its variance)"),
    "Mt": (r"\tilde{M}", "M(ell) of the kernel limit, with k -> K, gam -> Gamma"),
    "Ltilde": (r"\tilde{L}", "L/(lam eps) in the kernel limit"),
    "Gamma": (r"\Gamma", "gam/(lam eps) in the kernel limit"),
    "epsilon": (r"\epsilon", "1/psi_p"),
    "E_beta2": (r"\mathbb{E}\beta^2", "second moment of the learned output coordinate beta = b_k . phi(y)"),
    "E_beta_z": (r"\mathbb{E}\beta z_k", "covariance of beta with the target noise coordinate"),
    "E_beta_x": (r"\mathbb{E}\beta x_k", "covariance of beta with the data coordinate"),
    "l(ell)": (r"l(\ell)", "the minimal loss of the output coordinate along eigenvalue ell (L = E_H[l])"),
    "h": (r"h", "int x dmu(x)/(a_O x + a_I) over the same law"),
    "E_beta_y": (r"\mathbb{E}\beta y_k", "covariance of beta with the noisy input coordinate"),
})


@DOC.step
def step1_gaussian_equivalence(var=sp.Integer(1), cov=rho):
    """Covariances of the Gaussian-equivalent features of two copies of one data point.

    With h = W y / sqrt(d), two copies y_j, y_k of the same x have preactivations of
    variance ``var`` and covariance ``cov`` (j != k): 1 and rho = e^{-2t} for isotropic data,
    v_t = rho s2 + D and rho s2 for x ~ N(0, Sigma) (step 9).  With mu1 = E h sigma(h)/var
    (= E sigma'(h)) the part of sigma(h) beyond mu0 + mu1 h is uncorrelated with h; it splits
    into mu_s^2 = K(cov) - mu0^2 - cov mu1^2, shared within a group (for unit variance
    sum_{k>=2} rho^k c_k^2 in Hermite coefficients c_k), and mu_e^2 = mustar^2 - mu_s^2,
    private to each copy, where mustar^2 = E sigma(h)^2 - mu0^2 - var mu1^2.
    """
    K = sp.Function("K")  # kernel E sigma(h_j) sigma(h_k) at covariance cov
    mu0, mustar2 = sp.symbols("mu0 mustar2")
    shared = K(cov) - mu0**2 - cov * mu1**2  # = mu_s^2 by definition
    private = (mu0**2 + var * mu1**2 + mustar2) - mu0**2 - var * mu1**2 - shared  # E sigma^2 - ...
    # Gaussian-equivalent copy: mu0 + mu1 h_j + mu_s xi + mu_e eta_j reproduces both moments.
    ge_same = mu0**2 + var * mu1**2 + mus2 + mue2
    ge_cross = mu0**2 + cov * mu1**2 + mus2
    subs = {mus2: shared, mue2: private}
    assert sp.simplify(ge_same.subs(subs) - (mu0**2 + var * mu1**2 + mustar2)) == 0
    assert sp.simplify(ge_cross.subs(subs) - K(cov)) == 0
    out = [("shared", sp.Eq(mus2, shared)), ("private", sp.Eq(mue2, private))]
    for label, e in out:
        DOC.show(label, e)
    return out


@DOC.step
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
    DOC.show_tex("rotated row", r"\operatorname{Var}\Big(\sum_j a_j y_j\Big) = " + sp.latex(var_y),
                 "Var(sum_j a_j y_j) = " + sp.sstr(var_y), ("S1", "S2", "t"))
    for name in pops:
        DOC.show_tex(f"{name} row", r"v = {}, \quad \kappa^2 = {}".format(
            sp.latex(pops[name]["v"]), sp.latex(pops[name]["kappa2"], symbol_names={mus2: r"{\mu_s^2}", mue2: r"{\mu_e^2}"})),
            f"v = {sp.sstr(pops[name]['v'])}, kappa^2 = {sp.sstr(pops[name]['kappa2'])}", ("m", "t", "mu_s2", "mu_e2"))
    return pops


@DOC.step
def step3_linear_gaussian(pops):
    """Per population, given W: feature covariance a_O Omega + a_I I, cross-covariance.

    Features phi = mu1 W u / sqrt(d) + kappa zeta with Var u = v, target z_k with
    Cov(z_k, u) = c e_k.  So Sigma = mu1^2 v Omega + kappa^2 I, E[phi z_k] = mu1 c w_k
    (w_k = W e_k / sqrt(d)), E z_k^2 = q.  Test row: a fresh (x, z), i.e. m = 1.
    """
    test = dict(v=sp.Integer(1), c=sp.sqrt(D), q=sp.Integer(1), kappa2=mus2 + mue2)
    return {**pops, "test": test}


@DOC.step
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
    DOC.show_tex("Schur complement", r"\min_b\,(-b, 1) K (-b, 1)^T = q - c^T A^{-1} c = 1 / (K^{-1})_{\mathrm{last},\mathrm{last}}",
                 "min_b (-b, 1) K (-b, 1)^T = q - c^T A^{-1} c = 1/(K^{-1})_{last,last}", ("q",))
    return schur


@DOC.step
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
    DOC.show_tex("leave one out", r"x_r^T Q = \frac{x_r^T Q_{-r}}{1 + x_r^T Q_{-r} x_r/N}",
                 "x_r^T Q = x_r^T Q_{-r}/(1 + x_r^T Q_{-r} x_r/N)", ())


@DOC.step
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
    assert sp.simplify(F[2] * (aI + psi_p * aO * G) / aI - g_eq.subs({aO_: aO, aI_: aI, g: G / aI},
                                                                      simultaneous=True)) == 0
    shown = sp.symbols("a_O a_I H_c q")  # the same system with the scalar blocks kept as symbols
    F_shown, L_shown = closed_system(*shown, P)
    DOC.show("g (MP quadratic)", sp.Eq(g_eq.subs({aO_: shown[0], aI_: shown[1]}), 0))
    DOC.show("h", sp.Eq(sp.Symbol("h"), hh_formula(g, shown[0])))
    for sym, val in zip(shown, (aO, aI, Hc, qbar)):
        DOC.show(str(sym), sp.Eq(sym, val))
    return F, Lbar, dict(zip(shown, (aO, aI, Hc, qbar))), F_shown, L_shown


@DOC.step
def step7_m_infinity(F, Lbar):
    """iota = 1/m makes finite m and m = infinity one system.

    Every residual and the loss are rational in iota with denominators that do not vanish at
    iota = 0 (asserted), so m = infinity is the regular point iota = 0 of the same system, not a
    limit to be taken numerically.  Train and test errors are then derivatives of the averaged
    loss in lam and gam, taken through the implicit function theorem by the solver with the
    Jacobians generated from these expressions.
    """
    for e in F + [Lbar]:
        assert sp.denom(sp.together(e)).subs(iota, 0) != 0
    DOC.show("m = infinity: the loss", sp.Eq(sp.Symbol("L"), sp.simplify(Lbar.subs(iota, 0))))


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
        # MP quadratic for g with g = G/a_I, divided by a_I + psi_p a_O G: O(1) residuals whatever
        # the ratio a_O/a_I (which diverges in the ridgeless limit of linear features), and the
        # O(psi_p) terms of the quadratic, which cancel as G -> 1 for many features, keep
        # their relative rounding.
        (psi_p * aO * G**2 + (aO * (1 - psi_p) + aI) * G - aI) / (aI + psi_p * aO * G),
    ]
    # Averaged loss: q - (1/d) sum_k c_k^T A^{-1} c_k = q - psi_p mu1^2 Hc^2 h.
    Lbar = qbar - psi_p * mu1**2 * Hc**2 * h_of_G
    return F, Lbar


def hh_formula(g_, aO_):
    return g_ / (1 + psi_p * aO_ * g_)


@DOC.step
def step9_anisotropic_rows():
    """Steps 2-3 for x ~ N(0, Sigma), along an eigen-direction of Sigma with eigenvalue ell.

    W is rotation invariant, so Sigma may be taken diagonal.  Along a direction with eigenvalue
    ell, Var(sum_j a_j y_j) = rho ell S1^2 + D S2 (y_j = e^{-t} x + sqrt(D) z_j); the
    cross-covariance with the target and the target variance do not involve x, and the
    nonlinear parts are step 1's at preactivation variance v_t = rho s2 + D (covariance rho s2
    between copies), i.e. mu1 = E sigma'(h), h ~ N(0, v_t).  Given W the features of population
    tau have covariance mu1^2 W V_tau W^T/d + kappa_tau^2 I with V_tau = diag(v_tau(ell_i)).
    """
    ge = step1_gaussian_equivalence(rho * s2 + D, rho * s2)
    iso = step1_gaussian_equivalence()
    assert all(sp.simplify(a[1].rhs.subs(s2, 1) - b[1].rhs) == 0 for a, b in zip(ge, iso))
    S1, S2 = sp.symbols("S1 S2")
    var_y = rho * ell * S1**2 + D * S2
    cov_zy = sp.sqrt(D) * S2
    noise = mus2 * S1**2 + mue2 * S2
    rows = {"mean": {S1: sp.sqrt(m), S2: 1}, "orth": {S1: 0, S2: 1}}
    pops = {name: dict(v=sp.expand(var_y.subs(sub)), c=cov_zy.subs(sub), q=sp.Integer(1),
                       kappa2=sp.expand(noise.subs(sub))) for name, sub in rows.items()}
    pops["test"] = dict(v=rho * ell + D, c=sp.sqrt(D), q=sp.Integer(1), kappa2=mus2 + mue2)
    iso_pops = step3_linear_gaussian(step2_rotate_groups())
    for name in pops:  # at ell = 1 the isotropic populations of steps 2-3
        for key in ("v", "c", "q", "kappa2"):
            assert sp.simplify(pops[name][key].subs(ell, 1) - iso_pops[name][key]) == 0
    for name in pops:
        DOC.show_tex(f"{name} row along ell", r"v_\tau(\ell) = " + sp.latex(pops[name]["v"]),
                     f"v_tau(ell) = {sp.sstr(pops[name]['v'])}", ("v_tau", "ell", "m", "t"))
    return ge, pops


@DOC.step
def step10_column_leave_one_out():
    """Traces over W (Silverstein structure) for Sigma-dependent feature covariances.

    Q = (W M W^T/d + a_I)^{-1} with W = [w_1 .. w_d] (columns in R^p, iid N(0, I_p)) and
    M = diag(M(ell_i)).  Removing the column w_i (Sherman-Morrison, checked here):
    w_i^T Q = s_i w_i^T Q_{-i}, s_i = 1/(1 + M_i e), e = w_i^T Q_{-i} w_i/d -> tr Q/d = psi_p g.
    Hence (a) w_i^T Q w_i/d = psi_p h(ell_i), h = g s = g/(1 + psi_p g M);
    (b) 1 = tr(Q Q^{-1})/p = a_I g + g E_H[M s] (Silverstein's equation);
    (c) tr(W F W^T Q)/(d p) = E_H[F h] for diagonal F.  At H = delta_1, (b) is the
    Marchenko-Pastur fixed point of step 6.
    """
    w = sp.Matrix(sp.symbols("w1 w2"))
    Qm = sp.Matrix(2, 2, sp.symbols("p11 p12 p12 p22"))  # Q_{-i}: symmetric
    Mi, dd = sp.symbols("M_i d", positive=True)
    Q = (Qm.inv() + Mi * w * w.T / dd).inv()
    e = (w.T * Qm * w)[0] / dd
    assert sp.simplify(w.T * Q - w.T * Qm / (1 + Mi * e)) == sp.zeros(1, 2)
    assert sp.simplify((w.T * Q * w)[0] / dd - e / (1 + Mi * e)) == 0  # (a)
    aO_, aI_ = sp.symbols("a_O a_I", positive=True)
    silverstein = aI_ * g + g * aO_ / (1 + psi_p * g * aO_) - 1  # (b) at H = delta_1, M = a_O
    mp_fixed = g - 1 / (aO_ / (1 + psi_p * aO_ * g) + aI_)
    assert sp.simplify(silverstein - mp_fixed * (aI_ + aO_ / (1 + psi_p * g * aO_))) == 0
    DOC.show_tex("(a)", r"w_i^T Q w_i / d = \psi_p h(\ell_i), \quad h = \frac{g}{1 + \psi_p g M}",
                 "w_i^T Q w_i/d = psi_p h(ell_i), h = g/(1 + psi_p g M)", ("psi_p", "g", "h(ell)", "M(ell)"))
    DOC.show_tex("(b) Silverstein", r"1 = a_I g + g\, \mathbb{E}_H\!\left[\frac{M}{1 + \psi_p g M}\right]",
                 "1 = a_I g + g E_H[M/(1 + psi_p g M)]", ("a_I", "g", "E_H", "psi_p", "M(ell)"))


@DOC.step
def step11_anisotropic_system(pops, F_iso, L_iso):
    """Node form of the anisotropic system, and its reduction to steps 1-7 at Sigma = I.

    M(ell) = mu1^2 (sum_tau alpha_tau k_tau v_tau(ell) + gam v_test(ell)); a_I, H_c and q are
    those of step 6.  With g = G/a_I and h(ell) = G/(a_I + psi_p G M(ell)):
    delta_tau = (p/N)(mu1^2 E_H[v_tau h] + kappa_tau^2 g) (step 10 (c)), Silverstein's
    equation divided by a_I reads E_H[1 - G - G M/(a_I + psi_p G M)] = 0, and the loss of the
    output coordinate along an eigenvalue ell is l(ell) = q - psi_p mu1^2 H_c^2 h(ell)
    (step 10 (a): c_k = mu1 H_c w_k / sqrt(d)), so L = E_H[l].
    """
    P = {"mean": {k: sp.expand(v.subs(m, 1 / iota)) for k, v in pops["mean"].items()}, "orth": pops["orth"]}
    test = pops["test"]
    alpha = {"mean": iota, "orth": 1 - iota}
    kk = {"mean": k0, "orth": k1}

    def weighted(key):
        return sum(sp.expand(alpha[k] * P[k][key]) * kk[k] for k in P) + gam * test[key]

    M = mu1**2 * weighted("v")
    aI = weighted("kappa2") + lam
    Hc, qbar = weighted("c"), weighted("q")
    g_ = G / aI
    h = G / (aI + psi_p * M * G)
    assert sp.simplify(h - g_ / (1 + psi_p * g_ * M)) == 0
    f = [1 - kk[k] - kk[k] * psi_p / psi_n * (mu1**2 * sp.expand(iota * P[k]["v"]) * h
                                                + sp.expand(iota * P[k]["kappa2"]) * g_) for k in P]
    f.append(1 - G - G * M / (aI + psi_p * G * M))
    loss = qbar - psi_p * mu1**2 * Hc**2 * h
    # Sigma = I: the same k-equations and loss, and a G-equation with the same solutions
    # (a non-vanishing factor apart) as the Marchenko-Pastur route of step 6.
    at1 = {ell: 1}
    assert sp.simplify(f[0].subs(at1) - F_iso[0]) == 0
    assert sp.simplify(f[1].subs(at1) - F_iso[1]) == 0
    assert sp.simplify(f[2].subs(at1) + F_iso[2]) == 0
    assert sp.simplify(loss.subs(at1) - L_iso) == 0
    for e in f + [loss]:  # m = infinity (iota = 0) stays a regular point
        assert sp.denom(sp.together(e)).subs(iota, 0) != 0
    hs = sp.Symbol("h(ell)")
    DOC.show("M(ell)", sp.Eq(sp.Symbol("M(ell)"), M))
    DOC.show("h(ell)", sp.Eq(hs, G / (sp.Symbol("a_I") + psi_p * sp.Symbol("M(ell)") * G)))
    DOC.show("loss along ell", sp.Eq(sp.Symbol("l(ell)"), sp.Symbol("q") - psi_p * mu1**2 * sp.Symbol("H_c")**2 * hs))
    return f, loss, dict(M=M, a_I=aI, H_c=Hc, q=qbar, h=h)


@DOC.step
def step12_floor():
    """The smallest test error and the score error (conventions 1.5).

    Per coordinate along an eigenvalue ell: z = c y + e with c = sqrt(D)/(rho ell + D) (the best
    linear predictor) and e independent of y, Var e = 1 - D/(rho ell + D) =: floor(ell).  For any
    predictor beta of the features, E(beta + z)^2 = E(beta + c y)^2 + floor, and since
    s_A - s* = (beta + c y)/sqrt(D) coordinate-wise, test - floor = D E(s_A - s*)^2.
    """
    v = rho * ell + D
    c = sp.sqrt(D) / v
    floor = 1 - D / v
    assert sp.simplify(floor - rho * ell / (rho * ell + D)) == 0
    Eb2, Eby = sp.symbols("E_beta2 E_beta_y")  # second moments of beta and of (beta, y)
    Ez_b = c * Eby  # E[beta z] = c E[beta y]: e is independent of (beta, y)
    test = Eb2 + 2 * Ez_b + 1
    score = D * (Eb2 / D + 2 * c * Eby / D + c**2 * v / D)  # D E((beta + c y)/sqrt(D))^2
    assert sp.simplify(test - floor - score) == 0
    stable = ell / (ell + expm1(2 * t))  # D / rho = expm1(2t) keeps its digits (and ell = 0 finite) as t -> 0
    assert sp.simplify(stable.rewrite(sp.exp) - floor) == 0
    DOC.show("test error", sp.Eq(sp.Symbol("test_error"), test))
    DOC.show("floor along ell", sp.Eq(sp.Symbol("test_error_floor"), floor))
    DOC.show("", sp.Eq(sp.Symbol("test_error_floor"), stable), "the form evaluated")
    return stable


@DOC.step
def step13_kernel_limit(f_node, l_node, pops):
    """psi_p -> inf at fixed lam (eps = 1/psi_p): the limits of step 11, computed by sympy.

    Finite m: with k_tau = lam eps K_tau, gam = lam eps Gamma, G = 1 - eps Ghat, every
    residual tends to 1 - K_tau c_tau(ell), c_tau = (iota/psi_n)(mu1^2 v_tau/(1 + Mt) + kappa_tau^2)
    and Mt = mu1^2 (sum alpha_tau K_tau v_tau + Gamma v_test); the loss is lam eps Ltilde with
    Ltilde = qt - mu1^2 Ht^2/(1 + Mt) (qt, Ht: q and H_c with k -> K, gam -> Gamma).  As L - lam
    dL/dlam = O(eps) the train error vanishes; the test error dL/dgam = dLtilde/dGamma.  Solved
    for y_tau = 1/K_tau (residual y_tau - c_tau, linear in the expectation).
    m = inf (iota = 0): k_1 = 1 exactly; with k_0 = eps K_0, gam = eps Gamma the k_0 residual
    tends to 1 - K_0 mu_s^2/(psi_n (mu_e^2 + lam)) and L/eps to
    e^{-2t} ell (K_0 + Gamma)/D + (mu_e^2 + lam)/(mu1^2 D): test_error = e^{-2t} E_H[ell]/D.
    """
    eps = sp.Symbol("epsilon", positive=True)
    K = sp.symbols("K0 K1", positive=True)
    Gam, Gh = sp.symbols("Gamma Ghat")
    P = {"mean": {k: sp.expand(v.subs(m, 1 / iota)) for k, v in pops["mean"].items()}, "orth": pops["orth"]}
    test = pops["test"]
    alpha = {"mean": iota, "orth": 1 - iota}
    KK = dict(zip(P, K))
    Mt = mu1**2 * (sum(sp.expand(alpha[k] * P[k]["v"]) * KK[k] for k in P) + Gam * test["v"])
    c = {k: (iota / psi_n) * (mu1**2 * sp.expand(iota * P[k]["v"]) / iota / (1 + Mt)
                              + sp.expand(iota * P[k]["kappa2"]) / iota) for k in P}
    c = {k: sp.expand(sp.cancel(v * (1 + Mt))) / (1 + Mt) for k, v in c.items()}
    qt = sum(sp.expand(alpha[k] * P[k]["q"]) * KK[k] for k in P) + Gam * test["q"]
    Ht = sum(sp.expand(alpha[k] * P[k]["c"]) * KK[k] for k in P) + Gam * test["c"]
    Lt = qt - mu1**2 * Ht**2 / (1 + Mt)
    sub = {k0: lam * eps * K[0], k1: lam * eps * K[1], gam: lam * eps * Gam, psi_p: 1 / eps, G: 1 - eps * Gh}
    for fk, Kk, k in zip(f_node[:2], K, P):
        assert sp.simplify(sp.limit(sp.together(fk.subs(sub)), eps, 0) - (1 - Kk * c[k])) == 0
    assert sp.simplify(sp.limit(sp.together(f_node[2].subs(sub)), eps, 0)) == 0  # G -> 1
    assert sp.simplify(sp.limit(sp.together(l_node.subs(sub) / (lam * eps)), eps, 0) - Lt) == 0
    # the ridge drops out: Ltilde and c do not involve lam, so L - lam dL/dlam = O(eps^2)/eps...
    assert not (Lt.free_symbols | set().union(*(v.free_symbols for v in c.values()))) & {lam}
    y = sp.symbols("y0 y1", positive=True)
    onK = dict(zip(K, (1 / y[0], 1 / y[1])))
    resid = [sp.together(y[i] - c[k].subs(onK)) for i, k in enumerate(P)]
    loss_y = Lt.subs(onK)
    # m = inf
    sub_inf = {iota: 0, k1: 1, k0: eps * K[0], gam: eps * Gam, psi_p: 1 / eps, G: 1 - eps * Gh}
    assert sp.simplify(f_node[1].subs(iota, 0) - (1 - k1)) == 0
    K0_inf = psi_n * (mue2 + lam) / mus2
    assert sp.simplify(sp.limit(sp.together(f_node[0].subs(sub_inf)), eps, 0)
                       - (1 - K[0] * mus2 / (psi_n * (mue2 + lam)))) == 0
    L_inf = rho * ell * (K[0] + Gam) / D + (mue2 + lam) / (mu1**2 * D)
    assert sp.simplify(sp.limit(sp.together(l_node.subs(sub_inf) / eps), eps, 0) - L_inf) == 0
    test_inf = sp.diff(L_inf.subs(K[0], K0_inf), Gam)
    assert sp.simplify(test_inf - rho * ell / D) == 0
    # c_tau at K = 0 (no coupling) bounds y_tau = c_tau from above: c is decreasing in K
    upper = [c[k].subs({K[0]: 0, K[1]: 0, Gam: 0}) for k in P]
    # the empirical-score cross term of step 14 in the limit (finite m, and m = inf)
    cross = -mu1**2 * sp.exp(-t) * ell * weighted_c(P, alpha, {"mean": k0, "orth": k1}) * psi_p * G / (
        weighted_k2(P, alpha, {"mean": k0, "orth": k1}) + lam + psi_p * G * mu1**2 * sum(
            sp.expand(alpha[k] * P[k]["v"]) * kk for k, kk in zip(P, (k0, k1))))
    cross_lim = sp.limit(sp.together(cross.subs(sub)), eps, 0)
    Ht0 = Ht.subs(Gam, 0)
    assert sp.simplify(cross_lim - (-mu1**2 * sp.exp(-t) * ell * Ht0 / (1 + Mt.subs(Gam, 0)))) == 0
    cross_inf = sp.limit(sp.together(cross.subs(sub_inf)), eps, 0)
    assert sp.simplify(cross_inf + sp.exp(-t) * ell / sp.sqrt(D)) == 0  # the predictor -y/sqrt(D)
    kcross = (2 * sp.exp(-t) / sp.sqrt(D) * cross_lim).subs(onK)
    DOC.show("Mt", sp.Eq(sp.Symbol("Mt"), Mt))
    for k, Kk in zip(P, K):
        DOC.show(f"1/K ({k} rows)", sp.Eq(1 / Kk, c[k]))
    DOC.show("Ltilde", sp.Eq(sp.Symbol("Ltilde"), Lt))
    DOC.show("m = inf", sp.Eq(K[0], K0_inf))
    DOC.show("", sp.Eq(sp.Symbol("test_error"), test_inf))
    return y, resid, loss_y, Gam, test_inf, (Mt, c, Lt, K), upper, kcross


def weighted_c(P, alpha, kk):
    """H_c at gam = 0: sum_tau alpha_tau k_tau c_tau."""
    return sum(sp.expand(alpha[k] * P[k]["c"]) * kk[k] for k in P)


def weighted_k2(P, alpha, kk):
    """The nonlinear part of a_I at gam = 0: sum_tau alpha_tau k_tau kappa_tau^2."""
    return sum(sp.expand(alpha[k] * P[k]["kappa2"]) * kk[k] for k in P)


@DOC.step
def step14_empirical_score(ablocks):
    """The d -> inf empirical-score error, per eigenvalue (see the module docstring, step 14).

    Per coordinate along ell, with beta = b_k . phi(y), target z_k and an independent training
    point x* (Var x*_k = ell): D E(s_A - s_emp)^2 = E(beta + (y_k - e^{-t} x*_k)/sqrt(D))^2, and
    y_k = e^{-t} x_k + sqrt(D) z_k; expanding with E[x* beta] = E[x* y] = 0 gives
    test(ell) + 2 e^{-t} E[beta x_k]/sqrt(D) + 2 e^{-2t} ell/D.  E[beta x_k] = -c_k^T Q v_k with
    c_k = mu1 H_c w_k/sqrt(d), v_k = mu1 e^{-t} ell w_k/sqrt(d): -mu1^2 e^{-t} ell H_c psi_p h(ell).
    """
    Eb2, Ebz, Ebx = sp.symbols("E_beta2 E_beta_z E_beta_x")  # E[beta^2], E[beta z_k], E[beta x_k]
    a = sp.exp(-t)
    # the second moments of (x_k, z_k, x*_k): ell, 1, ell, all independent
    test_ell = Eb2 + 2 * Ebz + 1
    y_part = {"xx": rho * ell, "zz": D, "xz": 0}
    ese = (Eb2 + (y_part["xx"] + y_part["zz"]) / D + rho * ell / D
           + 2 * (a * Ebx + sp.sqrt(D) * Ebz) / sp.sqrt(D))
    cross = -mu1**2 * a * ell * ablocks["H_c"] * psi_p * ablocks["h"]
    ese_node = test_ell + 2 * a * Ebx / sp.sqrt(D) + 2 * rho * ell / D
    assert sp.simplify(ese - ese_node) == 0
    DOC.show("along ell", sp.Eq(sp.Symbol("empirical_score_error"), ese_node))
    DOC.show("", sp.Eq(Ebx, -mu1**2 * a * ell * sp.Symbol("H_c") * psi_p * sp.Symbol("h(ell)")))
    # 2 e^{-2t} ell / D = 2 ell / expm1(2t): the form that keeps its digits (and stays finite) as t -> 0
    shift = 2 * ell / expm1(2 * t)
    assert sp.simplify(shift.rewrite(sp.exp) - 2 * rho * ell / D) == 0
    return sp.simplify((2 * a / sp.sqrt(D) * cross).subs(gam, 0)), shift


def build() -> Module:
    DOC.reset()
    ge = step1_gaussian_equivalence()
    pops = step3_linear_gaussian(step2_rotate_groups())
    step4_schur_complement()
    step5_sherman_morrison()
    F, Lbar, blocks, F_shown, L_shown = step6_omega_traces(pops)
    step7_m_infinity(F, Lbar)
    ge_aniso, pops_aniso = step9_anisotropic_rows()
    step10_column_leave_one_out()
    f_node, l_node, ablocks = step11_anisotropic_system(pops_aniso, F, Lbar)
    floor = step12_floor()
    ky, kres, kloss, Gam, ktest_inf, kshown, kupper, kcross = step13_kernel_limit(f_node, l_node, pops_aniso)
    ese_cross, ese_shift = step14_empirical_score(ablocks)
    u = [k0, k1, G]
    args = (k0, k1, G, psi_n, psi_p, iota, t, lam, gam, mu1, mus2, mue2)
    J = [sp.diff(f, v) for f in F for v in u]
    Fg = [sp.diff(f, gam) for f in F]
    Fl = [sp.diff(f, lam) for f in F]
    Lu = [sp.diff(Lbar, v) for v in u]
    functions = [
        Function("newton_step_terms", args, tuple(F) + tuple(J),
                 "Residuals F (3) and Jacobian dF/d(k0, k1, G) row-major (9)."),
        Function("residuals", args, tuple(F), "Residuals F (3) alone (line searches)."),
        Function("loss_terms", args,
                 (Lbar,) + tuple(Lu) + (sp.diff(Lbar, gam), sp.diff(Lbar, lam)) + tuple(Fg) + tuple(Fl),
                 "Lbar, dLbar/du (3), dLbar/dgam, dLbar/dlam, dF/dgam (3), dF/dlam (3)."),
        Function("feature_stieltjes", args, (G / blocks[sp.Symbol("a_I")],),
                 "Step 8: tr((U - z)^{-1})/p = G/a_I at lam = -z, gam = 0."),
    ]
    nargs = (ell,) + args
    functions += [
        Function("node_step_terms", nargs, tuple(f_node) + tuple(sp.diff(e, v) for e in f_node for v in u),
                 "Step 11, per eigenvalue ell of Sigma: f (3) and df/d(k0, k1, G) (9); F = E_H[f]."),
        Function("node_residuals", nargs, tuple(f_node), "Step 11, per eigenvalue: f (3) alone (line searches)."),
        Function("node_loss_terms", nargs,
                 (l_node,) + tuple(sp.diff(l_node, v) for v in u) + (sp.diff(l_node, gam), sp.diff(l_node, lam))
                 + tuple(sp.diff(e, gam) for e in f_node) + tuple(sp.diff(e, lam) for e in f_node),
                 "Step 11, per eigenvalue: l, dl/du (3), dl/dgam, dl/dlam, df/dgam (3), df/dlam (3)."),
        Function("test_error_floor", (ell, t), (floor,),
                 "Step 12: the smallest test error along an eigenvalue ell of Sigma."),
    ]
    kargs = (ell,) + ky + (psi_n, iota, t, Gam, mu1, mus2, mue2)
    functions += [
        Function("kernel_node_terms", kargs, tuple(kres) + tuple(sp.diff(e, v) for e in kres for v in ky),
                 "Step 13, psi_p = inf, finite m, per eigenvalue: residuals in y = 1/K (2) and their "
                 "Jacobian in (y0, y1) (4)."),
        Function("kernel_node_loss", kargs, (kloss,) + tuple(sp.diff(kloss, v) for v in ky)
                 + (sp.diff(kloss, Gam),) + tuple(sp.diff(e, Gam) for e in kres),
                 "Step 13, per eigenvalue: Ltilde, dLtilde/dy (2), dLtilde/dGamma, dres/dGamma (2)."),
        Function("empirical_score_terms", nargs, (ese_cross, ese_shift),
                 "Step 14, per eigenvalue: 2 e^{-t} E[beta x_k]/sqrt(D) and 2 e^{-2t} ell/D, the two "
                 "terms the d -> inf empirical-score error adds to the test error."),
        Function("empirical_shift", (sp.Symbol("s2"), t), (ese_shift.subs(ell, sp.Symbol("s2")),),
                 "Step 14: E_H of the second term, linear in ell, so exact with the mean s2 = E_H ell."),
        Function("kernel_node_upper", (ell, psi_n, iota, t, mu1, mus2, mue2), tuple(kupper),
                 "Step 13: c_tau without coupling, the upper bounds of y_tau (Newton starts there)."),
        Function("kernel_empirical_cross", kargs, (kcross,),
                 "Step 14 at psi_p = inf (finite m), per eigenvalue: 2 e^{-t} E[beta x_k]/sqrt(D) "
                 "(m = inf: -2 e^{-2t} ell/D, the predictor -y/sqrt(D))."),
        Function("kernel_m_inf_test", (ell, t), (ktest_inf,),
                 "Step 13, psi_p = inf and m = inf: the test error along ell (train error 0)."),
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
    El = sp.Function("E_H")  # expectation over the population law H of Sigma's eigenvalues ell
    Ms, aIs, hs = sp.symbols("M(ell) a_I h(ell)")
    aeqs = ge_aniso + [
        ("v_t", sp.Eq(sp.Symbol("v_t"), rho * s2 + D)),
        ("M(ell)", sp.Eq(Ms, ablocks["M"])),
        ("a_I", sp.Eq(aIs, ablocks["a_I"])),
        ("H_c", sp.Eq(sp.Symbol("H_c"), ablocks["H_c"])),
        ("q", sp.Eq(sp.Symbol("q"), ablocks["q"])),
        ("h(ell)", sp.Eq(hs, G / (aIs + psi_p * G * Ms))),
        ("k0 = 1/(1+delta0)", sp.Eq(El(f_node[0].subs(ablocks["h"], hs).subs(ablocks["a_I"], aIs)), 0)),
        ("k1 = 1/(1+delta1)", sp.Eq(El(f_node[1].subs(ablocks["h"], hs).subs(ablocks["a_I"], aIs)), 0)),
        ("G = a_I g (Silverstein)", sp.Eq(El(1 - G - G * Ms / (aIs + psi_p * G * Ms)), 0)),
        ("loss L(lam, gam)", sp.Eq(sp.Symbol("L"), El(sp.Symbol("q") - psi_p * mu1**2 * sp.Symbol("H_c")**2 * hs))),
        ("test_error_floor", sp.Eq(sp.Symbol("test_error_floor"), El(floor))),
        ("score_error", sp.Eq(sp.Symbol("score_error"), sp.Symbol("test_error") - sp.Symbol("test_error_floor"))),
        ("empirical_score_error (d -> inf)", sp.Eq(sp.Symbol("empirical_score_error"), sp.Symbol("test_error")
                                                    + El(ese_cross + ese_shift))),
        ("kernel limit psi_p = inf, finite m: 1/K_tau",
         sp.Eq(1 / sp.Symbol("K_tau"), El(sp.Symbol("c_tau")))),
        ("", sp.Eq(sp.Symbol("c_tau"), (iota / psi_n) * (mu1**2 * sp.Symbol("v_tau") / (1 + sp.Symbol("Mt"))
                                                          + sp.Symbol("kappa_tau")**2))),
        ("", sp.Eq(sp.Symbol("Mt"), kshown[0])),
        ("", sp.Eq(sp.Symbol("Ltilde"), El(kshown[2]))),
        ("", sp.Eq(sp.Symbol("test_error"), sp.Derivative(sp.Symbol("Ltilde"), Gam))),
        ("kernel limit, m = inf", sp.Eq(sp.Symbol("test_error"), El(ktest_inf))),
        ("kernel limit, any m", sp.Eq(sp.Symbol("train_error"), 0)),
    ]
    DOC.system(
        "RF-DSM with x ~ N(0, Sigma)", aeqs,
        "Population law H of the eigenvalues ell of Sigma (conventions 1.5; iota = 1/m, m = infinity is "
        "iota = 0); test_error = dL/dgam, train_error = L - lam dL/dlam at gam = 0 (total derivatives); "
        "test_error_by_eigenvalue = dl(ell)/dgam.")
    DOC.system(
        "isotropic data (Sigma = I)", eqs,
        "The same system through the Marchenko-Pastur law of W W^T/d (asserted equivalent at H = delta_1).")
    return Module("rf_dsm", functions, DOC)
