"""neuroferry: move neuroscience data into object storage with its metadata."""

__version__ = "0.1.0"

__all__ = ["__version__"]
