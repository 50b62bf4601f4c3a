"""The FastAPI application: routes in OpenAI's shapes over the batcher, behind the gate (:mod:`rlhf.serve.gate`:
keys, concurrency, body size and read deadline)."""

from __future__ import annotations

import asyncio
import copy
import logging
import re
import threading
import time
import uuid
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.exceptions import HTTPException as StarletteHTTPException

from rlhf.pipeline import Pipeline
from rlhf.responses import PipelineError, StreamChunk, normalize_request
from rlhf.serve.api import (
    ChatCompletionRequest,
    ChunkWriter,
    ModerationRequest,
    RequestError,
    chat_completion,
    error_body,
    moderation_summary,
    openai_moderation_result,
    sse_payloads,
)
from rlhf.serve.batcher import Batcher, Job, QueueFull
from rlhf.serve.gate import Gate, error_response
from rlhf.serve.metrics import ServerMetrics

logger = logging.getLogger("rlhf.serve")
_UNION_TAG = re.compile(
    r"^(str|int|float|bool|list\[.*\]|literal\[.*\]|[A-Z]\w*)$"
)  # pydantic's union member names


class ClientGone(Exception):
    """The client closed the connection before its answer was ready."""


# ----------------------------------------------------------------------------------------------- state
class ServerState:
    """What the routes share: the pipeline, its batcher, limits, keys and metrics."""

    def __init__(self, pipe: Pipeline, args, api_keys: list[str]):
        self.pipe, self.args = pipe, args
        self.api_keys = [k.encode() for k in api_keys]
        self.model_name = args.served_model_name or pipe.name
        self.metrics = ServerMetrics(args.max_batch_size)
        self.batcher = Batcher(
            pipe,
            args.max_batch_size,
            args.batch_wait_ms / 1000,
            args.max_queue_size,
            self.metrics.observe_batch,
        )
        self.in_flight = 0
        self.started = time.time()
        # The prompt limit: the pipeline's max_prompt_tokens, else the model's context length.
        config = getattr(pipe.model, "config", None)
        self.max_prompt_tokens = pipe.max_prompt_tokens or getattr(config, "max_position_embeddings", None)
        # Prompts are counted off the event loop with a copy of the tokenizer: the model thread's copy
        # changes padding settings per call, and a Rust tokenizer refuses concurrent mutable use.
        self._count_tokenizer = copy.deepcopy(pipe.tokenizer)
        self._count_lock = threading.Lock()

    def prompt_tokens(self, conversation: list[dict[str, str]]) -> int:
        with self._count_lock:
            tok = self._count_tokenizer
            text = tok.apply_chat_template(
                normalize_request(conversation, self.pipe.system_prompt),
                tokenize=False,
                add_generation_prompt=True,
            )
            return len(tok(text, add_special_tokens=False)["input_ids"])


# ----------------------------------------------------------------------------------------------- app
def create_app(pipe: Pipeline, args, api_keys: list[str] | None = None) -> FastAPI:
    """The FastAPI app serving ``pipe`` under ``args`` (a ``ServeArguments``); ``api_keys``: accepted keys."""
    state = ServerState(pipe, args, list(api_keys or []))

    @asynccontextmanager
    async def lifespan(app):
        state.batcher.start()
        yield
        await state.batcher.stop()

    app = FastAPI(title="rlhf serve", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.add_middleware(Gate, state=state)
    app.state.rlhf = state

    @app.exception_handler(RequestError)
    async def request_error(request, err: RequestError):
        return error_response(err, retry=err.status in (429, 503))

    @app.exception_handler(RequestValidationError)
    async def validation_error(request, err: RequestValidationError):
        first = err.errors()[0]
        if first.get("type") == "json_invalid":
            return error_response(RequestError(400, f"malformed JSON body: {first.get('msg')}"))
        loc = [
            str(part) for part in first.get("loc", ()) if part != "body" and not _UNION_TAG.match(str(part))
        ]
        param = ".".join(loc) or None
        message = f"{param or 'body'}: {first.get('msg')}"
        return error_response(RequestError(400, message, param))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request, err: StarletteHTTPException):
        kind = "not_found_error" if err.status_code == 404 else "invalid_request_error"
        return JSONResponse(error_body(str(err.detail), kind), status_code=err.status_code)

    @app.exception_handler(ClientGone)
    async def client_gone(request, err: ClientGone):  # nobody reads it; counted as nginx's 499
        return Response(status_code=499)

    @app.exception_handler(PipelineError)
    async def pipeline_error(request, err: PipelineError):
        return error_response(RequestError(400, str(err)))

    @app.exception_handler(Exception)
    async def internal_error(request, err: Exception):  # the type only: a message may quote the request
        logger.error("request failed: %s", type(err).__name__)
        body = error_body(f"internal error ({type(err).__name__})", "server_error")
        return JSONResponse(body, status_code=500)

    @app.get("/health")
    async def health():
        return {
            "status": "ok",
            "model": state.model_name,
            "moderation": {
                "input": getattr(pipe.input_moderator, "name", None),
                "output": getattr(pipe.output_moderator, "name", None),
            },
            "stream_mode": args.stream_mode,
            "uptime_s": round(time.time() - state.started, 3),
            "queue_depth": state.batcher.depth(),
            "batches": len(state.batcher.batches),
            "max_batch_size_seen": max(state.batcher.batches, default=0),
        }

    @app.get("/metrics")
    async def metrics():
        state.metrics.queue_depth.set(state.batcher.depth())
        return Response(generate_latest(state.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/v1/models")
    async def models():
        model = {"id": state.model_name, "object": "model", "created": int(state.started), "owned_by": "rlhf"}
        return {"object": "list", "data": [model]}

    @app.post("/v1/chat/completions")
    async def chat_completions(body: ChatCompletionRequest, request: Request):
        conversation = body.conversation()
        overrides = body.overrides(args.max_tokens_limit)
        pipe.generation_settings(overrides)  # a bad setting is a 400 before anything is queued
        await _check_prompt_length(state, conversation)
        completion_id, created = f"chatcmpl-{uuid.uuid4().hex[:24]}", int(time.time())
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        if body.stream and args.stream_mode == "checked":
            return await _checked_stream(
                state, request, conversation, overrides, completion_id, created, include_usage
            )
        job = _submit(state, Job("chat", conversation, overrides))
        response = await _wait(state, request, job)
        state.metrics.observe_response(response)
        if not body.stream:
            return chat_completion(response, completion_id, created, state.model_name)
        # safe mode: the whole answer was generated and checked before the first byte goes out
        final = StreamChunk(response.text, final=True, blocked=response.blocked, response=response)
        payloads = list(sse_payloads([final], completion_id, created, state.model_name, include_usage))
        return _sse(_events(payloads))

    @app.post("/v1/moderations")
    async def moderations(body: ModerationRequest, request: Request):
        texts = body.texts()
        moderator = pipe.input_moderator if body.side == "input" else pipe.output_moderator
        if moderator is None:
            raise RequestError(503, f"no {body.side} moderator is configured", kind="server_error")
        job = _submit(state, Job("call", fn=lambda cancel: pipe.moderate(texts, side=body.side)))
        results = await _wait(state, request, job)
        return {
            "id": f"modr-{uuid.uuid4().hex[:24]}",
            "model": f"rlhf-{moderator.name}",
            "results": [openai_moderation_result(r) for r in results],
        }

    return app


# ----------------------------------------------------------------------------------------------- helpers
async def _check_prompt_length(state: ServerState, conversation) -> None:
    limit = state.max_prompt_tokens
    if limit is None:
        return
    n = await asyncio.to_thread(state.prompt_tokens, conversation)
    if n > limit:
        raise RequestError(
            400, f"the prompt is {n} tokens; max_prompt_tokens is {limit}", "max_prompt_tokens"
        )


def _submit(state: ServerState, job: Job) -> Job:
    try:
        return state.batcher.submit(job)
    except QueueFull:
        raise RequestError(
            429,
            f"the queue is full ({state.args.max_queue_size} requests waiting); retry later",
            kind="rate_limit_error",
        ) from None


async def _disconnected(request: Request) -> None:
    """Returns when the client has closed the connection (uvicorn's ``http.disconnect``)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def _wait(state: ServerState, request: Request, job: Job) -> Any:
    """The job's result; cancels its generation and raises when the request timed out or its client left."""
    gone = asyncio.ensure_future(_disconnected(request))
    try:
        done, _ = await asyncio.wait(
            {job.future, gone}, timeout=state.args.request_timeout_s, return_when=asyncio.FIRST_COMPLETED
        )
    finally:
        gone.cancel()
    if job.future.done():
        return job.future.result()
    job.cancel.set()  # stops its rows of generate() at the next token, or skips it if still queued
    if gone in done:
        state.metrics.cancelled.labels("disconnect").inc()
        raise ClientGone
    state.metrics.cancelled.labels("timeout").inc()
    raise RequestError(
        504, f"no answer within {state.args.request_timeout_s:g} s; try again later", kind="timeout"
    )


async def _checked_stream(state, request, conversation, overrides, completion_id, created, include_usage):
    """``stream_mode: checked``: pieces of the answer as they pass output moderation (see the README)."""
    loop = asyncio.get_running_loop()
    events: asyncio.Queue = asyncio.Queue()

    def put(kind, value=None):
        loop.call_soon_threadsafe(events.put_nowait, (kind, value))

    def run(cancel: threading.Event):  # on the model thread
        put("started")
        try:
            for piece in state.pipe.stream(conversation, cancel=cancel, **overrides):
                put("piece", piece)
        except Exception as err:
            put("error", err)
        finally:
            put("end")

    job = _submit(state, Job("call", fn=run))
    began = time.perf_counter()
    # Wait for the model to take the job: a 504 or a dropped client is still answered without a stream.
    started = asyncio.ensure_future(events.get())
    gone = asyncio.ensure_future(_disconnected(request))
    try:
        done, _ = await asyncio.wait(
            {started, gone}, timeout=state.args.request_timeout_s, return_when=asyncio.FIRST_COMPLETED
        )
    finally:
        gone.cancel()
    if started not in done:
        started.cancel()
        job.cancel.set()
        if gone in done:
            state.metrics.cancelled.labels("disconnect").inc()
            raise ClientGone
        state.metrics.cancelled.labels("timeout").inc()
        raise RequestError(
            504, f"no answer within {state.args.request_timeout_s:g} s; try again later", kind="timeout"
        )
    queue_s = time.perf_counter() - began
    deadline = loop.time() + state.args.request_timeout_s

    async def stream():
        writer = ChunkWriter(completion_id, created, state.model_name, include_usage)
        finished = False
        try:
            yield _event(writer.first())
            async for piece in _pieces():
                for payload in writer.payloads(piece):
                    yield _event(payload)
            finished = True
        finally:
            if not finished:  # client gone (the stream was cancelled) or an error: stop generate()
                if not job.cancel.is_set():
                    state.metrics.cancelled.labels("disconnect").inc()
                job.cancel.set()

    async def _pieces():
        while True:
            try:
                async with asyncio.timeout_at(deadline):
                    kind, value = await events.get()
            except TimeoutError:
                job.cancel.set()
                state.metrics.cancelled.labels("timeout").inc()
                raise
            if kind == "piece":
                if value.final:
                    state.metrics.observe_response(value.response, queue_s)
                yield value
            elif kind == "error":
                raise value
            elif kind == "end":
                return

    return _sse(_async_sse(stream()))


async def _async_sse(payloads):
    """Server-sent events from an async iterator of already formatted events; errors end the stream."""
    try:
        async for event in payloads:
            yield event
    except TimeoutError:
        yield _event(error_body("no complete answer within the request timeout", "timeout"))
    except Exception as err:  # headers are out: report the error as an event, then end the stream
        logger.error("streamed request failed: %s", type(err).__name__)
        yield _event(error_body(f"internal error ({type(err).__name__})", "server_error"))
    yield b"data: [DONE]\n\n"


async def _events(payloads: list[dict]):
    for payload in payloads:
        yield _event(payload)
    yield b"data: [DONE]\n\n"


def _event(payload: dict) -> bytes:
    import json

    return b"data: " + json.dumps(payload).encode() + b"\n\n"


def _sse(body) -> StreamingResponse:
    return StreamingResponse(body, media_type="text/event-stream", headers={"Cache-Control": "no-cache"})


__all__ = ["ClientGone", "ServerState", "create_app", "moderation_summary"]
