"""sympy derivations of every equation rmtsolve solves.

Each module derives its system from definitions and exposes ``build()``, returning a
:class:`derivations._codegen.Module` (expressions to compile plus the LaTeX/plain text
that ``rmtsolve derive`` prints).  ``python -m derivations.build`` writes the generated
code into ``rmtsolve/_generated``; ``tests/test_generated.py`` checks it is up to date.
"""
