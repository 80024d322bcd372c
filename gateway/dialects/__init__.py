"""Ingress dialects: each parses its requests into an ``AgentInvocation`` and
renders canonical events (and errors) in its own wire format."""
