"""The request handler shared by both adapters (`handler.LogtoCore`: one flow per request), the
routes under the base path, and their pages and redirects."""
