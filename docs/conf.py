"""Sphinx configuration: ``python -m sphinx -W -b html docs <out>`` (extra ``docs``).

The model pages (``docs/models/*.md``) are written here, at build time, from the derivation
documents the package ships (:mod:`rmtsolve.derive`), so they always match the installed code.
"""
import pathlib

import rmtsolve
from rmtsolve import derive

project = "rmtsolve"
author = "the rmtsolve developers"
release = version = rmtsolve.__version__
extensions = ["myst_parser", "sphinx.ext.autodoc", "sphinx.ext.napoleon", "sphinx.ext.mathjax"]
source_suffix = {".md": "markdown", ".rst": "restructuredtext"}
exclude_patterns = ["_build"]
html_theme = "pydata_sphinx_theme"
html_title = f"rmtsolve {release}"
html_theme_options = {"navigation_with_keys": False}
myst_heading_anchors = 3
napoleon_numpy_docstring = True
napoleon_google_docstring = False
autodoc_member_order = "bysource"
autodoc_typehints = "description"
suppress_warnings = ["myst.header"]  # conventions.md keeps the numbering of its own sections

_MODELS = {"rf_dsm": ("rf-dsm", "RF-DSM: the derivation"), "ldm": ("ldm", "Linear diffusion models: the derivation"),
           "mp": ("mp", "Marchenko-Pastur laws: the derivation")}
_out = pathlib.Path(__file__).parent / "models"
_out.mkdir(exist_ok=True)
for _name, (_model, _title) in _MODELS.items():
    _page = ("<!-- written by docs/conf.py from rmtsolve.derive; do not edit -->\n"
             + derive.markdown(_model, title=_title))
    _path = _out / f"{_name}.md"
    if not _path.exists() or _path.read_text() != _page:
        _path.write_text(_page)
