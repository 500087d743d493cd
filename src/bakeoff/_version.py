"""The package version, in one place (imported by the store's run records and `--version`)."""

__version__ = "0.1.0"
