"""The sidecar: one collector per source, the normalizing transform, and the HTTP server."""
