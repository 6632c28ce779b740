"""OpenID Connect as sans-I/O flows: the provider's metadata and signing keys, token
verification (joserfc decides what a valid JWS is), the token endpoint, and refresh-token
grants (single flight in a process, coordinated across processes)."""
