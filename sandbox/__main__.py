"""`python -m sandbox`: the watershed demo (see sandbox.cli)."""

from sandbox.cli import main

raise SystemExit(main(prog="python -m sandbox"))
