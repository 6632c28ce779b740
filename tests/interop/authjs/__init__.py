"""Interop with the real Auth.js (@auth/core, @auth/express), pinned by package-lock.json here."""
