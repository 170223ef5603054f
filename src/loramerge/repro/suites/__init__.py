"""Suites: one sub-package per suite family behind the interface in `base`."""
