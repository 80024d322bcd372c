"""The HTTP side: the aiohttp application, its middlewares and handlers."""
