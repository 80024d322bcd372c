"""Fake upstreams that speak real wire formats on loopback, scriptable per test."""
