"""Built-in filters: ``request_log``."""
