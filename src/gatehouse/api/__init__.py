"""HTTP layer: routers translate HTTP to service calls, and errors to problem details."""
