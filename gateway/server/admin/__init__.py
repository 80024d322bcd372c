"""The admin API under ``/admin``: keys, limits, balances, the ledger and the audit log.

Absent unless ``admin.token_env`` is configured. Then it is either a sub-application
of the public one (no ``admin.listen``), or served by a listener of its own
(``start_admin_site``), and then only there. Every request must carry
``Authorization: Bearer <admin token>``; the token is compared in constant time
(SHA-256 digests through ``hmac.compare_digest``, so not even its length leaks)
and never logged. Bodies are JSON; answers are what the matching ``gateway ...
--json`` command prints. Errors go through the error middleware. Every change
(create, revoke, rotate, credit, limits) is audited as ``admin-api:<client address>``.

The package: ``site`` (the sub-application and the admin listener), ``token``
(the bearer check), ``table`` (every operation, for the router and
``/openapi.json``), the handlers by what they manage (``keys``, ``accounts``,
``audit``, ``runtime``), and ``request`` (reading and checking their input).
"""

from gateway.server.admin.site import (
    admin_token,
    create_admin_app,
    create_admin_site_app,
    start_admin_site,
)
from gateway.server.admin.table import ADMIN, ADMIN_PREFIX

__all__ = [
    "ADMIN",
    "ADMIN_PREFIX",
    "admin_token",
    "create_admin_app",
    "create_admin_site_app",
    "start_admin_site",
]
