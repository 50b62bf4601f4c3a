"""Helpers of the serve tests: raw HTTP over a socket, and an in-process server on a loopback port."""

from __future__ import annotations

import json
import socket
import threading
import time
from contextlib import contextmanager


def raw_http(port: int, head: bytes, body: bytes = b"", timeout: float = 30.0) -> tuple[int, dict, bytes]:
    """Send ``head`` (request line and headers, without the blank line) and ``body``; read until the
    server closes or the response is complete. Returns (status, headers, body)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(head + b"\r\nConnection: close\r\n\r\n" + body)
        return read_response(sock)


def read_response(sock) -> tuple[int, dict, bytes]:
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    if headers.get("transfer-encoding") == "chunked":
        body = dechunk(body)
    return int(lines[0].split()[1]), headers, body


def dechunk(body: bytes) -> bytes:
    out = b""
    while body:
        size, _, rest = body.partition(b"\r\n")
        n = int(size, 16)
        if n == 0:
            break
        out, body = out + rest[:n], rest[n + 2 :]
    return out


def post_json(port: int, path: str, payload, headers: str = "") -> tuple[int, dict, bytes]:
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    head = f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {len(body)}{headers}"
    return raw_http(port, head.encode(), body)


def health_ok(port: int) -> bool:
    status, _, body = raw_http(port, b"GET /health HTTP/1.1\r\nHost: x", timeout=10)
    return status == 200 and json.loads(body)["status"] == "ok"


def metric(port: int, name: str, labels: str = "") -> float:
    """The value of one sample of ``/metrics`` (0 when absent), e.g. ``metric(p, "rlhf_cancelled_total", 'reason="disconnect"')``."""
    _, _, body = raw_http(port, b"GET /metrics HTTP/1.1\r\nHost: x", timeout=10)
    wanted = f"{name}{{{labels}}}" if labels else name
    for line in body.decode().splitlines():
        if line.startswith(wanted + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


@contextmanager
def serving(pipe, api_keys=(), **arguments):
    """Serve ``pipe`` in this process (uvicorn in a thread) on a free loopback port; yields (port, state)."""
    from rlhf.serve import ServeArguments, create_app
    from rlhf.serve.server import bind, uvicorn_server

    args = ServeArguments(port=0, **arguments)
    sock = bind("127.0.0.1", 0)
    app = create_app(pipe, args, list(api_keys))
    server = uvicorn_server(app, args)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    assert server.started, "the in-process server did not start"
    try:
        yield sock.getsockname()[1], app.state.rlhf
    finally:
        for job in app.state.rlhf.batcher.running:
            job.cancel.set()
        server.should_exit = True
        thread.join(30)
        sock.close()
