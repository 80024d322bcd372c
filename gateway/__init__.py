"""An authenticated, metered edge gateway for AI agent APIs."""

__version__ = "0.1.0"
