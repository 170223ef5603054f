"""Suites: the interface and registry in `base`, one sub-package per suite family (`demo_vision`, `clip`), and the
evaluation loop every suite shares (`evaluation`)."""
