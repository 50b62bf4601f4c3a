"""OpenAI-compatible HTTP server over the moderated pipeline (standard library only).

    rlhf serve --config configs/quickstart/pipeline.yaml [--host 127.0.0.1] [--port 8000]

Endpoints:

- ``POST /v1/chat/completions``: OpenAI's request and response shapes (``messages``, ``max_tokens`` /
  ``max_completion_tokens``, ``temperature``, ``top_p``, ``stream``, ``stream_options.include_usage``).
  ``stream: true`` answers with server-sent events in OpenAI's ``chat.completion.chunk`` format, ending
  with ``data: [DONE]``. A blocked request or answer gets the template as its content and
  ``finish_reason: "content_filter"``; every response also carries a ``moderation`` object (status and
  flagged categories per side) -- never the blocked text.
- ``POST /v1/moderations``: OpenAI's response shape (``id``, ``model``, ``results[{flagged, categories,
  category_scores}]``) with OpenAI's category names, mapped from ours through the ``openai`` table of
  ``rlhf/moderation/categories.yaml``; our own categories, scores, action and reason are under
  ``results[i].rlhf``. An extra request field ``side`` (``input`` | ``output``) picks the side.
- ``GET /health`` (status, model, moderators) and ``GET /v1/models``.

Limits: request bodies over ``max_body_bytes`` get 413, malformed JSON 400 (with a message), a client
that stops sending is dropped after ``read_timeout_s``, and a request not answered within
``request_timeout_s`` gets 504. Concurrent non-streamed requests are batched: a worker collects the
requests that arrive within ``batch_wait_ms`` (up to ``max_batch_size``) and answers them with one
``Pipeline.batch`` call; streamed requests take the model one at a time. The model is only ever used by
one thread at a time. Bind to 127.0.0.1 (the default) unless a proxy in front of it handles
authentication: the server has none.
"""

from __future__ import annotations

import json
import logging
import queue
import signal
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from rlhf.config import run_cli
from rlhf.pipeline import Pipeline, PipelineConfig, PipelineError, Response, load_pipeline, normalize_request

logger = logging.getLogger("rlhf.serve")  # not "__main__" under python -m


@dataclass
class ServeArguments:
    """
    Arguments of `rlhf serve` (the pipeline itself is configured by `PipelineConfig`'s keys).

    Args:
        host (`str`, *optional*, defaults to `"127.0.0.1"`):
            Address to bind; the default accepts local connections only.
        port (`int`, *optional*, defaults to `8000`):
            TCP port; 0 picks a free one (the chosen port is printed).
        served_model_name (`str` or `None`, *optional*, defaults to `None`):
            Model name reported in responses; `None`: the model directory's name.
        max_body_bytes (`int`, *optional*, defaults to `1000000`):
            Largest request body accepted, in bytes; larger ones get 413.
        read_timeout_s (`float`, *optional*, defaults to `30.0`):
            Seconds a connection may stay silent while sending its request.
        request_timeout_s (`float`, *optional*, defaults to `300.0`):
            Seconds a request may wait for its answer (queue included) before it gets 504.
        max_batch_size (`int`, *optional*, defaults to `16`):
            Most non-streamed requests answered by one `model.generate` call.
        batch_wait_ms (`float`, *optional*, defaults to `10.0`):
            How long the batcher waits for more requests after the first one, in milliseconds.
        max_tokens_limit (`int`, *optional*, defaults to `2048`):
            Largest `max_tokens` a client may ask for.
    """

    host: str = field(default="127.0.0.1", metadata={"help": "Address to bind (default: local only)."})
    port: int = field(default=8000, metadata={"help": "TCP port; 0 picks a free one."})
    served_model_name: str | None = field(default=None, metadata={"help": "Model name in responses."})
    max_body_bytes: int = field(default=1_000_000, metadata={"help": "Largest request body (bytes)."})
    read_timeout_s: float = field(default=30.0, metadata={"help": "Seconds a silent client is kept."})
    request_timeout_s: float = field(default=300.0, metadata={"help": "Seconds until a request gets 504."})
    max_batch_size: int = field(default=16, metadata={"help": "Requests per generate call."})
    batch_wait_ms: float = field(default=10.0, metadata={"help": "Batcher wait for more requests (ms)."})
    max_tokens_limit: int = field(default=2048, metadata={"help": "Largest max_tokens a client may ask for."})

    def __post_init__(self):
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port must be in 0..65535, got {self.port}")
        for name in ("max_body_bytes", "max_batch_size", "max_tokens_limit"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")


class RequestError(Exception):
    """A client error: HTTP status, message and the offending parameter (OpenAI's error shape)."""

    def __init__(
        self, status: int, message: str, param: str | None = None, kind: str = "invalid_request_error"
    ):
        super().__init__(message)
        self.status, self.message, self.param, self.kind = status, message, param, kind

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.kind, "param": self.param, "code": None}}


# ----------------------------------------------------------------------------------------------- requests
def parse_chat_request(body: Mapping[str, Any], max_tokens_limit: int) -> tuple[list[dict], dict, bool, bool]:
    """Validate an OpenAI chat-completions body; returns (messages, generation overrides, stream, usage).

    Raises RequestError (400) naming the parameter that is wrong.
    """
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise RequestError(400, "'messages' must be a non-empty list of messages", "messages")
    converted = []
    for i, message in enumerate(messages):
        if not isinstance(message, Mapping):
            raise RequestError(400, f"messages[{i}] must be an object", f"messages[{i}]")
        role = "system" if message.get("role") == "developer" else message.get("role")
        content = message.get("content")
        if isinstance(content, list):  # content parts: keep the text ones
            texts = [p.get("text", "") for p in content if isinstance(p, Mapping) and p.get("type") == "text"]
            if len(texts) != len(content):
                raise RequestError(
                    400, f"messages[{i}].content: only text parts are supported", f"messages[{i}]"
                )
            content = "".join(texts)
        if content is None:
            content = ""
        converted.append({"role": role, "content": content})
    try:
        converted = normalize_request(converted)
    except PipelineError as err:
        raise RequestError(400, str(err), "messages") from None

    overrides: dict[str, Any] = {}
    max_tokens = body.get("max_completion_tokens", body.get("max_tokens"))
    if max_tokens is not None:
        if (
            not isinstance(max_tokens, int)
            or isinstance(max_tokens, bool)
            or not 1 <= max_tokens <= max_tokens_limit
        ):
            raise RequestError(400, f"'max_tokens' must be an integer in 1..{max_tokens_limit}", "max_tokens")
        overrides["max_new_tokens"] = max_tokens
    temperature = body.get("temperature")
    if temperature is not None:
        if (
            not isinstance(temperature, int | float)
            or isinstance(temperature, bool)
            or not 0 <= temperature <= 2
        ):
            raise RequestError(400, "'temperature' must be a number in [0, 2]", "temperature")
        overrides["do_sample"] = temperature > 0
        if temperature > 0:
            overrides["temperature"] = float(temperature)
    top_p = body.get("top_p")
    if top_p is not None:
        if not isinstance(top_p, int | float) or isinstance(top_p, bool) or not 0 < top_p <= 1:
            raise RequestError(400, "'top_p' must be a number in (0, 1]", "top_p")
        overrides["top_p"] = float(top_p)
    if body.get("n", 1) != 1:
        raise RequestError(400, "only n=1 is supported", "n")
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise RequestError(400, "'stream' must be true or false", "stream")
    options = body.get("stream_options") or {}
    include_usage = bool(isinstance(options, Mapping) and options.get("include_usage"))
    return converted, overrides, stream, include_usage


def moderation_summary(response: Response) -> dict[str, Any]:
    """What the client may know about moderation: status and flagged categories per side (no text)."""

    def side(result) -> dict[str, Any] | None:
        if result is None:
            return None
        return {
            "flagged": result.flagged,
            "categories": [c for c, hit in (result.categories or {}).items() if hit],
            "backend": result.backend,
        }

    return {
        "status": response.status,
        "input": side(response.input_moderation),
        "output": side(response.output_moderation),
    }


def openai_moderation_result(result) -> dict[str, Any]:
    """One ``results[i]`` entry of OpenAI's moderation response from a :class:`ModerationResult`."""
    from rlhf.moderation.taxonomy import label_mapping

    ours = dict(result.categories or {})
    scores = dict(result.scores) if result.scores is not None else None
    categories, category_scores = {}, {}
    for label, ids in label_mapping("openai").items():
        categories[label] = any(ours.get(i, False) for i in ids)
        if scores is not None:
            category_scores[label] = max((float(scores.get(i, 0.0)) for i in ids), default=0.0)
        else:  # a backend that cannot score (rules) reports its decision as 0 or 1
            category_scores[label] = 1.0 if categories[label] else 0.0
    return {
        "flagged": bool(result.flagged),
        "categories": categories,
        "category_scores": category_scores,
        "rlhf": {
            "categories": ours,
            "category_scores": scores,
            "action": result.action,
            "reason": result.reason,
            "backend": result.backend,
            "side": result.side,
        },
    }


# ----------------------------------------------------------------------------------------------- batching
@dataclass
class _Job:
    conversation: list[dict[str, str]]
    overrides: dict[str, Any]
    done: threading.Event = field(default_factory=threading.Event)
    response: Response | None = None
    error: BaseException | None = None
    cancelled: bool = False


class Batcher:
    """Collects concurrent requests and answers them with one ``Pipeline.batch`` call per group."""

    def __init__(self, pipe: Pipeline, lock: threading.Lock, max_batch_size: int, wait_s: float):
        self.pipe, self.lock = pipe, lock
        self.max_batch_size, self.wait_s = max_batch_size, wait_s
        self.jobs: queue.Queue[_Job | None] = queue.Queue()
        self.batches: list[int] = []  # sizes of the batches run (for /health and tests)
        self.thread = threading.Thread(target=self._run, name="rlhf-serve-batcher", daemon=True)
        self.thread.start()

    def submit(self, conversation, overrides, timeout_s: float) -> Response:
        """Queue one request and wait for its response; raises RequestError(504) after ``timeout_s``."""
        job = _Job(conversation, overrides)
        self.jobs.put(job)
        if not job.done.wait(timeout_s):
            job.cancelled = True
            raise RequestError(504, f"no answer within {timeout_s:g} s; try again later", kind="timeout")
        if job.error is not None:
            raise job.error
        return job.response

    def stop(self, timeout_s: float | None = None) -> None:
        """End the worker after the batches already queued; waits up to ``timeout_s`` for it."""
        self.jobs.put(None)
        self.thread.join(timeout_s)

    def _run(self) -> None:
        while True:
            first = self.jobs.get()
            if first is None:
                return
            jobs = [first]
            deadline = time.monotonic() + self.wait_s
            while len(jobs) < self.max_batch_size:
                remaining = deadline - time.monotonic()
                try:
                    job = (
                        self.jobs.get(timeout=max(0.0, remaining))
                        if remaining > 0
                        else self.jobs.get_nowait()
                    )
                except queue.Empty:
                    break
                if job is None:
                    self.jobs.put(None)
                    break
                jobs.append(job)
            groups: dict[str, list[_Job]] = {}
            for job in jobs:
                if not job.cancelled:
                    groups.setdefault(json.dumps(job.overrides, sort_keys=True), []).append(job)
            for group in groups.values():
                self._answer(group)

    def _answer(self, group: list[_Job]) -> None:
        try:
            with self.lock:
                responses = self.pipe.batch([j.conversation for j in group], **group[0].overrides)
            self.batches.append(len(group))
            for job, response in zip(group, responses, strict=True):
                job.response = response
        except BaseException as err:  # handed to every waiting request
            for job in group:
                job.error = err
        finally:
            for job in group:
                job.done.set()


# ----------------------------------------------------------------------------------------------- server
class ChatServer(ThreadingHTTPServer):
    """A threading HTTP server holding the pipeline, its lock and the batcher."""

    daemon_threads = True
    request_queue_size = 128  # listen backlog: bursts of concurrent clients wait instead of being refused

    def __init__(self, pipe: Pipeline, args: ServeArguments):
        self.pipe, self.args = pipe, args
        self.model_name = args.served_model_name or pipe.name
        self.lock = threading.Lock()  # one thread uses the model (and moderators) at a time
        self.batcher = Batcher(pipe, self.lock, args.max_batch_size, args.batch_wait_ms / 1000)
        self.started = time.time()
        handler = type("Handler", (ChatRequestHandler,), {"timeout": args.read_timeout_s})
        super().__init__((args.host, args.port), handler)

    def server_close(self) -> None:
        self.batcher.stop(timeout_s=self.args.request_timeout_s)
        super().server_close()


class ChatRequestHandler(BaseHTTPRequestHandler):
    server: ChatServer
    protocol_version = "HTTP/1.1"
    server_version = "rlhf-serve"

    # ---------------------------------------------------------------- plumbing
    def log_message(self, format: str, *args) -> None:  # request lines only; never bodies
        logger.info("%s %s", self.address_string(), format % args)

    def _send_json(self, status: int, payload: Mapping[str, Any]) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(data)

    def _send_error(self, err: RequestError) -> None:
        self._send_json(err.status, err.body())

    def _read_json(self) -> dict[str, Any]:
        length = self.headers.get("Content-Length")
        if length is None:
            self.close_connection = True
            raise RequestError(411, "a Content-Length header is required")
        try:
            length = int(length)
        except ValueError:
            self.close_connection = True
            raise RequestError(400, "Content-Length must be an integer") from None
        limit = self.server.args.max_body_bytes
        if length > limit:
            self.close_connection = True
            if length <= 16 * limit:  # read it away so the client sees the answer, not a reset
                remaining = length
                while remaining > 0:
                    chunk = self.rfile.read(min(65536, remaining))
                    if not chunk:
                        break
                    remaining -= len(chunk)
            raise RequestError(413, f"request body of {length} bytes exceeds the limit of {limit} bytes")
        try:
            raw = self.rfile.read(length)
        except TimeoutError:
            self.close_connection = True
            raise RequestError(
                408, f"the request body did not arrive within {self.timeout:g} s", kind="timeout"
            ) from None
        if len(raw) < length:
            self.close_connection = True
            raise RequestError(400, f"the request body ended after {len(raw)} of {length} bytes")
        try:
            body = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise RequestError(400, f"malformed JSON body: {err}") from None
        if not isinstance(body, dict):
            raise RequestError(400, f"the JSON body must be an object, got {type(body).__name__}")
        return body

    # ---------------------------------------------------------------- routes
    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0].rstrip("/")
        if path == "/health":
            pipe = self.server.pipe
            self._send_json(
                200,
                {
                    "status": "ok",
                    "model": self.server.model_name,
                    "moderation": {
                        "input": getattr(pipe.input_moderator, "name", None),
                        "output": getattr(pipe.output_moderator, "name", None),
                    },
                    "uptime_s": round(time.time() - self.server.started, 3),
                    "batches": len(self.server.batcher.batches),
                    "max_batch_size_seen": max(self.server.batcher.batches, default=0),
                },
            )
        elif path == "/v1/models":
            self._send_json(
                200,
                {
                    "object": "list",
                    "data": [
                        {
                            "id": self.server.model_name,
                            "object": "model",
                            "created": int(self.server.started),
                            "owned_by": "rlhf",
                        }
                    ],
                },
            )
        else:
            self._send_error(RequestError(404, f"no route GET {path}", kind="not_found_error"))

    def do_POST(self) -> None:
        path = self.path.split("?", 1)[0].rstrip("/")
        try:
            if path not in ("/v1/chat/completions", "/v1/moderations"):
                self.close_connection = True  # the body was not read
                raise RequestError(404, f"no route POST {path}", kind="not_found_error")
            body = self._read_json()
            if path == "/v1/chat/completions":
                self._chat(body)
            else:
                self._send_json(200, self._moderations(body))
        except RequestError as err:
            self._send_error(err)
        except PipelineError as err:
            self._send_error(RequestError(400, str(err)))
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        except Exception as err:  # never the request text in the message: only the error's type
            logger.exception("request failed")
            self._send_error(RequestError(500, f"internal error ({type(err).__name__})", kind="server_error"))

    def _chat(self, body: Mapping[str, Any]) -> None:
        messages, overrides, stream, include_usage = parse_chat_request(
            body, self.server.args.max_tokens_limit
        )
        self.server.pipe.generation_settings(overrides)  # validate now: 400 before anything is queued
        completion_id = f"chatcmpl-{uuid.uuid4().hex[:24]}"
        created = int(time.time())
        if stream:
            self._chat_stream(messages, overrides, completion_id, created, include_usage)
            return
        response = self.server.batcher.submit(messages, overrides, self.server.args.request_timeout_s)
        self._send_json(
            200,
            {
                "id": completion_id,
                "object": "chat.completion",
                "created": created,
                "model": self.server.model_name,
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": response.text},
                        "finish_reason": response.finish_reason,
                    }
                ],
                "usage": _usage(response),
                "moderation": moderation_summary(response),
            },
        )

    def _chat_stream(
        self, messages, overrides, completion_id: str, created: int, include_usage: bool
    ) -> None:
        server = self.server
        if not server.lock.acquire(timeout=server.args.request_timeout_s):
            raise RequestError(504, "the model stayed busy; try again later", kind="timeout")
        chunks = server.pipe.stream(messages, **overrides)
        try:
            self.close_connection = True  # the stream ends when the connection closes
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Cache-Control", "no-cache")
            self.send_header("Connection", "close")
            self.end_headers()
            try:
                for payload in _sse_payloads(
                    chunks, completion_id, created, server.model_name, include_usage
                ):
                    self._send_event(payload)
            except (BrokenPipeError, ConnectionResetError):
                raise
            except Exception as err:  # headers are out: report the error as an event, then end the stream
                logger.exception("streamed request failed")
                self._send_event(
                    RequestError(500, f"internal error ({type(err).__name__})", kind="server_error").body()
                )
            self.wfile.write(b"data: [DONE]\n\n")
            self.wfile.flush()
        finally:
            chunks.close()  # stops generation if the client went away
            server.lock.release()

    def _send_event(self, payload: Mapping[str, Any]) -> None:
        self.wfile.write(b"data: " + json.dumps(payload).encode() + b"\n\n")
        self.wfile.flush()

    def _moderations(self, body: Mapping[str, Any]) -> dict[str, Any]:
        items = body.get("input")
        if isinstance(items, str):
            items = [items]
        if isinstance(items, list) and all(isinstance(i, Mapping) for i in items):  # [{"type": "text", ...}]
            if not all(i.get("type") == "text" and isinstance(i.get("text"), str) for i in items):
                raise RequestError(400, "'input' parts must be text parts", "input")
            items = [i["text"] for i in items]
        if not isinstance(items, list) or not items or not all(isinstance(i, str) for i in items):
            raise RequestError(400, "'input' must be a string or a non-empty list of strings", "input")
        side = body.get("side", "input")
        if side not in ("input", "output"):
            raise RequestError(400, "'side' must be 'input' or 'output'", "side")
        pipe = self.server.pipe
        moderator = pipe.input_moderator if side == "input" else pipe.output_moderator
        if moderator is None:
            raise RequestError(503, f"no {side} moderator is configured", kind="server_error")
        if not self.server.lock.acquire(timeout=self.server.args.request_timeout_s):
            raise RequestError(504, "the model stayed busy; try again later", kind="timeout")
        try:
            results = pipe.moderate(items, side=side)
        finally:
            self.server.lock.release()
        return {
            "id": f"modr-{uuid.uuid4().hex[:24]}",
            "model": f"rlhf-{moderator.name}",
            "results": [openai_moderation_result(r) for r in results],
        }


def _usage(response: Response) -> dict[str, int]:
    return {
        "prompt_tokens": response.prompt_tokens,
        "completion_tokens": response.completion_tokens,
        "total_tokens": response.prompt_tokens + response.completion_tokens,
    }


def _sse_payloads(
    chunks, completion_id: str, created: int, model: str, include_usage: bool
) -> Iterator[dict]:
    """OpenAI ``chat.completion.chunk`` objects for a pipeline stream."""

    def chunk(delta: dict, finish_reason: str | None = None, **extra) -> dict:
        return {
            "id": completion_id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
            **extra,
        }

    yield chunk({"role": "assistant", "content": ""})
    shown = False
    for piece in chunks:
        if not piece.final:
            if piece.text:
                shown = True
                yield chunk({"content": piece.text})
            continue
        response = piece.response
        moderation = moderation_summary(response)
        text = piece.text
        if piece.blocked and shown:  # the template replaces what was shown; a client may clear it
            moderation["replaces_streamed_content"] = True
            text = "\n\n" + text
        delta = {"content": text} if text else {}
        yield chunk(delta, response.finish_reason, moderation=moderation)
        if include_usage:
            yield {
                "id": completion_id,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "choices": [],
                "usage": _usage(response),
            }


def make_server(pipe: Pipeline, args: ServeArguments) -> ChatServer:
    """Bind a :class:`ChatServer` for ``pipe`` (call ``serve_forever()`` on it, ``shutdown()`` to stop)."""
    return ChatServer(pipe, args)


def main(pipeline_config: PipelineConfig, args: ServeArguments) -> dict:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    pipe = load_pipeline(pipeline_config, "rlhf serve")
    server = make_server(pipe, args)
    host, port = server.server_address[:2]
    print(f"rlhf serve: listening on http://{host}:{port} (model '{server.model_name}')", flush=True)

    def stop(signum, frame):
        raise KeyboardInterrupt

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, stop)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    print("rlhf serve: stopped", flush=True)
    return {"batches": len(server.batcher.batches), "batched_requests": sum(server.batcher.batches)}


def cli(argv=None):
    return run_cli(main, (PipelineConfig, ServeArguments), "rlhf serve", argv)


if __name__ == "__main__":
    cli()
