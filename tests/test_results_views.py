"""Result views: short repr, notebook HTML, pandas and xarray (conventions section 3.1)."""
import numpy as np
import pytest

from rmtsolve import ldm, rf_dsm

GRID = dict(psi_n=np.array([0.5, 1.0, 2.0])[:, None], psi_p=np.geomspace(0.5, 4, 4), m=3, t=0.3, lam=1e-2)


def test_repr_is_short_and_names_the_outputs():
    one = rf_dsm(**(GRID | dict(psi_n=1.0, psi_p=2.0)))
    text = repr(one)
    assert text.startswith("RFDSMResult(test_error=") and "k0=" in text and len(text) < 400
    grid = repr(rf_dsm(**GRID))
    assert "shape=(3, 4)" in grid and "converged=12/12" in grid and len(grid) < 800


def test_as_dict_has_the_order_parameters():
    d = rf_dsm(**(GRID | dict(psi_n=1.0, psi_p=2.0))).as_dict()
    assert {"k0", "k1", "G"} <= set(d) and 0 < float(d["k0"]) <= 1


def test_to_pandas_one_row_per_point_parameters_then_outputs():
    pytest.importorskip("pandas")
    r = rf_dsm(**GRID, spectrum=[0.0, 0.0, 1.0, 3.0])
    df = r.to_pandas()
    assert len(df) == 12 and list(df.columns[:5]) == ["psi_n", "psi_p", "m", "t", "lam"]
    assert df.columns.get_loc("test_error") > df.columns.get_loc("spectrum")
    assert "test_error_by_eigenvalue[3.0]" in df.columns
    # row order is C order over the grid, and each row equals the single call
    row = df.iloc[7]
    single = rf_dsm(psi_n=row.psi_n, psi_p=row.psi_p, m=3, t=0.3, lam=1e-2, spectrum=[0.0, 0.0, 1.0, 3.0])
    assert row.test_error == pytest.approx(float(single.test_error), rel=1e-10)
    assert row["test_error_by_eigenvalue[0.0]"] == pytest.approx(float(single.test_error_by_eigenvalue[0]), rel=1e-10)


def test_to_xarray_names_dimensions_after_swept_parameters():
    pytest.importorskip("xarray")
    ds = rf_dsm(**GRID, spectrum=[0.0, 1.0]).to_xarray()
    assert ds.test_error.dims == ("psi_n", "psi_p")
    assert list(ds.psi_p.values) == pytest.approx(list(np.geomspace(0.5, 4, 4)))
    assert ds.test_error_by_eigenvalue.dims == ("psi_n", "psi_p", "eigenvalue")
    assert float(ds.test_error.sel(psi_n=1.0, psi_p=2.0)) == pytest.approx(
        float(rf_dsm(psi_n=1.0, psi_p=2.0, m=3, t=0.3, lam=1e-2, spectrum=[0.0, 1.0]).test_error), rel=1e-10)
    assert ds.attrs["activation"] == "relu"
    lds = ldm(n_over_d=np.linspace(0.5, 2, 4), lam=0.1, d=100, T=50).to_xarray()
    assert lds.kl_gen_data_per_dim.dims == ("n_over_d",) and lds.test_error_t.dims == ("n_over_d", "step")
    assert lds.sizes["step"] == 50


def test_repr_html_is_a_table_with_a_row_cap():
    html = rf_dsm(**(GRID | dict(psi_p=np.geomspace(0.5, 4, 10))))._repr_html_()
    assert html.count("<tr>") == 21 and "10 more rows" in html
