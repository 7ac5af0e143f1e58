"""Declarative benchmark suites (``*.toml``, loaded by :mod:`bkbench.suites`; see docs/suites.md)."""
