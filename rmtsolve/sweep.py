"""Parameter sweeps: ranges, the product grid, streaming CSV / JSON-lines output.

A numeric flag is a single value or a range ``start:stop:count`` (linear) or
``start:stop:count:log`` (geometric).  The grid is the product of all ranges, solved in
blocks of vectorised calls; every finished row is written and flushed at once, so an
interrupted sweep leaves a valid file with the rows done.
"""
from __future__ import annotations

import csv
import json
import math
import sys
import time

import numpy as np

from ._resources import check_memory
from .errors import ParameterError

BLOCK = 2500  # grid points per vectorised solve (progress granularity)
MAX_POINTS = 10**8  # grid columns are held in memory (8 bytes per value and column)


def parse_value(name: str, text: str, *, integer: bool = False, allow_inf: bool = False) -> np.ndarray:
    """One value or a range ``start:stop:count[:log]`` as a 1-d array."""
    parts = str(text).split(":")
    try:
        if len(parts) == 1:
            vals = np.array([float(parts[0])])
        elif len(parts) in (3, 4):
            start, stop, count = float(parts[0]), float(parts[1]), int(parts[2])
            if count < 1 or not (np.isfinite(start) and np.isfinite(stop)):
                raise ValueError
            if count > MAX_POINTS:
                raise OverflowError
            if len(parts) == 4:
                if parts[3] != "log" or start <= 0 or stop <= 0:
                    raise ValueError
                vals = np.geomspace(start, stop, count)
            else:
                vals = np.linspace(start, stop, count)
        else:
            raise ValueError
    except ValueError:
        raise ParameterError(name, "a number or a range start:stop:count[:log] with finite start, stop "
                             "(log needs start, stop > 0)", text) from None
    except OverflowError:
        raise ParameterError(name, f"a range of at most {MAX_POINTS:,} values", text) from None
    if integer and np.any(np.isfinite(vals) & (vals != np.round(vals))):
        # never round silently: the single-point commands reject a non-integer m, T or d too
        raise ParameterError(name, "integers (a range start:stop:count must land on integers)",
                             float(vals[np.isfinite(vals) & (vals != np.round(vals))][0]))
    if np.any(np.isnan(vals) | (vals == -np.inf)) or (not allow_inf and not np.all(np.isfinite(vals))):
        raise ParameterError(name, "finite" + (" or inf" if allow_inf else ""), text)
    return vals


def product_grid(ranges: dict) -> dict:
    """Columns of the product grid, first parameter varying slowest."""
    names = list(ranges)
    size = int(np.prod([len(ranges[n]) for n in names], dtype=float)) if names else 0
    if size > MAX_POINTS:
        raise ParameterError(", ".join(names), f"ranges whose grid has at most {MAX_POINTS:,} points",
                             f"{size:.3g} points")
    check_memory(", ".join(names), 8.0 * size * (len(names) + 1) * 2, f"a grid of {size:,} points")
    mesh = np.meshgrid(*(ranges[n] for n in names), indexing="ij")
    return {n: m.ravel() for n, m in zip(names, mesh)}


class _Writer:
    def __init__(self, fh, fmt: str, columns: list[str], integer_columns=()):
        self.fh, self.fmt, self.columns = fh, fmt, columns
        self.integer = set(integer_columns)
        if fmt == "csv":
            self.csv = csv.writer(fh)
            self.csv.writerow(columns)
            fh.flush()

    def rows(self, cols: dict):
        from ._output import jsonable

        n = len(next(iter(cols.values())))
        for i in range(n):
            row = [_as_int(cols[c][i]) if c in self.integer else cols[c][i] for c in self.columns]
            if self.fmt == "csv":
                self.csv.writerow([_csv_cell(v) for v in row])
            else:
                self.fh.write(json.dumps(jsonable(dict(zip(self.columns, row)))) + "\n")
        self.fh.flush()


def _as_int(v):
    return int(v) if np.isfinite(v) else v


def _csv_cell(v):
    if isinstance(v, (bool, np.bool_)):
        return "true" if v else "false"
    if isinstance(v, (str, int)):
        return str(v)
    f = float(v)
    if math.isinf(f):
        return "inf" if f > 0 else "-inf"
    return repr(f)


class _Progress:
    def __init__(self, total: int, enabled: bool):
        self.total, self.enabled, self.t0 = total, enabled, time.perf_counter()

    def update(self, done: int):
        if self.enabled:
            el = time.perf_counter() - self.t0
            sys.stderr.write(f"\r{done}/{self.total} points  {el:.1f} s")
            sys.stderr.flush()

    def close(self):
        if self.enabled:
            sys.stderr.write("\n")


def run(solve, ranges: dict, outputs: list[str], fh, fmt: str = "csv", progress: bool = False,
        block: int = BLOCK, integer_columns=(), constants: dict | None = None) -> int:
    """Solve ``solve(**columns) -> dict of output arrays`` over the grid, streaming rows.

    ``constants``: non-numeric parameters (activation, spectrum) written as columns after the
    ranges.  Returns the number of rows written.  KeyboardInterrupt stops after the last
    complete block, leaving a valid file behind.
    """
    grid = product_grid(ranges)
    names = list(ranges)
    constants = constants or {}
    n = len(grid[names[0]]) if names else 0
    writer = _Writer(fh, fmt, names + list(constants) + outputs, integer_columns)
    bar = _Progress(n, progress)
    done = 0
    try:
        for start in range(0, n, block):
            cols = {k: v[start:start + block] for k, v in grid.items()}
            out = solve(**cols)
            shape = cols[names[0]].shape
            writer.rows(cols | {k: [v] * shape[0] for k, v in constants.items()}
                        | {k: np.broadcast_to(np.asarray(out[k]), shape) for k in outputs})
            done += len(cols[names[0]])
            bar.update(done)
    finally:
        bar.close()
    return done


def open_output(csv_path, jsonl_path):
    if csv_path and jsonl_path:
        raise ParameterError("--csv/--jsonl", "one of them, not both", None)
    path, fmt, flag = (jsonl_path, "jsonl", "--jsonl") if jsonl_path else (csv_path, "csv", "--csv")
    if not path:
        return sys.stdout, "csv"
    try:
        return open(path, "w", newline=""), fmt
    except OSError as exc:
        raise ParameterError(flag, f"a writable file ({exc.strerror})", path) from None

