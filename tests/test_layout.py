"""Package layout: modules import each other by public names only, and never in a circle."""
import ast
import pathlib

import rmtsolve

ROOT = pathlib.Path(rmtsolve.__file__).resolve().parent


def _module_name(path: pathlib.Path) -> str:
    rel = path.relative_to(ROOT.parent).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def _imports():
    """(importer, imported module, names) for every relative import inside the package."""
    for path in ROOT.rglob("*.py"):
        mod = _module_name(path)
        package = mod if path.name == "__init__.py" else mod.rsplit(".", 1)[0]
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
                yield mod, target, [a.name for a in node.names]


def test_no_private_names_across_modules():
    private = [(m, t, n) for m, t, names in _imports() for n in names
               if n.startswith("_") and n not in ("__version__",)
               and not (t == "rmtsolve._generated" or t.startswith("rmtsolve._generated."))]
    assert private == []


def test_no_import_circles():
    graph = {}
    for m, t, names in _imports():
        # "from . import x" names a submodule when one exists
        targets = [f"{t}.{n}" for n in names if (ROOT.parent / (f"{t}.{n}".replace(".", "/") + ".py")).exists()
                   or (ROOT.parent / f"{t}.{n}".replace(".", "/")).is_dir()] or [t]
        graph.setdefault(m, set()).update(x for x in targets if x != m)
    # a package's __init__ re-exporting its modules is not a circle through the package itself
    graph = {m: {t for t in ts if not m.startswith(t + ".")} for m, ts in graph.items()}
    state = {}

    def visit(node, stack):
        state[node] = "open"
        for nxt in graph.get(node, ()):
            if state.get(nxt) == "open":
                raise AssertionError("import circle: " + " -> ".join(stack[stack.index(nxt):] + [nxt]))
            if nxt not in state:
                visit(nxt, stack + [nxt])
        state[node] = "done"

    for node in list(graph):
        if node not in state:
            visit(node, [node])
    assert "rmtsolve.rf_dsm.solver" in graph  # the walk saw the RF-DSM subpackage
