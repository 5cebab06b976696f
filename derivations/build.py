"""Write the generated numeric code: ``python -m derivations.build [--check]``."""
from __future__ import annotations

import importlib
import pathlib
import sys

MODULES = ("mp", "rf_dsm", "rf_dsm_flow", "ldm")
OUT = pathlib.Path(__file__).resolve().parent.parent / "rmtsolve" / "_generated"


def generate(name: str) -> str:
    mod = importlib.import_module(f"derivations.{name}")
    return mod.build().source()


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    check = "--check" in argv
    names = [a for a in argv if not a.startswith("--")] or [
        n for n in MODULES if (pathlib.Path(__file__).parent / f"{n}.py").exists()
    ]
    stale = []
    for name in names:
        src = generate(name)
        path = OUT / f"{name}.py"
        if check:
            if not path.exists() or path.read_text() != src:
                stale.append(name)
        else:
            path.write_text(src)
            print(f"wrote {path}")
    if stale:
        print("stale generated modules: " + ", ".join(stale))
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
