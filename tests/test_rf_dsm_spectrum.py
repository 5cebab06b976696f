"""Spectral law of the RF-DSM feature matrix U = Phi^T Phi/(n m)."""
import math

import numpy as np
import pytest

from rmtsolve import ParameterError, feature_spectrum, resolve_activation

KW = dict(psi_n=0.5, psi_p=2.0, m=3, t=0.5, activation="tanh")


def _eigs(d, psi_n, psi_p, m, t, activation, seed=0):
    rng = np.random.default_rng(seed)
    n, p = round(psi_n * d), round(psi_p * d)
    W = rng.standard_normal((p, d))
    y = np.exp(-t) * rng.standard_normal((n, 1, d)) + math.sqrt(1 - math.exp(-2 * t)) * rng.standard_normal((n, m, d))
    F = resolve_activation(activation)(y.reshape(n * m, d) @ W.T / math.sqrt(d))
    return np.linalg.eigvalsh(F.T @ F / (n * m))


@pytest.mark.parametrize("kw", [KW, dict(psi_n=1.0, psi_p=2.0, m=1, t=0.5, activation="relu")])
def test_stieltjes_matches_real_features(kw):
    ev = _eigs(400, **kw)
    z = np.array([0.5 + 0.3j, 1.0 + 0.1j, 0.2 + 0.05j])
    s = feature_spectrum(z, **kw).stieltjes
    emp = np.array([np.mean(1 / (ev - zz)) for zz in z])
    assert np.max(np.abs(s - emp) / np.abs(emp)) < 2.5e-2


def test_density_cdf_matches_eigenvalues():
    ev = np.sort(_eigs(400, **KW))
    xs = np.linspace(1e-3, ev[-2] * 1.05, 20000)  # start clear of the atom's eta-tail
    th = feature_spectrum(xs, **KW)
    cdf = th.atom + np.concatenate([[0], np.cumsum((th.density[1:] + th.density[:-1]) / 2 * np.diff(xs))])
    ecdf = np.searchsorted(ev, xs, side="right") / ev.size
    assert np.max(np.abs(cdf - ecdf)) < 0.02
    assert cdf[-1] == pytest.approx(1.0, abs=2e-3)


def test_branch_and_asymptotics():
    z = np.array([0.1 + 1e-3j, 1 + 1j, -2 + 0.5j, 50 + 50j, 1e4j])
    s = feature_spectrum(z, **KW).stieltjes
    assert np.all(s.imag > 0)
    assert (z[-1] * s[-1]) == pytest.approx(-1, abs=1e-3)


@pytest.mark.parametrize("m,atom", [(1, 0.75), (2, 0.5), (4, 0.0), (math.inf, 0.0)])
def test_atom_at_zero(m, atom):
    assert feature_spectrum(1.0, psi_n=0.5, psi_p=2.0, m=m, t=0.5).atom == pytest.approx(atom)


def test_bad_z():
    with pytest.raises(ParameterError):
        feature_spectrum(1 - 1j, **KW)
