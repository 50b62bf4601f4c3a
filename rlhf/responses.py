"""What the moderated pipeline takes and gives: a request, a :class:`Response`, a :class:`StreamChunk`.

A request is a string (one user message) or a conversation (a list of ``{"role", "content"}`` messages
ending with a user message); :func:`normalize_request` turns either into a conversation. A mistake in a
request or a pipeline setting raises :class:`PipelineError`, a ConfigError (``rlhf chat`` and ``rlhf serve``
stop with one line at start-up; the server answers a bad request with 400).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from rlhf.config import ConfigError
from rlhf.moderation.base import ModerationResult

STATUSES = ("answered", "blocked_input", "blocked_output")

Request = str | Sequence[Mapping[str, str]]


class PipelineError(ConfigError):
    """A pipeline configuration or request is wrong; the message names the field and what was expected."""


@dataclass
class Response:
    """What the pipeline answered to one request.

    Attributes:
        text: the text shown to the user: the model's answer, or a template when blocked.
        status: "answered", "blocked_input" (the request was blocked; the model never ran) or
            "blocked_output" (the answer was blocked and replaced).
        input_moderation: the input check's result (None without an input moderator).
        output_moderation: the answer check's result (None when the model did not run or there is no
            output moderator).
        timings: seconds per step: ``input_moderation``, ``generation``, ``output_moderation``, ``total``
            (streams add ``first_chunk``). In a batch each step's time is the whole batch's, i.e. what
            every request in it waited.
        finish_reason: "stop" (end of turn), "length" (max_new_tokens reached) or "content_filter" (blocked).
        prompt_tokens: tokens of the rendered prompt (0 when blocked at input).
        completion_tokens: tokens generated (also for a blocked answer; its text is gone).
    """

    text: str
    status: str
    input_moderation: ModerationResult | None
    output_moderation: ModerationResult | None
    timings: dict[str, float]
    finish_reason: str = "stop"
    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def blocked(self) -> bool:
        return self.status != "answered"

    @property
    def blocking_result(self) -> ModerationResult | None:
        """The moderation result that blocked this request (None when answered)."""
        if self.status == "blocked_input":
            return self.input_moderation
        if self.status == "blocked_output":
            return self.output_moderation
        return None

    @property
    def flagged_categories(self) -> list[str]:
        """Category ids of the blocking result (empty when answered)."""
        result = self.blocking_result
        return [c for c, hit in (result.categories or {}).items() if hit] if result else []

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe dict of every field."""
        return asdict(self)


@dataclass
class StreamChunk:
    """One piece of a streamed answer.

    Attributes:
        text: new text to append to what was shown so far (may be empty on the final chunk).
        final: the last chunk; ``response`` holds the complete :class:`Response`.
        blocked: ``text`` is a template that replaces the answer (the request or answer was blocked).
        response: the complete response, on the final chunk only.
    """

    text: str
    final: bool = False
    blocked: bool = False
    response: Response | None = None


def normalize_request(request: Request, system_prompt: str | None = None) -> list[dict[str, str]]:
    """A request as a conversation: a string becomes one user message; a system prompt is prepended
    when the conversation has none. Raises PipelineError on a malformed conversation."""
    if isinstance(request, str):
        messages = [{"role": "user", "content": request}]
    elif isinstance(request, Sequence) and not isinstance(request, bytes | bytearray):
        messages = []
        for i, message in enumerate(request):
            if not isinstance(message, Mapping) or "role" not in message or "content" not in message:
                raise PipelineError(f"messages[{i}] must be a mapping with 'role' and 'content'")
            role, content = message["role"], message["content"]
            if role not in ("system", "user", "assistant"):
                raise PipelineError(f"messages[{i}].role must be system, user or assistant, got {role!r}")
            if not isinstance(content, str):
                raise PipelineError(f"messages[{i}].content must be a string")
            messages.append({"role": role, "content": content})
        if not messages:
            raise PipelineError("a conversation needs at least one message")
        if messages[-1]["role"] != "user":
            raise PipelineError("the last message of a conversation must be the user's")
    else:
        raise PipelineError(f"a request is a string or a list of messages, got {type(request).__name__}")
    if system_prompt and messages[0]["role"] != "system":
        messages.insert(0, {"role": "system", "content": system_prompt})
    return messages
