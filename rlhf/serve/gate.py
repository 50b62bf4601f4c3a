"""The gate every request passes first (a plain ASGI middleware, so it runs before FastAPI reads anything).

In order: count the response status for ``/metrics``; for ``/v1/*``: check the API key (401), admit the
request under ``max_concurrent_requests`` (503 + Retry-After); for a POST: refuse a declared
``Content-Length`` over ``max_body_bytes`` (413) and read the body itself, counting bytes as they arrive
(413 past the limit, whatever the header said) within ``read_timeout_s`` for the whole body (408), then
hand the buffered body to FastAPI.
"""

from __future__ import annotations

import asyncio
import hmac

from fastapi.responses import JSONResponse

from rlhf.serve.api import RequestError

ROUTES = ("/health", "/metrics", "/v1/models", "/v1/chat/completions", "/v1/moderations")
RETRY_AFTER_S = "1"  # seconds a client told 429/503 should wait: about one batch of the quickstart model


class Gate:
    """ASGI middleware: status counting, API keys, concurrency cap, body size and read deadline."""

    def __init__(self, app, state):
        self.app, self.state = app, state

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        state, path = self.state, scope["path"].rstrip("/") or "/"
        route = path if path in ROUTES else "other"

        async def counted_send(message):
            if message["type"] == "http.response.start":
                state.metrics.requests.labels(route, str(message["status"])).inc()
            await send(message)

        if not path.startswith("/v1/"):
            return await self.app(scope, receive, counted_send)
        headers = dict(scope["headers"])
        if state.api_keys and not _key_ok(headers.get(b"authorization", b""), state.api_keys):
            err = RequestError(401, "missing or invalid API key (Authorization: Bearer KEY)")
            return await _reply(counted_send, err, close=scope["method"] == "POST")  # its body is not read
        if state.in_flight >= state.args.max_concurrent_requests:
            err = RequestError(
                503, "the server is at its concurrency limit; retry later", kind="server_error"
            )
            return await _reply(counted_send, err, retry=True, close=scope["method"] == "POST")
        state.in_flight += 1
        state.metrics.in_flight.set(state.in_flight)
        try:
            if scope["method"] == "POST":
                body = await _read_body(scope, headers, receive, state.args)
                if isinstance(body, RequestError):
                    return await _reply(counted_send, body, close=True)
                if body is None:  # the client went away while sending
                    return
                receive = _replay(body, receive)
                # The API takes JSON only: parse it as JSON whatever Content-Type says (curl -d sends a form type)
                other = [(k, v) for k, v in scope["headers"] if k != b"content-type"]
                scope = {**scope, "headers": [*other, (b"content-type", b"application/json")]}
            await self.app(scope, receive, counted_send)
        finally:
            state.in_flight -= 1
            state.metrics.in_flight.set(state.in_flight)


def _key_ok(header: bytes, keys: list[bytes]) -> bool:
    """Constant-time comparison of a ``Bearer KEY`` header against every configured key."""
    scheme, _, given = header.partition(b" ")
    if scheme.lower() != b"bearer":
        given = b""
    ok = False
    for key in keys:  # no early exit: the time does not depend on which key matched
        ok |= hmac.compare_digest(given.strip(), key)
    return ok


async def _read_body(scope, headers, receive, args) -> bytes | RequestError | None:
    limit = args.max_body_bytes
    declared = headers.get(b"content-length")
    chunked = b"chunked" in headers.get(b"transfer-encoding", b"").lower()
    if declared is None and not chunked:
        return RequestError(411, "a Content-Length header is required")
    if declared is not None:
        try:
            length = int(declared)
        except ValueError:
            return RequestError(400, "Content-Length must be an integer")
        if length < 0:
            return RequestError(400, "Content-Length must not be negative")
        if length > limit:
            return RequestError(413, f"request body of {length} bytes exceeds the limit of {limit} bytes")
    body = bytearray()
    try:
        async with asyncio.timeout(args.read_timeout_s):  # for the whole body, not per receive
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    return None
                body += message.get("body", b"")
                if len(body) > limit:  # counted as it arrives: a lying header cannot get past this
                    return RequestError(413, f"request body exceeds the limit of {limit} bytes")
                if not message.get("more_body", False):
                    return bytes(body)
    except TimeoutError:
        return RequestError(
            408, f"the request body did not arrive within {args.read_timeout_s:g} s", kind="timeout"
        )


def _replay(body: bytes, receive):
    """A ``receive`` that hands over the buffered body once, then the connection's own (disconnects)."""
    sent = False

    async def replay():
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


async def _reply(send, err: RequestError, retry: bool = False, close: bool = False) -> None:
    response = error_response(err, retry=retry, close=close)
    await response({"type": "http"}, None, send)


def error_response(err: RequestError, retry: bool = False, close: bool = False) -> JSONResponse:
    headers = dict(err.headers)
    if retry:
        headers["Retry-After"] = RETRY_AFTER_S
    if close:  # the body was not read (or not all of it): the connection cannot carry another request
        headers["Connection"] = "close"
    return JSONResponse(err.body(), status_code=err.status, headers=headers)
