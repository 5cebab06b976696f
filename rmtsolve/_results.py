"""Tabular views of vectorised results: a short repr, notebook HTML, pandas and xarray.

A result over a broadcast grid of parameters (``rf_dsm``, ``ldm``) mixes in
:class:`GridResult` and says which of its fields are parameters and which are outputs.  pandas
and xarray are optional (extras ``pandas`` and ``xarray``) and imported only when asked for.
"""
from __future__ import annotations

import html

import numpy as np

_HTML_ROWS = 20  # rows shown by _repr_html_ (the table says how many it left out)


class GridResult:
    """Mixin: views of a result whose outputs share one broadcast grid shape.

    Subclasses implement ``_grid_parameters()`` (name -> value; arrays broadcast to the grid,
    strings and numbers are constants), ``_grid_outputs()`` (name -> array of the grid shape)
    and ``_grid_curves()`` (name -> (array with one trailing axis, axis name, axis values)).
    """

    def _grid_parameters(self) -> dict:
        raise NotImplementedError

    def _grid_outputs(self) -> dict:
        raise NotImplementedError

    def _grid_curves(self) -> dict:
        return {}

    def _derived_parameters(self) -> tuple:
        """Parameters computed from others (never the name of a dimension)."""
        return ()

    # -- shared pieces ----------------------------------------------------------------------
    def _shape(self) -> tuple:
        return np.shape(next(iter(self._grid_outputs().values())))

    def _split_parameters(self):
        """(varying parameters as grid-shaped arrays, constants)."""
        shape = self._shape()
        varying, constant = {}, {}
        for k, v in self._grid_parameters().items():
            a = np.asarray(v)
            if a.ndim == 0 or a.dtype.kind in "USO" and a.size == 1:
                constant[k] = a.item() if a.ndim == 0 else a.ravel()[0]
            else:
                varying[k] = np.broadcast_to(a, shape)
        return varying, constant

    def _columns(self) -> dict:
        """Flat columns, one entry per grid point: parameters, outputs, curves' per-axis values."""
        varying, constant = self._split_parameters()
        size = int(np.prod(self._shape()))
        cols = {k: np.asarray(v).reshape(size) for k, v in varying.items()}
        cols.update({k: np.full(size, v, dtype=object if isinstance(v, str) else None)
                     for k, v in constant.items()})
        cols.update({k: np.asarray(v).reshape(size) for k, v in self._grid_outputs().items()})
        return cols

    # -- views ------------------------------------------------------------------------------
    def __repr__(self) -> str:
        shape = self._shape()
        outs = self._grid_outputs()
        parts = [] if not shape else [f"shape={shape}"]
        for k, v in outs.items():
            a = np.asarray(v)
            if k == "converged":
                n = int(np.sum(a.astype(bool)))
                parts.append(f"converged={bool(a)}" if not shape else f"converged={n}/{a.size}")
            elif not shape:
                parts.append(f"{k}={_short(a.item())}")
            else:
                fin = np.asarray(a, dtype=float)
                fin = fin[np.isfinite(fin)]
                parts.append(f"{k} in [{_short(fin.min())}, {_short(fin.max())}]" if fin.size else f"{k}=nan")
        return f"{type(self).__name__}({', '.join(parts)})"

    def _repr_html_(self) -> str:
        cols = self._columns()
        names = list(cols)
        size = len(next(iter(cols.values())))
        head = "".join(f"<th>{html.escape(k)}</th>" for k in names)
        body = "".join("<tr>" + "".join(f"<td>{html.escape(_short(cols[k][i]))}</td>" for k in names) + "</tr>"
                       for i in range(min(size, _HTML_ROWS)))
        more = (f"<p>{size - _HTML_ROWS} more rows: <code>to_pandas()</code> has them all.</p>"
                if size > _HTML_ROWS else "")
        return (f"<div><b>{html.escape(type(self).__name__)}</b> ({size} point{'s' if size != 1 else ''})"
                f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>{more}</div>")

    def to_pandas(self):
        """A pandas DataFrame with one row per grid point: every parameter, then every output.

        Curves along an extra axis (per eigenvalue: one column ``name[<eigenvalue>]`` each;
        per step of a sampler: left to :meth:`to_xarray`) follow the scalar outputs.  Results
        at ``dps`` digits keep their mpmath numbers (object columns).  Needs pandas
        (``pip install rmtsolve[pandas]``).
        """
        pd = _require("pandas", "pandas")
        cols = self._columns()
        size = len(next(iter(cols.values())))
        for name, (arr, axis, values) in self._grid_curves().items():
            if axis != "eigenvalue":
                continue
            flat = np.asarray(arr).reshape(size, -1)
            for j, ev in enumerate(values):
                cols[f"{name}[{float(ev)!r}]"] = flat[:, j]
        return pd.DataFrame(cols)

    def to_xarray(self):
        """An xarray Dataset over the grid.

        A grid axis along which exactly one parameter varies (and that parameter varies along
        no other axis) is a dimension named after it, with its values as coordinate; other axes
        are ``dim_0, dim_1, ...``; the remaining varying parameters are coordinates over the
        axes they span, constants are attributes.  Curves add a dimension ``eigenvalue`` or
        ``step``.  Needs xarray (``pip install rmtsolve[xarray]``).
        """
        xr = _require("xarray", "xarray")
        shape = self._shape()
        varying, constant = self._split_parameters()
        dims, coords = [], {}
        for ax, n in enumerate(shape):
            along = [k for k, v in varying.items() if k not in self._derived_parameters() and _varies_along(v, ax)]
            only = [k for k in along if not any(_varies_along(varying[k], o) for o in range(len(shape)) if o != ax)]
            if len(along) == 1 and only and along[0] not in dims:
                k = along[0]
                dims.append(k)
                coords[k] = (k, np.moveaxis(np.asarray(varying[k]), ax, 0)[(slice(None),) + (0,) * (len(shape) - 1)])
            else:
                dims.append(f"dim_{ax}")
        for k, v in varying.items():
            if k not in coords:
                coords[k] = (tuple(dims), np.asarray(v))
        data = {k: (tuple(dims), np.asarray(v)) for k, v in self._grid_outputs().items()}
        for name, (arr, axis, values) in self._grid_curves().items():
            data[name] = (tuple(dims) + (axis,), np.asarray(arr))
            coords.setdefault(axis, (axis, np.asarray(values)))
        attrs = {k: (v if isinstance(v, (str, int, float)) else str(v)) for k, v in constant.items()}
        return xr.Dataset(data, coords=coords, attrs=attrs)


class ShortRepr:
    """Mixin for dataclass results: a one-line repr of the scalar fields and the shapes of the
    arrays (dicts such as ``params`` and raw per-seed samples are left to ``as_dict()``)."""

    def __repr__(self) -> str:
        import dataclasses

        parts = []
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if v is None or isinstance(v, (dict, list, tuple)):
                continue
            if isinstance(v, str):
                parts.append(f"{f.name}={v!r}")
                continue
            a = np.asarray(v)
            parts.append(f"{f.name}={_short(a.item())}" if a.ndim == 0 else f"{f.name}=<array {a.shape}>")
        return f"{type(self).__name__}({', '.join(parts)})"


def _varies_along(a: np.ndarray, ax: int) -> bool:
    a = np.asarray(a)
    if a.shape[ax] < 2:
        return False
    first = np.take(a, [0], axis=ax)
    try:
        return not bool(np.all((a == first) | (a != a)))  # NaN equals NaN here
    except TypeError:  # mpmath objects
        return not bool(np.all(a == first))


def _short(x) -> str:
    if isinstance(x, (bool, np.bool_)):
        return str(bool(x))
    try:
        return f"{float(x):.6g}"
    except (TypeError, ValueError):
        return str(x)


def _require(module: str, extra: str):
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise ImportError(f"{module} is needed here: pip install 'rmtsolve[{extra}]'") from None


__all__ = ["GridResult", "ShortRepr"]
