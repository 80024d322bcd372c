"""Open Responses conversation state, kept by the gateway for every backend: stored
responses and their context (``context``), and background runs that no client holds,
resumed and cancelled from any process (``runs``). No HTTP here: the front door
(``gateway.server.responses``) turns what these return into answers."""
