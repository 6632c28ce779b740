"""End-to-end tests: the example apps under their real servers, signing in with the real oidc-provider."""
