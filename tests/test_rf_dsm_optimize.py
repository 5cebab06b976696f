"""Optimal ridge and stopping time: true minima (dense sweeps), boundaries, the CLI."""
import json
import math

import numpy as np
import pytest

from rmtsolve import ParameterError, cli, optimize_rf_dsm, rf_dsm


@pytest.mark.parametrize("kw", [dict(psi_n=1.0, psi_p=2.0, m=1, t=0.5),
                                dict(psi_n=0.5, psi_p=1.5, m=3, t=0.2, activation="tanh"),
                                dict(psi_n=2.0, psi_p=0.5, m=math.inf, t=1.0, spectrum=[0.0, 1.0, 3.0])])
def test_optimal_ridge_is_the_minimum_of_a_dense_sweep(kw):
    o = optimize_rf_dsm(over="lam", **kw)
    lams = np.geomspace(1e-8, 1e3, 4001)
    dense = np.asarray(rf_dsm(**kw, lam=lams).test_error)
    j = int(np.argmin(dense))
    assert o.boundary == "" and o.converged
    assert float(o.test_error) <= dense[j] + 1e-12  # never above the dense minimum
    assert dense[j] - float(o.test_error) < 1e-5  # and the dense grid comes close to it
    assert abs(math.log10(float(o.argmin) / lams[j])) < 0.01  # grid spacing 0.00275 decades
    again = rf_dsm(**kw, lam=float(o.argmin))
    assert float(again.test_error) == pytest.approx(float(o.test_error), rel=1e-13)


def test_optimal_stopping_time_is_the_minimum_of_a_dense_sweep():
    kw = dict(psi_n=1.0, psi_p=4.0, m=1, t=0.5, lam=1e-3)
    o = optimize_rf_dsm(over="tau", **kw)
    taus = np.geomspace(0.2, 3.0, 300)
    dense = np.asarray(rf_dsm(**kw, tau=taus).test_error)
    assert float(o.test_error) <= dense.min() + 1e-12 and dense.min() - float(o.test_error) < 1e-5
    assert 0.2 < float(o.argmin) < 3 and o.boundary == ""


def test_boundaries_and_vectorised_points():
    # a large ridge leaves nothing to overfit: training to convergence is best
    o = optimize_rf_dsm(over="tau", psi_n=np.array([4.0, 1.0]), psi_p=np.array([0.5, 4.0]), m=1, t=0.5,
                        lam=np.array([1.0, 1e-3]))
    assert list(o.boundary) == ["tau -> inf", ""] and o.argmin[0] == math.inf
    assert o.test_error[0] == pytest.approx(float(rf_dsm(psi_n=4, psi_p=0.5, m=1, t=0.5, lam=1.0).test_error))
    env = optimize_rf_dsm(over="lam", psi_n=1.0, psi_p=np.geomspace(0.5, 8, 5), m=3, t=0.5)
    # the lower envelope lies below every fixed-ridge curve
    for lam in (1e-3, 1e-1, 1.0):
        assert np.all(env.test_error <= rf_dsm(psi_n=1, psi_p=np.geomspace(0.5, 8, 5), m=3, t=0.5,
                                                lam=lam).test_error + 1e-12)


@pytest.mark.parametrize("kw,name", [(dict(over="ridge"), "over"), (dict(over="tau"), "lam"),
                                     (dict(over="lam", lam=1.0), "lam"), (dict(over="lam", psi_p=np.inf), "psi_p"),
                                     (dict(over="lam", psi_n=-1.0), "psi_n")])
def test_bad_input(kw, name):
    base = dict(psi_n=1.0, psi_p=2.0, m=1, t=0.5)
    with pytest.raises(ParameterError) as e:
        optimize_rf_dsm(**(base | kw))
    assert e.value.name == name


def test_cli_optimize(capsys, tmp_path):
    assert cli.main(["optimize", "rf-dsm", "--over", "lam", "--psi-p", "2", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    direct = optimize_rf_dsm(over="lam", psi_n=1, psi_p=2, m=1, t=0.5)
    assert out["argmin"] == pytest.approx(float(direct.argmin)) and out["boundary"] == ""
    path = tmp_path / "env.csv"
    assert cli.main(["optimize", "rf-dsm", "--over", "lam", "--psi-p", "0.5:2:3", "--csv", str(path)]) == 0
    lines = path.read_text().splitlines()
    assert lines[0].startswith("psi_n,psi_p,m,t,over,activation,spectrum,argmin,test_error") and len(lines) == 4
    assert cli.main(["optimize", "rf-dsm", "--over", "tau", "--psi-p", "inf"]) == 2
