"""`rmtsolve sweep` (ranges, product grid, CSV/JSONL, interrupt safety) and `rmtsolve figure`."""
import csv
import io
import json
import subprocess
import sys

import numpy as np
import pytest

from rmtsolve import ParameterError, ldm, rf_dsm, sweep
from rmtsolve import cli


def run(*args):
    p = subprocess.run([sys.executable, "-m", "rmtsolve.cli", *args], capture_output=True, text=True)
    return p.returncode, p.stdout, p.stderr


def test_range_parsing():
    assert np.allclose(sweep.parse_value("x", "1:3:3"), [1, 2, 3])
    assert np.allclose(sweep.parse_value("x", "0.1:10:3:log"), [0.1, 1, 10])
    assert np.allclose(sweep.parse_value("x", "2.5"), [2.5])
    for bad in ("1:2", "1:2:0", "a:b:3", "-1:2:3:log", "1:2:3:lin", "1:inf:3"):
        with pytest.raises(ParameterError):
            sweep.parse_value("x", bad)


def test_sweep_csv_rows_equal_single_calls(tmp_path):
    out = tmp_path / "grid.csv"
    code, _, err = run("sweep", "rf-dsm", "--psi-n", "0.5:2:4", "--psi-p", "0.2:5:5:log", "--m", "1:3:2",
                       "--lam", "1e-2", "--csv", str(out), "--quiet")
    assert code == 0, err
    rows = list(csv.DictReader(open(out)))
    assert len(rows) == 4 * 5 * 2
    assert list(rows[0])[:5] == ["psi_n", "psi_p", "m", "t", "lam"]
    assert {"test_error", "train_error", "score_error", "gap"} <= set(rows[0])
    for r in rows[::7]:
        single = rf_dsm(psi_n=float(r["psi_n"]), psi_p=float(r["psi_p"]), m=float(r["m"]), t=0.5, lam=1e-2)
        assert float(r["test_error"]) == pytest.approx(float(single.test_error), rel=1e-10)
        assert float(r["train_error"]) == pytest.approx(float(single.train_error), rel=1e-10, abs=1e-14)


def test_sweep_jsonl_to_file(tmp_path):
    out = tmp_path / "grid.jsonl"
    code, _, err = run("sweep", "rf-dsm", "--psi-p", "0.5:2:3", "--m", "inf", "--jsonl", str(out), "--quiet")
    assert code == 0, err
    rows = [json.loads(line) for line in open(out)]
    assert len(rows) == 3 and rows[0]["m"] == "inf" and rows[0]["test_error"] > 0
    code, out_csv, err = run("sweep", "rf-dsm", "--psi-p", "1", "--m", "2:4:2", "--quiet")
    assert code == 0, err
    assert [r["m"] for r in csv.DictReader(io.StringIO(out_csv))] == ["2", "4"]


def test_sweep_comment_line_names_the_version_and_the_command(tmp_path):
    import rmtsolve

    out = tmp_path / "grid.csv"
    args = ["sweep", "ldm", "--n-over-d", "2:4:2", "--lam", "0.01", "--csv", str(out), "--quiet", "--comment"]
    code, _, err = run(*args)
    assert code == 0, err
    lines = open(out).read().splitlines()
    assert lines[0] == f"# rmtsolve {rmtsolve.__version__}: rmtsolve " + " ".join(args)
    assert lines[1].startswith("n_over_d,lam,tau,") and len(lines) == 4
    # without the flag the header is the first line (the conventions' CSV contract)
    code, plain, err = run(*args[:6], "--quiet")
    assert code == 0 and plain.splitlines()[0] == lines[1] and plain.splitlines()[1:] == lines[2:]
    pd = pytest.importorskip("pandas")
    assert pd.read_csv(out, comment="#")["n_over_d"].tolist() == [2.0, 4.0]
    code, _, err = run("sweep", "ldm", "--n-over-d", "2", "--comment", "--jsonl", str(tmp_path / "x.jsonl"))
    assert code == 2 and "--comment" in err and err.count("\n") == 1


def test_sweep_bad_range_exits_2():
    code, _, err = run("sweep", "rf-dsm", "--psi-p", "1:2")
    assert code == 2 and "psi_p" in err and err.count("\n") == 1


def test_interrupted_sweep_leaves_a_valid_file():
    calls = []

    def solve(**cols):
        if calls:
            raise KeyboardInterrupt
        calls.append(1)
        return {"y": cols["a"] * 2}

    fh = io.StringIO()
    with pytest.raises(KeyboardInterrupt):
        sweep.run(solve, {"a": np.arange(10.0)}, ["y"], fh, "csv", block=4)
    rows = list(csv.DictReader(io.StringIO(fh.getvalue())))
    assert [float(r["y"]) for r in rows] == [0, 2, 4, 6]


def test_figure_without_matplotlib_says_how_to_install(monkeypatch, capsys, tmp_path):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    assert cli.main(["figure", "rf-dsm-phase-diagram", "--out", str(tmp_path / "x.png")]) == 2
    assert "rmtsolve[plot]" in capsys.readouterr().err


def test_unknown_figure_exits_2(tmp_path):
    code, _, err = run("figure", "nope", "--out", str(tmp_path / "x.png"))
    assert code == 2 and "NAME" in err


def test_phase_diagram_png(tmp_path):
    pytest.importorskip("matplotlib")
    out, data = tmp_path / "pd.png", tmp_path / "pd.csv"
    code, _, err = run("figure", "rf-dsm-phase-diagram", "--out", str(out), "--csv", str(data))
    assert code == 0, err
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rows = list(csv.DictReader(open(data)))
    assert len(rows) == 3 * 60 * 60 and float(rows[0]["gap"]) >= 0


def test_sweep_ldm_rows_equal_single_calls():
    code, out, err = run("sweep", "ldm", "--n-over-d", "0.5:2:3", "--lam", "0:1e-2:2", "--d", "100:200:2",
                         "--spectrum", "powerlaw:0.5", "--T", "200", "--quiet")
    assert code == 0, err
    rows = list(csv.DictReader(io.StringIO(out)))
    assert len(rows) == 12 and list(rows[0])[-8:-6] == ["d", "spectrum"]
    for r in rows:
        kw = dict(n_over_d=float(r["n_over_d"]), lam=float(r["lam"]), d=int(r["d"]), T=200,
                  spectrum="powerlaw:0.5")
        if r["converged"] == "false":
            with pytest.raises(ParameterError):
                ldm(**kw)
            continue
        single = ldm(**kw)
        for k in ("kl_gen_data_per_dim", "kl_data_gen_per_dim", "span_fraction"):
            assert float(r[k]) == pytest.approx(float(getattr(single, k)), rel=1e-10)


def test_sweep_through_divergent_points_writes_nan_rows():
    # Sweeps behave like on_error="nan": divergent ridgeless points (p = n m) are NaN rows with
    # converged false, every other row is solved.
    code, out, err = run("sweep", "rf-dsm", "--psi-n", "0.5:2:3", "--psi-p", "0.5:2:3", "--lam", "0", "--quiet")
    assert code == 0, err
    rows = list(csv.DictReader(io.StringIO(out)))
    diag = [r for r in rows if r["psi_n"] == r["psi_p"]]
    assert len(diag) == 3 and all(r["test_error"] == "nan" and r["converged"] == "false" for r in diag)
    off = [r for r in rows if r["psi_n"] != r["psi_p"]]
    assert all(float(r["test_error"]) < 10 and r["converged"] == "true" for r in off)
    code, out, err = run("sweep", "ldm", "--n-over-d", "0.5:2:2", "--lam", "0", "--quiet")
    assert code == 0, err
    rows = list(csv.DictReader(io.StringIO(out)))
    assert rows[0]["kl_gen_data_per_dim"] == "nan" and rows[0]["converged"] == "false"
    assert rows[0]["spectrum"] == "isotropic"
    assert float(rows[1]["kl_gen_data_per_dim"]) < 1 and rows[1]["converged"] == "true"


def test_figure_api_returns_a_figure_leaves_the_backend_and_saves_by_extension(tmp_path):
    matplotlib = pytest.importorskip("matplotlib")
    from rmtsolve import figures

    backend = matplotlib.get_backend()
    out_svg, out_pdf = tmp_path / "pd.svg", tmp_path / "pd.pdf"
    fig = figures.rf_dsm_phase_diagram(out_svg, n=6)
    figures.rf_dsm_phase_diagram(out_pdf, n=6)
    assert type(fig).__name__ == "Figure" and matplotlib.get_backend() == backend
    assert out_svg.read_text().lstrip().startswith("<?xml") and out_pdf.read_bytes()[:4] == b"%PDF"
    pyplot = sys.modules.get("matplotlib.pyplot")
    assert pyplot is None or not pyplot.get_fignums()  # nothing registered with pyplot
    labels = [ax.get_xlabel() for ax in fig.axes] + [ax.get_ylabel() for ax in fig.axes]
    assert all("_" not in lab or "$" in lab for lab in labels)  # mathematical notation, no code names


def test_figure_png_is_300_dpi_and_bad_extension_exits_2(tmp_path):
    pytest.importorskip("matplotlib")
    from rmtsolve import figures

    out = tmp_path / "x.png"
    figures.rf_dsm_phase_diagram(out, n=6)
    data = out.read_bytes()
    # pHYs chunk: pixels per metre, 300 dpi = 11811 px/m
    i = data.index(b"pHYs")
    assert int.from_bytes(data[i + 4:i + 8], "big") == 11811
    code, _, err = run("figure", "ldm-kl", "--out", str(tmp_path / "x.jpg"))
    assert code == 2 and "--out" in err and len(err.strip().splitlines()) == 1


def test_figure_progress_reports_each_simulation(monkeypatch, tmp_path, capsys):
    pytest.importorskip("matplotlib")
    from rmtsolve import figures

    monkeypatch.setenv("RMTSOLVE_CACHE", str(tmp_path))
    monkeypatch.setattr(figures, "_cached_simulation", lambda note, **kw: (note("psi_p=%s" % kw["psi_p"]), {
        "test_error": 1.0, "train_error": 0.5, "test_error_stderr": 0.0, "train_error_stderr": 0.0})[1])
    figures.rf_dsm_learning_curves(tmp_path / "lc.png", progress=True)
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 15 and err[-1].startswith("rmtsolve figure rf-dsm-learning-curves: simulation 15/15")
