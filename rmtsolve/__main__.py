"""``python -m rmtsolve``: the command line (see ``rmtsolve --help``)."""
from .cli import main

raise SystemExit(main())
