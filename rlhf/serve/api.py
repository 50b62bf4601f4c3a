"""OpenAI's request and response shapes: pydantic request models and the JSON the server sends back.

Request models are strict (``"stream": "yes"`` or ``"max_tokens": "5"`` is an error naming the field,
not a silent conversion) and ignore fields they do not know, as OpenAI-compatible servers do.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from rlhf.responses import PipelineError, Response, normalize_request


class RequestError(Exception):
    """A client error: HTTP status, message and the offending parameter (OpenAI's error shape)."""

    def __init__(
        self,
        status: int,
        message: str,
        param: str | None = None,
        kind: str = "invalid_request_error",
        headers: dict[str, str] | None = None,
    ):
        super().__init__(message)
        self.status, self.message, self.param, self.kind = status, message, param, kind
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return error_body(self.message, self.kind, self.param)


def error_body(message: str, kind: str = "invalid_request_error", param: str | None = None) -> dict:
    return {"error": {"message": message, "type": kind, "param": param, "code": None}}


class _Strict(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore")


class TextPart(_Strict):
    type: Literal["text"]
    text: str


class ChatMessage(_Strict):
    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[TextPart] | None = None


class StreamOptions(_Strict):
    include_usage: bool = False


class ChatCompletionRequest(_Strict):
    """The fields of OpenAI's ``POST /v1/chat/completions`` this server uses."""

    model: str | None = None
    messages: list[ChatMessage] = Field(min_length=1)
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, gt=0, le=1)
    n: Literal[1] | None = None
    stream: bool | None = False
    stream_options: StreamOptions | None = None

    def conversation(self) -> list[dict[str, str]]:
        """The messages as the pipeline's conversation (``developer`` is ``system``; text parts joined)."""
        messages = []
        for m in self.messages:
            content = m.content if isinstance(m.content, str) else "".join(p.text for p in m.content or [])
            messages.append({"role": "system" if m.role == "developer" else m.role, "content": content})
        try:
            return normalize_request(messages)
        except PipelineError as err:
            raise RequestError(400, str(err), "messages") from None

    def overrides(self, max_tokens_limit: int) -> dict[str, Any]:
        """The pipeline's generation overrides; RequestError (400) for ``max_tokens`` over the limit."""
        overrides: dict[str, Any] = {}
        max_tokens = self.max_completion_tokens or self.max_tokens
        if max_tokens is not None:
            if max_tokens > max_tokens_limit:
                raise RequestError(
                    400,
                    f"'max_tokens' is {max_tokens}; the server allows 1..{max_tokens_limit}",
                    "max_tokens",
                )
            overrides["max_new_tokens"] = max_tokens
        if self.temperature is not None:
            overrides["do_sample"] = self.temperature > 0
            if self.temperature > 0:
                overrides["temperature"] = float(self.temperature)
        if self.top_p is not None:
            overrides["top_p"] = float(self.top_p)
        return overrides


class ModerationRequest(_Strict):
    """OpenAI's ``POST /v1/moderations`` body, plus ``side`` (which side's moderator answers)."""

    model: str | None = None
    input: str | list[str] | list[TextPart]
    side: Literal["input", "output"] = "input"

    def texts(self) -> list[str]:
        items = [self.input] if isinstance(self.input, str) else self.input
        texts = [i if isinstance(i, str) else i.text for i in items]
        if not texts:
            raise RequestError(400, "'input' must be a string or a non-empty list of strings", "input")
        return texts


# ----------------------------------------------------------------------------------------------- responses
def usage(response: Response) -> dict[str, int]:
    return {
        "prompt_tokens": response.prompt_tokens,
        "completion_tokens": response.completion_tokens,
        "total_tokens": response.prompt_tokens + response.completion_tokens,
    }


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


def chat_completion(response: Response, completion_id: str, created: int, model: str) -> dict[str, Any]:
    """OpenAI's ``chat.completion`` object for a pipeline response."""
    return {
        "id": completion_id,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": response.text},
                "finish_reason": response.finish_reason,
            }
        ],
        "usage": usage(response),
        # under "rlhf": OpenAI's own chat completion has a "moderation" field of another shape
        "rlhf": {"moderation": moderation_summary(response)},
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


class ChunkWriter:
    """OpenAI ``chat.completion.chunk`` objects for the pieces of a pipeline stream (``StreamChunk``s).

    ``first()`` is the role chunk; ``payloads(piece)`` the chunks for one piece. A stream of one final
    piece (the safe mode's whole, checked answer) gives one content chunk and the finish chunk. When an
    answer is blocked after some of it was sent (checked mode), the template follows the sent text and
    the final chunk's ``rlhf.moderation.replaces_streamed_content`` is true.
    """

    def __init__(self, completion_id: str, created: int, model: str, include_usage: bool):
        self.head = {
            "id": completion_id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
        }
        self.include_usage = include_usage
        self.shown = False

    def chunk(self, delta: dict, finish_reason: str | None = None, **extra) -> dict:
        return {
            **self.head,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
            **extra,
        }

    def first(self) -> dict:
        return self.chunk({"role": "assistant", "content": ""})

    def payloads(self, piece) -> list[dict]:
        if not piece.final:
            self.shown = self.shown or bool(piece.text)
            return [self.chunk({"content": piece.text})] if piece.text else []
        response = piece.response
        moderation = moderation_summary(response)
        text = piece.text
        if piece.blocked and self.shown:  # the template replaces what was shown; a client may clear it
            moderation["replaces_streamed_content"] = True
            text = "\n\n" + text
        out = [self.chunk({"content": text})] if text else []
        out.append(self.chunk({}, response.finish_reason, rlhf={"moderation": moderation}))
        if self.include_usage:
            out.append({**self.head, "choices": [], "usage": usage(response)})
        return out


def sse_payloads(chunks, completion_id: str, created: int, model: str, include_usage: bool) -> Iterator[dict]:
    """Every chunk object of a whole pipeline stream (see :class:`ChunkWriter`)."""
    writer = ChunkWriter(completion_id, created, model, include_usage)
    yield writer.first()
    for piece in chunks:
        yield from writer.payloads(piece)
