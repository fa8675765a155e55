"""The ahtwist package version (single source for setup.cfg and the status action)."""

__version__ = "0.1.0"
