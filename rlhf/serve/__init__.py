"""OpenAI-compatible HTTP server over the moderated pipeline, on FastAPI + uvicorn (``pip install rlhf[serve]``).

    rlhf serve --config configs/quickstart/pipeline.yaml [--host 127.0.0.1] [--port 8000] [--api_key_file keys.txt]

Endpoints:

- ``POST /v1/chat/completions``: OpenAI's request and response shapes (``messages``, ``max_tokens`` /
  ``max_completion_tokens``, ``temperature``, ``top_p``, ``stream``, ``stream_options.include_usage``).
  ``stream: true`` answers with server-sent events of ``chat.completion.chunk`` objects ending with
  ``data: [DONE]``; ``stream_mode`` says when text leaves the server (``safe``: after the whole answer
  passed output moderation; ``checked``: in pieces, each checked, so a late block can follow sent text).
  A blocked request or answer gets the template as its content and ``finish_reason: "content_filter"``;
  every response (and a stream's final chunk) carries ``rlhf.moderation`` (status and flagged categories
  per side), never the blocked text. (Not ``moderation``: OpenAI's own responses use that name for
  another shape.)
- ``POST /v1/moderations``: OpenAI's response shape with OpenAI's category names (mapped from ours by the
  ``openai`` table of ``rlhf/moderation/categories.yaml``); ours are under ``results[i].rlhf``. An extra
  request field ``side`` (``input`` | ``output``) picks the side.
- ``GET /v1/models``, ``GET /health``, ``GET /metrics`` (Prometheus).

Modules: :mod:`~rlhf.serve.api` (request models, response shapes), :mod:`~rlhf.serve.batcher` (the queue in
front of the model), :mod:`~rlhf.serve.app` (routes and the gate: keys, limits), :mod:`~rlhf.serve.metrics`,
:mod:`~rlhf.serve.server` (arguments, keys, uvicorn).
"""

try:
    from rlhf.serve.api import ChatCompletionRequest, ModerationRequest, RequestError, sse_payloads
    from rlhf.serve.app import create_app
    from rlhf.serve.server import ServeArguments, cli, load_api_keys, main
except ImportError as _err:  # the serve extra is not installed: `rlhf serve` says so in one line
    if _err.name not in ("fastapi", "uvicorn", "prometheus_client", "starlette", "pydantic"):
        raise
    _missing = _err.name

    def cli(argv=None):
        import sys

        print(
            f"rlhf serve: error: {_missing} is not installed; install the serve extra: pip install 'rlhf[serve]'",
            file=sys.stderr,
        )
        raise SystemExit(2)


__all__ = [
    "ChatCompletionRequest",
    "ModerationRequest",
    "RequestError",
    "ServeArguments",
    "cli",
    "create_app",
    "load_api_keys",
    "main",
    "sse_payloads",
]
