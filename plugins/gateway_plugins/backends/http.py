"""What every HTTP backend shares: its options, one pooled client, error mapping.

``Upstream.answer`` posts a JSON body and yields the events of the answer, a
batch per read of its server-sent events (``batches``); any failure on the way
is raised as a ``GatewayError`` with the right status (the pipeline turns it
into the stream's ``Failed`` event):

- connection refused, reset, or a broken body -> ``UpstreamError`` (502);
- no answer within ``timeout`` (or between two chunks) -> ``UpstreamTimeout`` (504)
  (see ``HttpOptions.timeout``);
- an upstream 400/422 -> ``InvalidRequest`` (400) with the upstream's message;
  413 -> ``PayloadTooLarge``; 429 -> ``RateLimited``; anything else >= 400 ->
  ``UpstreamError``.

A backend streams from ``Upstream.answer``: the events of a streamed answer,
or, when the upstream answers one JSON body instead (Content-Type
``application/json``: it ignored ``stream``, as LiteLLM's ``/v1/messages`` does
in some modes and a LibreChat agent with streaming off does), that whole answer
read at once and turned into the same events by the backend's ``whole``.

Closing the generator (the client went away) releases the response, which
closes its connection: the upstream sees the disconnect at once.

The upstream key never reaches an error message (which the client and the log
see): ``upstream_error`` cuts it out of an error answer, and a backend runs its
stream inside ``Upstream.redacting`` for the errors an upstream reports mid-stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import (
    AsyncGenerator,
    Awaitable,
    Callable,
    Iterable,
    Iterator,
    Mapping,
)
from dataclasses import dataclass, field
from functools import partial
from types import TracebackType

import aiohttp
import orjson

from gateway.plugin import (
    MAX_LINE,
    Batch,
    Event,
    GatewayError,
    InvalidRequest,
    PayloadTooLarge,
    RateLimited,
    ServerSentEvent,
    SSEDecodeError,
    SSEDecoder,
    UpstreamError,
    UpstreamTimeout,
    Watchdog,
    positive,
)

MAX_ERROR_BODY = 64 * 1024
MAX_RESPONSE_BODY = 16 * 1024 * 1024
MAX_ERROR_MESSAGE = 500


@dataclass(frozen=True)
class HttpOptions:
    """Options every HTTP backend takes; a backend's own options extend these."""

    base_url: str
    api_key_env: str | None = field(default=None, metadata={"env": True})
    # To the first byte, and between chunks: to the answer's headers from the request's
    # start (its connection and write included), then between reads of its body, counting
    # from the last read (one watchdog's, ``Upstream.answer``).
    timeout: float = field(default=60.0, metadata={"check": positive})
    connect_timeout: float = field(default=10.0, metadata={"check": positive})
    max_connections: int = field(default=100, metadata={"check": positive})
    # An SSE line longer than this is a broken stream (502), not a reason to buffer on.
    max_line_bytes: int = field(default=MAX_LINE, metadata={"check": positive})
    # A whole (non-streamed) answer larger than this is refused (502) instead of read.
    max_response_bytes: int = field(default=MAX_RESPONSE_BODY, metadata={"check": positive})


class Upstream:
    """One backend's pooled HTTP client (created lazily, inside the event loop)."""

    def __init__(self, backend: str, options: HttpOptions) -> None:
        self.backend = backend
        self.options = options
        self._base = options.base_url.rstrip("/")
        self._session: aiohttp.ClientSession | None = None
        # The session's loop, kept when it is made: on Python 3.11 each
        # ``asyncio.get_running_loop()`` is a ``getpid`` system call.
        self._loop: asyncio.AbstractEventLoop | None = None
        # The upstream key, once ``secret`` has read it.
        self._secret: str | None = None
        # ``answer``'s watchdogs not in use, of the session's loop: a watchdog made
        # (its loop's clock looked up) costs about as much as aiohttp's read timer did.
        self._dogs: list[Watchdog] = []

    @property
    def secret(self) -> str:
        """The upstream key, from the environment variable ``api_key_env`` ("" if none).

        Read at the first use and kept: a process's environment changes only from
        inside it, and a config reload makes new backends. A read of ``os.environ``
        is Python code (the name encoded, the value decoded), about 5.6k instructions
        a request when it was read for each request's headers.
        """
        secret = self._secret
        if secret is None:
            name = self.options.api_key_env
            secret = self._secret = os.environ.get(name, "") if name else ""
        return secret

    def redact(self, text: str) -> str:
        """``text`` without the upstream key (cut it out before shortening ``text``)."""
        return _redact(text, self.secret)

    @contextlib.contextmanager
    def redacting(self) -> Iterator[None]:
        """Cut the upstream key out of any ``GatewayError`` raised inside.

        Some upstreams quote the key back, in an error answer or a mid-stream
        error event; an error's message reaches the client and the log.
        """
        try:
            yield
        except GatewayError as exc:
            self.scrub(exc)
            raise

    def scrub(self, exc: GatewayError) -> None:
        """Cut the upstream key out of ``exc``'s message (``redacting``'s work)."""
        message = self.redact(exc.message)
        if message != exc.message:
            exc.message = message
            exc.args = (message,)

    def timed_out(self) -> UpstreamTimeout:
        """The error of an upstream past ``timeout`` (before its answer or between reads)."""
        return UpstreamTimeout(f"The upstream of backend '{self.backend}' timed out.")

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._loop = asyncio.get_running_loop()
            self._dogs = []
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self.options.max_connections),
                # One session serves every client: an upstream's cookie must not reach others.
                cookie_jar=aiohttp.DummyCookieJar(),
                # No ``sock_read``: ``answer`` times the reads (its watchdog).
                timeout=aiohttp.ClientTimeout(total=None, connect=self.options.connect_timeout),
            )
        return self._session

    def post(
        self, path: str, payload: object, headers: Mapping[str, str]
    ) -> contextlib.AbstractAsyncContextManager[aiohttp.ClientResponse]:
        """POST ``payload`` as JSON: an async context manager giving the (successful)
        response, and releasing it on the way out (``Posted``)."""
        try:
            body = orjson.dumps(payload)
        except orjson.JSONEncodeError as exc:  # e.g. an integer beyond 64 bits
            raise InvalidRequest(f"The request cannot be sent upstream: {exc}.") from None
        all_headers = {"Content-Type": "application/json", **headers}
        return Posted(self, self._client().post(self._base + path, data=body, headers=all_headers))

    async def answer(
        self,
        path: str,
        payload: object,
        headers: Mapping[str, str],
        *,
        parse: Callable[[ServerSentEvent], Iterable[Event]],
        finished: Callable[[], bool],
        whole: Callable[[dict[str, object]], Iterable[Event]],
        last: Callable[[], Iterable[Event]] | None = None,
        parse_read: ParseRead | None = None,
        parse_texts: ParseTexts | None = None,
    ) -> AsyncGenerator[Batch, None]:
        """The events of the answer to ``payload``, a batch per read: ``parse`` makes
        them of each server-sent event (until ``finished()``, see ``batches``), or
        ``whole`` of a JSON answer (one batch); then, if the answer did not fail,
        those ``last()`` makes (one batch, once the response is released).

        ``payload`` may be a function making it, called when the stream is first read
        (so that a body the backend refuses to build fails the stream, as it does
        when built inside the backend's own generator). A ``GatewayError`` comes out
        without the upstream key (as ``redacting`` does). One generator, whatever the answer:
        a backend may return it as its stream, which spares every read a layer.

        ``parse_read`` parses a read's frames at once instead of ``parse`` one by one;
        ``parse_texts``, if given, a read that is one-line ``data:`` events only (most
        reads of a Chat Completions stream, see ``SSEDecoder.messages``), from their data.
        """
        try:  # what ``with self.redacting()`` does, without its generator
            body = payload() if callable(payload) else payload
            answer: dict[str, object] | None = None
            posted = self.post(path, body, headers)
            # ``timeout`` is one watchdog's, to the headers and between reads of the body,
            # not aiohttp's ``sock_read`` (which re-arms a loop timer at every read of the
            # socket, the headers' included); a read that finds its bytes already there
            # waits for nothing.
            loop = self._loop or asyncio.get_running_loop()  # the session's (``_client``)
            clock, timeout = loop.time, self.options.timeout
            dogs = self._dogs
            dog = dogs.pop() if dogs else Watchdog(loop)
            try:
                dog.wait(clock() + timeout)
                async with posted as resp:
                    if resp.content_type == "application/json":
                        answer = json_object(await self.read_body(resp, dog))
                    else:
                        dog.deadline = None
                        decoder = SSEDecoder(self.options.max_line_bytes)
                        ended = False
                        read_frames: ParseRead = parse_read or partial(
                            parse_frames, parse=parse, finished=finished
                        )
                        content = resp.content
                        read_at = clock()  # the headers came just now
                        while True:
                            chunk = content.read_nowait()
                            if not chunk:
                                if content.at_eof():
                                    break
                                dog.wait(read_at + timeout)
                                try:
                                    chunk = await content.readany()
                                finally:
                                    dog.deadline = None
                                if not chunk:
                                    break
                            read_at = clock()
                            if (
                                parse_texts is not None
                                and (texts := decoder.messages(chunk)) is not None
                            ):
                                events, error = parse_texts(texts)
                            else:
                                try:
                                    frames = decoder.feed(chunk)
                                except SSEDecodeError as exc:
                                    raise UpstreamError(
                                        f"The upstream stream is malformed: {exc}"
                                    ) from None
                                if not frames:
                                    continue
                                events, error = read_frames(frames)
                            if events:
                                yield tuple(events)
                            if error is not None:
                                raise error
                            if finished():
                                ended = True
                                break
                        if not ended:
                            events, error = read_frames(decoder.close())
                            if events:
                                yield tuple(events)
                            if error is not None:
                                raise error
            except asyncio.CancelledError:
                if not dog.timed_out():
                    raise
                raise self.timed_out() from None
            finally:
                dog.deadline = dog.task = None  # (no task kept alive by an idle watchdog)
                if dog.expired or len(dogs) >= self.options.max_connections:
                    dog.close()
                else:
                    dogs.append(dog)
            if answer is not None:
                # A whole answer is one batch, its closing events included: one step
                # through every layer above instead of two.
                batch = tuple(whole(answer))
                yield batch if last is None else (*batch, *last())
            elif last is not None:
                yield tuple(last())
        except GatewayError as exc:
            self.scrub(exc)
            raise

    async def events(
        self, resp: aiohttp.ClientResponse
    ) -> AsyncGenerator[list[ServerSentEvent], None]:
        """The server-sent events of ``resp``, a list per read of the body (never an
        empty one), the last event flushed at its end; ``UpstreamError`` if a line is
        longer than ``max_line_bytes``. (``answer`` does this inline, with ``batches``,
        so that a read passes through one generator, not three.) No time limit between
        reads: ``answer`` keeps ``timeout``, the session has none of its own."""
        decoder = SSEDecoder(self.options.max_line_bytes)
        try:
            async for chunk in resp.content.iter_any():
                events = decoder.feed(chunk)
                if events:
                    yield events
            events = decoder.close()
            if events:
                yield events
        except SSEDecodeError as exc:
            raise UpstreamError(f"The upstream stream is malformed: {exc}") from None

    async def read_body(self, resp: aiohttp.ClientResponse, dog: Watchdog | None = None) -> bytes:
        """The whole body of ``resp``; ``UpstreamError`` above ``max_response_bytes``.
        ``dog``, if given, is given ``timeout`` from each read's start (``answer``'s; its
        caller maps the expiry): the body is read in time if no read waits that long."""
        most = self.options.max_response_bytes
        if resp.content_length is not None and resp.content_length > most:
            raise self._too_large()
        content = resp.content
        clock, timeout = (self._loop or asyncio.get_running_loop()).time, self.options.timeout
        first = content.read_nowait(most + 1)  # what came with the headers: no wait
        if not first:
            if dog is not None:
                dog.wait(clock() + timeout)
            first = await content.read(most + 1)
        if len(first) <= most and (not first or content.at_eof()):
            return first  # all of it in one read (most answers): no second read, no copy
        raw = bytearray(first)
        while len(raw) <= most:
            if dog is not None:
                dog.wait(clock() + timeout)
            more = await content.read(most + 1 - len(raw))
            if not more:
                break
            raw += more
        if len(raw) > most:
            raise self._too_large()
        return bytes(raw)

    def _too_large(self) -> UpstreamError:
        most = self.options.max_response_bytes
        return UpstreamError(
            f"The upstream of backend '{self.backend}' sent an answer larger than {most} bytes."
        )

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()


class Posted:
    """``Upstream.post``'s context: the response of ``request`` if it succeeded (an
    error answer raised as ``upstream_error`` makes of it), released on the way out;
    a timeout or a client failure on the way in, inside or out raised as
    ``UpstreamTimeout`` or ``UpstreamError``.

    What ``contextlib.asynccontextmanager`` around ``async with request`` did, as a
    class: no generator, and no context of aiohttp's own, per request.
    """

    __slots__ = ("_request", "_response", "_upstream")

    def __init__(self, upstream: Upstream, request: Awaitable[aiohttp.ClientResponse]) -> None:
        self._upstream = upstream
        self._request = request
        self._response: aiohttp.ClientResponse | None = None

    async def __aenter__(self) -> aiohttp.ClientResponse:
        try:
            self._response = resp = await self._request
            if resp.status >= 400:
                raise await upstream_error(resp, self._upstream.secret)
        except BaseException as exc:
            await self.__aexit__(type(exc), exc, exc.__traceback__)
            raise  # the error answer, or a cancellation (a timeout or a client failure
            # does not get here: ``__aexit__`` raised it mapped)
        return resp

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            resp, self._response = self._response, None
            if resp is not None:  # what ``async with`` a response does on its way out
                resp.release()
                await resp.wait_for_close()
        except (TimeoutError, aiohttp.ClientError) as failure:
            exc = failure
        if isinstance(exc, TimeoutError):
            raise self._upstream.timed_out() from None
        if isinstance(exc, aiohttp.ClientError):
            raise UpstreamError(
                f"The upstream of backend '{self._upstream.backend}' failed: "
                f"{exc.__class__.__name__}."
            ) from None


async def batches(
    reads: AsyncGenerator[list[ServerSentEvent], None],
    parse: Callable[[ServerSentEvent], Iterable[Event]],
    finished: Callable[[], bool],
) -> AsyncGenerator[Batch, None]:
    """The events ``parse`` makes of each read's frames, a batch per read; stops
    reading once ``finished()``. Events made before a frame that fails to parse
    still come out, ahead of its error. ``reads`` is closed when this ends or is
    closed."""
    async with contextlib.aclosing(reads):
        async for frames in reads:
            events, error = parse_frames(frames, parse=parse, finished=finished)
            if events:
                yield tuple(events)
            if error is not None:
                raise error
            if finished():
                return


ParseRead = Callable[[list[ServerSentEvent]], tuple[list[Event], GatewayError | None]]
"""The frames of one read -> their events, and the error of a frame that failed to parse
(the events before it still count); it stops at the frame that finishes the answer."""


ParseTexts = Callable[[list[str]], tuple[list[Event], GatewayError | None]]
"""``ParseRead`` for a read of one-line ``data:`` events, given their data."""


def parse_frames(
    frames: list[ServerSentEvent],
    *,
    parse: Callable[[ServerSentEvent], Iterable[Event]],
    finished: Callable[[], bool],
) -> tuple[list[Event], GatewayError | None]:
    """The events ``parse`` makes of one read's frames, up to ``finished()``, and the
    error of a frame that failed to parse (the events before it still count)."""
    events: list[Event] = []
    try:
        for frame in frames:
            events += parse(frame)
            if finished():
                break
    except GatewayError as exc:
        return events, exc
    return events, None


def json_object(data: str | bytes) -> dict[str, object]:
    """One upstream event's JSON object; anything else is the upstream's fault."""
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError:
        raise UpstreamError("The upstream sent an event that is not JSON.") from None
    if not isinstance(value, dict):
        raise UpstreamError("The upstream sent an event that is not a JSON object.")
    return value


async def upstream_error(resp: aiohttp.ClientResponse, secret: str = "") -> GatewayError:
    """The error to report for an upstream's HTTP error answer, with its message.

    ``secret``, the credential the gateway sent, is cut out of the message: some
    upstreams quote it back, and the message reaches the client and the log.
    """
    raw = await resp.content.read(MAX_ERROR_BODY)
    message = raw.decode("utf-8", "replace")
    try:
        parsed = orjson.loads(raw)
    except orjson.JSONDecodeError:
        parsed = None
    if isinstance(parsed, dict):
        error = parsed.get("error")
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            message = error["message"]
        elif isinstance(error, str):
            message = error
        elif isinstance(parsed.get("message"), str):  # e.g. LibreChat's 403 body
            message = parsed["message"]
    # The key is cut out first: shortening first could leave half of it to be seen.
    detail = f"The upstream answered {resp.status}: {_redact(message, secret)[:MAX_ERROR_MESSAGE]}"
    if resp.status in (400, 422):
        return InvalidRequest(detail, code="upstream_rejected_request")
    if resp.status == 413:
        return PayloadTooLarge(detail)
    if resp.status == 429:
        return RateLimited(detail)
    return UpstreamError(detail)


def _redact(text: str, secret: str) -> str:
    return text.replace(secret, "[redacted]") if secret else text
