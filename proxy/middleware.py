"""ASGI middleware of the API: a body size limit, and a request id with one access log line and the request's
count and time in the HTTP metrics (proxy/metrics.py)."""

import logging
import re
import secrets
import time

from fastapi.responses import JSONResponse

access_log = logging.getLogger("proxy.access")
# What may go into a log line and back into a header as it is.
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")


class _BodyTooLarge(Exception):
    pass


def _too_large(max_bytes: int) -> JSONResponse:
    return JSONResponse({"error": f"request body larger than {max_bytes} bytes"}, status_code=413)


class BodyLimit:
    """Refuses a body over max_bytes with 413, whether or not Content-Length announces it."""

    def __init__(self, app, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            return await _too_large(self.max_bytes)(scope, receive, send)
        received = 0

        async def limited_receive():
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.max_bytes:
                raise _BodyTooLarge()
            return message

        try:
            await self.app(scope, limited_receive, send)
        except _BodyTooLarge:
            await _too_large(self.max_bytes)(scope, receive, send)


class RequestLog:
    """Gives each request an id (the client's X-Request-ID if it is a plain token, else a new one), returns it
    in the X-Request-ID header and logs one access line with it; counts and times the request by its route's
    template ("none" when no route matched)."""

    def __init__(self, app, metrics):
        self.app, self.metrics = app, metrics

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        given = dict(scope["headers"]).get(b"x-request-id", b"").decode("latin-1")
        request_id = given if _REQUEST_ID.fullmatch(given) else secrets.token_hex(16)
        scope.setdefault("state", {})["request_id"] = request_id
        started, status = time.perf_counter(), 500

        async def send_with_id(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message.setdefault("headers", []).append((b"x-request-id", request_id.encode()))
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            seconds = time.perf_counter() - started
            route = scope.get("route")  # set by the router on a match
            self.metrics.observe_request(getattr(route, "path", "none"), scope["method"], status, seconds)
            client = scope.get("client") or ("-", 0)
            access_log.info(
                '%s:%s "%s %s" %d %.1f ms request_id=%s',
                client[0],
                client[1],
                scope["method"],
                scope["path"],
                status,
                seconds * 1000,
                request_id,
            )
