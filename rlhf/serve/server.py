"""`rlhf serve`: its arguments, API keys, and uvicorn started on a socket bound here."""

from __future__ import annotations

import ipaddress
import logging
import os
import signal
import socket
import threading
from dataclasses import dataclass, field
from pathlib import Path

from uvicorn.protocols.http.h11_impl import H11Protocol

from rlhf.config import ConfigError, run_cli
from rlhf.pipeline import Pipeline
from rlhf.pipeline_config import PipelineConfig

logger = logging.getLogger("rlhf.serve")
API_KEY_ENV = "RLHF_API_KEY"


@dataclass
class ServeArguments:
    """
    Arguments of `rlhf serve` (the pipeline itself is configured by `PipelineConfig`'s keys; its
    `max_prompt_tokens` is the longest prompt the server accepts, 400 beyond it).

    Args:
        host (`str`, *optional*, defaults to `"127.0.0.1"`):
            Address to bind. Without an API key only a loopback address is allowed.
        port (`int`, *optional*, defaults to `8000`):
            TCP port; 0 picks a free one (the chosen port is printed).
        served_model_name (`str` or `None`, *optional*, defaults to `None`):
            Model name reported in responses; `None`: the model directory's name.
        api_key (`str` or `None`, *optional*, defaults to `None`):
            Key clients send as `Authorization: Bearer KEY` on `/v1/*`. Also read from the environment
            variable `RLHF_API_KEY` and from `api_key_file`; any of them is accepted.
        api_key_file (`str` or `None`, *optional*, defaults to `None`):
            File with one accepted key per line (blank lines and `#` comments skipped).
        stream_mode (`str`, *optional*, defaults to `"safe"`):
            `safe`: a streamed answer is generated and checked whole before its first byte is sent.
            `checked`: pieces of `stream_check_every` tokens are sent as each passes the output check.
        max_body_bytes (`int`, *optional*, defaults to `1000000`):
            Largest request body, in bytes, counted as it arrives; larger ones get 413.
        read_timeout_s (`float`, *optional*, defaults to `30.0`):
            Seconds a client has to send a whole request (headers, then body); an idle connection is
            closed after as long.
        request_timeout_s (`float`, *optional*, defaults to `300.0`):
            Seconds a request may wait for its answer (queue included) before it gets 504 and its
            generation is stopped.
        max_batch_size (`int`, *optional*, defaults to `16`):
            Most chat requests answered by one `Pipeline.batch` call.
        batch_wait_ms (`float`, *optional*, defaults to `10.0`):
            How long the batcher waits for more requests after the first one, in milliseconds.
        max_queue_size (`int`, *optional*, defaults to `256`):
            Requests that may wait for the model; one more gets 429 with Retry-After.
        max_concurrent_requests (`int`, *optional*, defaults to `512`):
            `/v1` requests served at once (reading, queued, generating or streaming); one more gets 503
            with Retry-After. Bounds memory: at most this many bodies of `max_body_bytes` are held.
        max_tokens_limit (`int`, *optional*, defaults to `2048`):
            Largest `max_tokens` a client may ask for.
    """

    host: str = field(default="127.0.0.1", metadata={"help": "Address to bind (default: local only)."})
    port: int = field(default=8000, metadata={"help": "TCP port; 0 picks a free one."})
    served_model_name: str | None = field(default=None, metadata={"help": "Model name in responses."})
    api_key: str | None = field(default=None, metadata={"help": "Accepted Bearer key (also $RLHF_API_KEY)."})
    api_key_file: str | None = field(default=None, metadata={"help": "File of accepted keys, one a line."})
    stream_mode: str = field(
        default="safe",
        metadata={
            "help": "safe: check the whole answer first; checked: send checked pieces.",
            "choices": ["safe", "checked"],
        },
    )
    max_body_bytes: int = field(default=1_000_000, metadata={"help": "Largest request body (bytes)."})
    read_timeout_s: float = field(default=30.0, metadata={"help": "Seconds to send a whole request."})
    request_timeout_s: float = field(default=300.0, metadata={"help": "Seconds until a request gets 504."})
    max_batch_size: int = field(default=16, metadata={"help": "Requests per generate call."})
    batch_wait_ms: float = field(default=10.0, metadata={"help": "Batcher wait for more requests (ms)."})
    max_queue_size: int = field(
        default=256, metadata={"help": "Requests waiting for the model (429 beyond)."}
    )
    max_concurrent_requests: int = field(default=512, metadata={"help": "/v1 requests at once (503 beyond)."})
    max_tokens_limit: int = field(default=2048, metadata={"help": "Largest max_tokens a client may ask for."})

    def __post_init__(self):
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port must be in 0..65535, got {self.port}")
        if self.stream_mode not in ("safe", "checked"):
            raise ValueError(f"stream_mode must be 'safe' or 'checked', got {self.stream_mode!r}")
        for name in (
            "max_body_bytes",
            "max_batch_size",
            "max_tokens_limit",
            "max_queue_size",
            "max_concurrent_requests",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        for name in ("read_timeout_s", "request_timeout_s"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")


def load_api_keys(args: ServeArguments, environ=os.environ) -> list[str]:
    """The accepted keys: ``api_key``, ``$RLHF_API_KEY`` and the lines of ``api_key_file``.

    Raises ConfigError naming ``api_key_file`` when it cannot be read or holds no key.
    """
    keys = [k.strip() for k in (args.api_key, environ.get(API_KEY_ENV)) if k and k.strip()]
    if args.api_key_file:
        path = Path(args.api_key_file)
        try:
            lines = path.read_text().splitlines()
        except OSError as err:
            raise ConfigError(f"api_key_file='{path}': cannot be read ({err.strerror or err})") from None
        found = [line.strip() for line in lines if line.strip() and not line.strip().startswith("#")]
        if not found:
            raise ConfigError(f"api_key_file='{path}': holds no key (expected one key per line)")
        keys += found
    return keys


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def idle_limited_protocol(idle_s: float) -> type[H11Protocol]:
    """uvicorn's HTTP/1.1 protocol, closing a connection that has no request under way for ``idle_s``:
    a client that opens connections and sends nothing, or drips its headers, does not keep them."""

    class IdleLimitedH11(H11Protocol):
        _idle_timer = None

        def connection_made(self, transport):
            super().connection_made(transport)
            self._arm()

        def _arm(self):
            if self._idle_timer is not None:
                self._idle_timer.cancel()
            self._idle_timer = self.loop.call_later(idle_s, self._close_if_idle)

        def _close_if_idle(self):
            self._idle_timer = None
            if self.cycle is None or self.cycle.response_complete:  # no request being answered
                self.transport.close()

        def handle_events(self):
            super().handle_events()
            if self._idle_timer is not None and self.cycle is not None and not self.cycle.response_complete:
                self._idle_timer.cancel()  # a request arrived whole: the request timeout takes over
                self._idle_timer = None

        def on_response_complete(self):
            super().on_response_complete()
            if not self.transport.is_closing():
                self._arm()

        def connection_lost(self, exc):
            if self._idle_timer is not None:
                self._idle_timer.cancel()
            super().connection_lost(exc)

    return IdleLimitedH11


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket (so port 0 is resolved before uvicorn starts and can be printed)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as err:
        sock.close()
        raise ConfigError(f"cannot bind host='{host}' port={port}: {err.strerror or err}") from None
    sock.listen(2048)  # bursts of clients wait in the backlog instead of being refused
    sock.set_inheritable(True)
    return sock


def uvicorn_server(app, args: ServeArguments):
    import uvicorn

    config = uvicorn.Config(
        app,
        http=idle_limited_protocol(args.read_timeout_s),
        log_config=None,  # our logging.basicConfig; the access log has method, path and status only
        timeout_keep_alive=5,  # seconds an idle keep-alive connection is kept after a response
        timeout_graceful_shutdown=10,  # seconds open requests get at shutdown (their generation is cancelled)
        lifespan="on",
    )
    return uvicorn.Server(config)


def main(pipeline_config: PipelineConfig, args: ServeArguments) -> dict:
    from rlhf.serve.app import create_app

    keys = load_api_keys(args)
    if not keys and not is_loopback(args.host):
        raise ConfigError(
            f"host='{args.host}' accepts remote clients but no API key is configured; set api_key, "
            f"api_key_file or ${API_KEY_ENV}, or bind 127.0.0.1"
        )
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    sock = bind(args.host, args.port)
    try:
        pipe = Pipeline.from_config(
            pipeline_config
        )  # a configuration mistake: a ConfigError, one line and exit 2
    except BaseException:
        sock.close()
        raise
    app = create_app(pipe, args, keys)
    state = app.state.rlhf
    host, port = sock.getsockname()[:2]
    auth = (
        f"{len(keys)} API key(s) required on /v1/* (Authorization: Bearer KEY)"
        if keys
        else "no API key configured: local clients only"
    )
    print(
        f"rlhf serve: listening on http://{host}:{port} (model '{state.model_name}', "
        f"stream_mode {args.stream_mode}, max_prompt_tokens {state.max_prompt_tokens}; {auth})",
        flush=True,
    )
    server = uvicorn_server(app, args)
    if threading.current_thread() is threading.main_thread():
        # uvicorn handles SIGTERM/SIGINT itself and raises them again once it stopped: let that be a no-op
        signal.signal(signal.SIGTERM, lambda signum, frame: None)
        signal.signal(signal.SIGINT, lambda signum, frame: None)
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
    print("rlhf serve: stopped", flush=True)
    batches = state.batcher.batches
    return {"batches": len(batches), "batched_requests": sum(batches)}


def cli(argv=None):
    return run_cli(main, (PipelineConfig, ServeArguments), "rlhf serve", argv)
