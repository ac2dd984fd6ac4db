"""The MCP layer: one module per toolset, each exposing ``register(server, app)``."""
