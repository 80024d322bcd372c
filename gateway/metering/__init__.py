"""Metering: reserve before forwarding, settle exactly once after, never overspend.

- **Admission** holds the most a request can cost (its input, estimated with
  ``tokens.reserve_input``, at the input price, plus its output cap at the
  output price) and checks the key's and route's limits, in one round trip
  (``Holds.admit``). A key whose balance, minus what its requests in flight
  hold, cannot cover that gets 402; a limit gets 429 with ``Retry-After``.
- **The stream** never runs past the output cap it was admitted with: the cap
  is sent to the backend, and if a backend streams past it the gateway ends the
  answer itself with finish reason ``length``.
- **Settlement**, when the stream ends for any reason (completed, failed, or
  closed because the client went away), charges the true cost, releases the
  rest of the hold and appends the ledger entry, atomically and once per
  request, in a background task that a client disconnect cannot cancel.
- **Usage** comes from the upstream; when it never arrives it is estimated from
  what was streamed (``tokens``) and marked ``estimated``, never zero once
  output was delivered.
- **Leases**: each hold has a lease that this process renews, with the
  request's progress, while the request runs. If the process dies, the reaper
  of any other process settles the hold after the lease at that progress;
  settlement is idempotent, so nothing is charged twice.
- **Redis outages** (see ``gateway.outbox``): a settlement Redis cannot take
  waits in the bounded outbox and is written, in order, when Redis answers;
  the hold stays live here meanwhile, its lease renewed with the final usage as
  soon as Redis is back, so even a reaper that wins the race charges the true
  amount. A reaper that saw the store fail waits one lease period before
  reaping, so live processes renew first. Admission while Redis is down is
  refused with a 503 (``redis.admission: fail_closed``) or admitted without a
  reservation and settled through the outbox (``fail_open``).

Rounding rule: the exact cost (tokens of each kind times their price in
credits per token, summed in decimal without rounding) is rounded **up** to a
whole credit once per request: never more than one credit above the exact
cost, and never below it.

Where each part lives: ``pricing`` (what usage costs), ``tally`` (usage the
upstream did not report, estimated), ``hold`` (one admitted request),
``admission``, ``stream`` (the output cap), ``settlement``, ``leases`` (renewal
and the reaper), ``health`` (when the store last failed), ``headers`` (the HTTP
headers metering adds) and ``refusals`` (what a refused client reads); ``meter``
puts them together.
"""

from gateway.metering.hold import Hold
from gateway.metering.meter import Meter
from gateway.metering.pricing import cost

__all__ = ["Hold", "Meter", "cost"]
