"""``python -m corral ...``: the command line, for when the ``corral`` script is not on PATH."""

from corral.cli.app import main

main()
