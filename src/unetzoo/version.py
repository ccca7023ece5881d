"""The package's version: one place, imported by what records it (model folders, reports)
without importing the package's public facade."""

__version__ = "0.1.0"
