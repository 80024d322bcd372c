"""The operator console: keys, balances and spend in a browser, on the admin listener.

Served at ``/console/`` by the admin listener only (``admin.listen``), so it exists
only when the admin API does, and never on the public listener. Server-rendered
HTML (``html``: every value escaped) with SVG charts (``charts``) and one small
script; sign-in with the admin token, sessions and CSRF (``session``); pages by
what they show (``overview``, ``keys``, ``routes``), the recent traffic they read
(``live``), and the application that mounts them (``app``).
"""

from gateway.server.console.app import PREFIX, create_console_app

__all__ = ["PREFIX", "create_console_app"]
