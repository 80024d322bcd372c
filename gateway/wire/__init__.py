"""Wire codecs shared by the ingress dialects and the backends that speak the same format.

A backend must not import a dialect, nor a dialect a backend; what both need
(the Open Responses item shapes, typed reads of JSON fields) lives here, and
depends only on the canonical model (``gateway.invocation``) and the error tree.
"""
