"""Interop tests against a real oidc-provider (see provider.py)."""
