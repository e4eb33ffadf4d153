"""``python -m polylogue`` runs the command line."""

from polylogue.cli import main

main()
