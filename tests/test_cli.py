"""Command-line contract of conventions section 3: JSON output, exit statuses, one-line errors."""
import json
import math
import subprocess
import sys

import pytest

from rmtsolve import cli
from rmtsolve.errors import ConvergenceError


def run(*args):
    p = subprocess.run([sys.executable, "-m", "rmtsolve.cli", *args], capture_output=True, text=True)
    return p.returncode, p.stdout, p.stderr


def test_rf_dsm_json_keys_and_agreement_with_api():
    from rmtsolve import rf_dsm

    code, out, err = run("rf-dsm", "--psi-n", "1", "--psi-p", "2", "--m", "3", "--t", "0.5",
                         "--lam", "0.01", "--activation", "tanh", "--json")
    assert code == 0, err
    data = json.loads(out)
    assert set(data) == {"test_error", "train_error", "score_error", "gap", "test_error_floor",
                         "empirical_score_error", "params"}
    api = rf_dsm(psi_n=1, psi_p=2, m=3, t=0.5, lam=0.01, activation="tanh")
    assert data["test_error"] == pytest.approx(float(api.test_error), rel=1e-14)
    assert data["score_error"] == pytest.approx(data["test_error"] - math.exp(-1), rel=1e-12)


def test_rf_dsm_default_prints_a_learning_curve_table():
    code, out, err = run("rf-dsm")
    assert code == 0, err
    lines = out.strip().splitlines()
    assert "psi_p" in lines[1] and "test_error" in lines[1]
    assert len(lines) == 2 + 17


def test_rf_dsm_dps_prints_many_digits():
    code, out, err = run("rf-dsm", "--psi-p", "2", "--dps", "40", "--json")
    assert code == 0, err
    mantissa = out.split('"test_error": ')[1].split(",")[0]
    assert len(mantissa.replace(".", "").lstrip("0")) >= 35
    assert json.loads(out)["test_error"] > 0


def test_m_infinity_accepted():
    code, out, _ = run("rf-dsm", "--psi-p", "2", "--m", "inf", "--json")
    assert code == 0 and json.loads(out)["params"]["m"] == "inf"


@pytest.mark.parametrize("args,name", [
    (["rf-dsm", "--psi-n", "0", "--psi-p", "1"], "psi_n"),
    (["rf-dsm", "--psi-p", "-2"], "psi_p"),
    (["rf-dsm", "--psi-p", "1", "--t", "0"], "t"),
    (["rf-dsm", "--psi-p", "1", "--m", "0"], "--m"),
    (["rf-dsm", "--psi-p", "1", "--lam", "-1"], "lam"),
    (["rf-dsm", "--psi-p", "1", "--activation", "x**"], "activation"),
    (["rf-dsm", "--psi-p", "1", "--activation", "nosuch"], "activation"),
    (["rf-dsm", "--psi-p", "1", "--psi-n", "nan"], "psi_n"),
    (["rf-dsm", "--psi-p", "1", "--psi-n", "abc"], "--psi-n"),
    (["rf-dsm", "--psi-n", "1", "--psi-p", "3", "--m", "3", "--lam", "0"], "lam"),
    (["coeffs", "--t", "-1"], "t"),
    (["mp", "--ratio", "0"], "ratio"),
    (["mp", "--z", "1+"], "--z"),
])
def test_bad_input_exits_2_with_one_line(args, name):
    code, out, err = run(*args)
    assert code == 2
    assert err.count("\n") == 1 and "Traceback" not in err
    assert name in err


def test_nonconvergence_exits_3(monkeypatch, capsys):
    import sys

    mod = sys.modules["rmtsolve.rf_dsm"]

    def boom(**kw):
        raise ConvergenceError("Newton stalled at psi_n=1")

    monkeypatch.setattr(mod, "rf_dsm", boom)
    assert cli.main(["rf-dsm", "--psi-p", "1"]) == 3
    assert "Newton stalled" in capsys.readouterr().err


def test_derive_prints_the_system():
    code, out, _ = run("derive", "rf-dsm", "--latex")
    assert code == 0 and "\\psi_p" in out and "\\mathrm{test\\_error}" in out and out.startswith("\\documentclass")
    code, out, _ = run("derive", "rf-dsm")
    assert code == 0 and "k0 = 1/(1+delta0)" in out


def test_help_states_conventions():
    code, out, _ = run("rf-dsm", "--help")
    assert code == 0 and "e^{-2t}" in out


def test_version_and_module_entry_point(capsys):
    import rmtsolve

    with pytest.raises(SystemExit) as e:
        cli.main(["--version"])
    assert e.value.code == 0 and capsys.readouterr().out.strip() == f"rmtsolve {rmtsolve.__version__}"
    run = subprocess.run([sys.executable, "-m", "rmtsolve", "rf-dsm", "--psi-p", "2", "--json"],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0 and json.loads(run.stdout)["params"]["psi_p"] == 2.0


def test_lazy_names_are_listed_by_dir():
    import rmtsolve

    assert set(rmtsolve.__all__) <= set(dir(rmtsolve))
