"""The ``ferry`` command: a thin shell over the library."""

from neuroferry.cli._app import app, main

__all__ = ["app", "main"]
