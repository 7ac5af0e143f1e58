"""Declarative benchmark suites (``*.toml``, loaded by :mod:`bkbench.harness.suites`; see docs/suites.md)."""
