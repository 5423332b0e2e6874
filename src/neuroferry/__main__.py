"""``python -m neuroferry`` is ``ferry``."""

from neuroferry.cli import main

main()
