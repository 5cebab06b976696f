"""The derivation documents that ``rmtsolve derive`` prints.

Each sympy derivation (``derivations/`` in the source tree) records, while it runs, its steps
(the step's docstring as prose and the equations it establishes, each identity asserted there),
the final system the solvers evaluate, and a table that defines every symbol in words (the
derivation refuses to show an equation with an undefined symbol).  The generated modules ship
that record as plain strings; this module renders it as a complete LaTeX document (compiles
with pdflatex), as MyST Markdown (the model pages of the Sphinx docs) or as plain text.

>>> from rmtsolve import derive
>>> tex = derive.latex("mp")
>>> tex.startswith("\\documentclass")
True
"""
from __future__ import annotations

import importlib
import re

MODELS = {"rf-dsm": ("rf_dsm", "rf_dsm_flow"), "ldm": ("ldm",), "mp": ("mp",)}

_PREAMBLE = r"""\documentclass[11pt]{article}
\usepackage[margin=2cm]{geometry}
\usepackage{amsmath,amssymb}
\usepackage{graphicx}
\usepackage{longtable}
\usepackage[hidelinks]{hyperref}
\setlength{\parindent}{0pt}
\setlength{\parskip}{0.5em}
\sloppy
% an equation wider than the text is scaled to the text width
\newsavebox{\eqbox}
\newcommand{\fiteq}[1]{\sbox{\eqbox}{$\displaystyle #1$}%
  \ifdim\wd\eqbox>\linewidth\resizebox{\linewidth}{!}{\usebox{\eqbox}}\else\usebox{\eqbox}\fi}
"""


def documents(model: str) -> list[dict]:
    """The recorded derivation(s) of ``model`` ('rf-dsm', 'ldm' or 'mp'): dicts with title,
    intro, symbols [(name, latex, words)] and sections [{title, prose, equations}]."""
    if model not in MODELS:
        from .errors import ParameterError

        raise ParameterError("model", "one of " + ", ".join(MODELS), model)
    return [importlib.import_module("rmtsolve._generated." + name).DOCUMENT for name in MODELS[model]]


def _symbols(docs) -> list[tuple[str, str, str]]:
    seen, rows = set(), []
    for doc in docs:
        for name, tex, words in doc["symbols"]:
            if name not in seen:
                seen.add(name)
                rows.append((name, tex, words))
    return rows


def _paragraphs(prose: str) -> list[str]:
    """Blank lines, numbered items ('3.', '(b)') and bullets start a new paragraph."""
    out: list[str] = []
    for line in prose.splitlines():
        if not line.strip():
            out.append("")
        elif not out or re.match(r"\s*(\d+\.|\([a-z]\)|- )\s", line):
            out.append(line.strip())
        else:
            out[-1] = (out[-1] + " " + line.strip()).strip()
    return [p for p in out if p]


# -- LaTeX -----------------------------------------------------------------------------------
_TEX = {"\\": r"\textbackslash{}", "{": r"\{", "}": r"\}", "_": r"\_", "^": r"\^{}", "#": r"\#",
        "$": r"\$", "%": r"\%", "&": r"\&", "~": r"\~{}", "<": r"\textless{}", ">": r"\textgreater{}",
        "|": r"\textbar{}"}


def _tex(text: str) -> str:
    text = text.replace("``", "")
    return "".join(_TEX.get(ch, ch) if ord(ch) < 128 else "?" for ch in text)


def _tex_equations(eqs) -> list[str]:
    lines = []
    for e in eqs:
        head = r"\textbf{" + _tex(e["label"]) + "}" if e["label"] else ""
        if e.get("note"):
            head += (" " if head else "") + "(" + _tex(e["note"]) + ")"
        if head:
            lines.append(head + "\n")
        lines.append(r"\begin{center}\fiteq{" + e["latex"] + r"}\end{center}" + "\n")
    return lines


def latex(model: str) -> str:
    """A complete LaTeX document: preamble, the symbols defined in words, every derivation step
    as the sympy derivation performs it, and the final system."""
    from . import __version__

    docs = documents(model)
    out = [_PREAMBLE, r"\title{" + _tex(docs[0]["title"]) + "}\n",
           r"\author{rmtsolve " + _tex(__version__) + r" (\texttt{rmtsolve derive " + model + r" --latex})}" + "\n",
           r"\date{}" + "\n", r"\begin{document}" + "\n", r"\maketitle" + "\n"]
    out += [_tex(p) + "\n\n" for p in _paragraphs(docs[0]["intro"])]
    out.append(r"\section*{Symbols}" + "\n" + r"\begin{longtable}{p{0.18\linewidth}p{0.22\linewidth}p{0.52\linewidth}}"
               + "\n" + r"\textbf{symbol} & \textbf{name in code} & \textbf{meaning} \\ \hline" + "\n")
    out += [f"${tex}$ & \\texttt{{{_tex(name)}}} & {_tex(words)} \\\\\n" for name, tex, words in _symbols(docs)]
    out.append(r"\end{longtable}" + "\n")
    for k, doc in enumerate(docs):
        sub = "section"
        if k:
            out.append(r"\section*{" + _tex(doc["title"]) + "}\n")
            out += [_tex(p) + "\n\n" for p in _paragraphs(doc["intro"])]
            sub = "subsection"
        for sec in doc["sections"]:
            title = ("Final system: " if sec.get("system") else "") + sec["title"]
            out.append(f"\\{sub}*{{{_tex(title)}}}\n")  # unnumbered: the titles carry the step numbers
            out += [_tex(p) + "\n\n" for p in _paragraphs(sec["prose"])]
            out += _tex_equations(sec["equations"])
    out.append(r"\end{document}" + "\n")
    return "".join(out)


# -- Markdown (MyST) -------------------------------------------------------------------------
def _md(text: str) -> str:
    text = text.replace("``", "`")
    return re.sub(r"([\\*_\[\]<>|#$])", r"\\\1", text)


def markdown(model: str, title: str | None = None) -> str:
    """The same document as MyST Markdown (math through the ``{math}`` directive and role)."""
    docs = documents(model)
    out = [f"# {title or docs[0]['title']}\n\n"]
    out += [_md(p) + "\n\n" for p in _paragraphs(docs[0]["intro"])]
    out.append("## Symbols\n\n| symbol | name in code | meaning |\n|---|---|---|\n")
    for name, tex, words in _symbols(docs):
        out.append(f"| {{math}}`{tex}` | `{name}` | {_md(words)} |\n")
    out.append("\n")
    for k, doc in enumerate(docs):
        level = "##"
        if k:
            out.append(f"## {doc['title']}\n\n")
            out += [_md(p) + "\n\n" for p in _paragraphs(doc["intro"])]
            level = "###"
        for sec in doc["sections"]:
            out.append(f"{level} {'Final system: ' if sec.get('system') else ''}{sec['title']}\n\n")
            out += [_md(p) + "\n\n" for p in _paragraphs(sec["prose"])]
            for e in sec["equations"]:
                head = f"**{_md(e['label'])}**" if e["label"] else ""
                if e.get("note"):
                    head += (" " if head else "") + "(" + _md(e["note"]) + ")"
                if head:
                    out.append(head + "\n\n")
                out.append("```{math}\n" + e["latex"] + "\n```\n\n")
    return "".join(out)


# -- plain text ------------------------------------------------------------------------------
def text(model: str) -> str:
    """The same document in plain text (equations as sympy prints them, ``lhs = rhs``)."""
    docs = documents(model)
    out = [docs[0]["title"] + "\n" + "=" * len(docs[0]["title"]) + "\n\n", docs[0]["intro"] + "\n\n", "Symbols\n"]
    out += [f"  {name}: {words}\n" for name, _, words in _symbols(docs)]
    for k, doc in enumerate(docs):
        if k:
            out.append(f"\n{doc['title']}\n{'=' * len(doc['title'])}\n\n{doc['intro']}\n")
        for sec in doc["sections"]:
            title = ("Final system: " if sec.get("system") else "") + sec["title"]
            out.append(f"\n{title}\n{'-' * len(title)}\n")
            if sec["prose"]:
                out.append(sec["prose"] + "\n")
            for e in sec["equations"]:
                label = f"{e['label']}: " if e["label"] else ""
                note = f"   ({e['note']})" if e.get("note") else ""
                out.append(f"  {label}{e['text']}{note}\n")
    return "".join(out)
