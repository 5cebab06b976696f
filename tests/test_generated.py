"""The numeric code is generated from the sympy derivations: it must be up to date."""
import pathlib

import pytest

GENERATED = pathlib.Path(__file__).resolve().parent.parent / "rmtsolve" / "_generated"
NAMES = sorted(p.stem for p in GENERATED.glob("*.py") if p.stem != "__init__")


@pytest.mark.parametrize("name", NAMES)
def test_generated_module_matches_its_derivation(name):
    from derivations.build import generate

    assert (GENERATED / f"{name}.py").read_text() == generate(name), (
        f"rmtsolve/_generated/{name}.py is stale: run `python -m derivations.build {name}`")


def test_every_derivation_is_generated():
    derivs = {p.stem for p in (GENERATED.parent.parent / "derivations").glob("*.py")
              if not p.stem.startswith("_") and p.stem != "build"}
    assert derivs <= set(NAMES)


def test_import_does_not_load_sympy():
    import subprocess
    import sys

    code = "import sys, rmtsolve, rmtsolve.rf_dsm; print('sympy' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
