"""The moderation-gated answer flow: input moderation -> ``model.generate`` -> output moderation.

    from rlhf.pipeline import Pipeline
    pipe = Pipeline.from_config("configs/quickstart/pipeline.yaml")
    response = pipe("What is the capital of Velmora?")
    response.text, response.status, response.timings
    responses = pipe.batch(["first question", [{"role": "user", "content": "second"}]])
    for chunk in pipe.stream("tell me a story"):
        print(chunk.text, end="", flush=True)

A request is a string (one user message) or a conversation (a list of ``{"role", "content"}`` messages
ending with a user message). Per request the pipeline returns a :class:`Response`: the text shown to
the user, a status (``answered``, ``blocked_input``, ``blocked_output``), both moderation results and
the seconds each step took.

- **Batched**: ``batch()`` moderates all inputs in one call, generates every admitted request in one
  left-padded ``model.generate`` call, and moderates all answers in one call.
- **Streaming**: ``stream()`` holds generated tokens back until the text that contains them has passed
  output moderation. Every ``stream_check_every`` new tokens it checks the unreleased tokens together
  with the last ``stream_overlap`` already released ones (so a phrase split across two checks is still
  seen whole); when a check flags, generation stops and the template replaces the answer. At the end
  the whole answer is checked once more (the same check as the non-streamed path) before the last
  held-back text is released. Text released before a block passed its own check; the blocked part never
  leaves the pipeline.
- **Blocked text stays inside**: a blocked answer is replaced by a template (:mod:`rlhf.templates`)
  before it reaches the caller, a stream chunk or the logs; the logs carry counts, statuses and
  categories only, never request or answer text, at any level.
- **Fail closed**: a moderator that raises blocks the request (``on_moderation_error: allow`` to
  fail open).
"""

from __future__ import annotations

import json
import logging
import os
import queue
import sys
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rlhf.moderation.base import ModerationResult, Moderator
from rlhf.moderation.config import load_moderation_config
from rlhf.moderation.factory import build_moderator
from rlhf.templates import Templates

logger = logging.getLogger(__name__)

STATUSES = ("answered", "blocked_input", "blocked_output")
# Settings a caller may override per request (``pipe(prompt, max_new_tokens=16)``, the server's fields).
GENERATION_KEYS = ("max_new_tokens", "do_sample", "temperature", "top_p", "top_k", "repetition_penalty")
SAMPLING_KEYS = ("temperature", "top_p", "top_k")  # only meaningful with do_sample=True

Request = str | Sequence[Mapping[str, str]]


class PipelineError(ValueError):
    """A pipeline configuration or request is wrong; the message names the field and what was expected."""


@dataclass
class PipelineConfig:
    """
    The moderated answering pipeline: the model, its moderators, templates and generation settings.

    Shared by `rlhf chat` and `rlhf serve` (and `Pipeline.from_config`); paths are relative to the
    working directory.

    Args:
        model_name_or_path (`str`, *optional*, defaults to `"runs/quickstart/ppo/merged"`):
            Causal LM to answer with: a local directory, a Hub id, or a `.gguf` file.
        tokenizer_name_or_path (`str` or `None`, *optional*, defaults to `None`):
            Tokenizer (with a chat template); `None`: the model's own.
        chat_template_path (`str` or `None`, *optional*, defaults to `None`):
            A Jinja file, or a tokenizer (directory or Hub id) whose chat template replaces the tokenizer's.
        gguf_file (`str` or `None`, *optional*, defaults to `None`):
            GGUF file name inside `model_name_or_path` (a directory or Hub repo) to load.
        dtype (`str`, *optional*, defaults to `"auto"`):
            Model weights dtype: `auto` (as saved), `float32`, `bfloat16` or `float16`.
        device (`str`, *optional*, defaults to `"auto"`):
            `auto` (CUDA when available, else CPU), `cpu`, `cuda`, `cuda:1`, `mps`.
        moderation_config (`str` or `None`, *optional*, defaults to `"configs/quickstart/moderation.yaml"`):
            YAML file holding a `moderation:` mapping; it moderates both sides unless the output side has
            its own. `None` (and no inline `moderation`): no moderation.
        moderation (`dict` or `None`, *optional*, defaults to `None`):
            The `moderation:` mapping inline; used instead of `moderation_config` when set.
        output_moderation_config (`str` or `None`, *optional*, defaults to `None`):
            A different moderation YAML for the answers (side `output`); `None`: the same as the input's.
        output_moderation (`dict` or `None`, *optional*, defaults to `None`):
            The output side's `moderation:` mapping inline.
        on_moderation_error (`str`, *optional*, defaults to `"block"`):
            When a moderator raises: `block` (fail closed) or `allow` (fail open).
        templates (`dict` or `None`, *optional*, defaults to `None`):
            Template responses laid over the built-in ones: `{default, input: {category: text},
            output: {category: text}, priority: [...]}` (see `rlhf.templates`).
        system_prompt (`str` or `None`, *optional*, defaults to `None`):
            A system message put in front of conversations that have none.
        max_new_tokens (`int`, *optional*, defaults to `64`):
            Longest answer, in tokens.
        do_sample (`bool`, *optional*, defaults to `False`):
            Sample (with `temperature`, `top_p`, `top_k`) instead of greedy decoding.
        temperature (`float`, *optional*, defaults to `1.0`):
            Sampling temperature (with `do_sample`).
        top_p (`float`, *optional*, defaults to `1.0`):
            Nucleus sampling mass (with `do_sample`).
        top_k (`int` or `None`, *optional*, defaults to `None`):
            Sample among the k likeliest tokens (with `do_sample`); `None`: no limit.
        repetition_penalty (`float`, *optional*, defaults to `1.0`):
            Penalty on tokens already present (1.0 = none).
        max_prompt_tokens (`int` or `None`, *optional*, defaults to `None`):
            Keep only the last this-many prompt tokens (older turns are cut); `None`: no limit.
        batch_size (`int`, *optional*, defaults to `16`):
            Requests per `model.generate` call in `Pipeline.batch`.
        stream_check_every (`int`, *optional*, defaults to `8`):
            Streaming: check the held-back answer every this many new tokens.
        stream_overlap (`int`, *optional*, defaults to `16`):
            Streaming: already released tokens re-checked with each new window (catches phrases split
            across two windows).
    """

    model_name_or_path: str = field(
        default="runs/quickstart/ppo/merged", metadata={"help": "Causal LM: directory, Hub id or .gguf file."}
    )
    tokenizer_name_or_path: str | None = field(
        default=None, metadata={"help": "Tokenizer with a chat template; None: the model's own."}
    )
    chat_template_path: str | None = field(
        default=None,
        metadata={"help": "Jinja file or tokenizer whose chat template to use; None: the tokenizer's."},
    )
    gguf_file: str | None = field(default=None, metadata={"help": "GGUF file inside model_name_or_path."})
    dtype: str = field(
        default="auto",
        metadata={"help": "Weights dtype.", "choices": ["auto", "float32", "bfloat16", "float16"]},
    )
    device: str = field(default="auto", metadata={"help": "auto, cpu, cuda, cuda:N or mps."})
    moderation_config: str | None = field(
        default="configs/quickstart/moderation.yaml",
        metadata={"help": "YAML file with a `moderation:` mapping (both sides)."},
    )
    moderation: dict[str, Any] | None = field(
        default=None, metadata={"help": "The `moderation:` mapping inline (replaces moderation_config)."}
    )
    output_moderation_config: str | None = field(
        default=None, metadata={"help": "Moderation YAML for answers; None: the same as the input's."}
    )
    output_moderation: dict[str, Any] | None = field(
        default=None, metadata={"help": "The output side's `moderation:` mapping inline."}
    )
    on_moderation_error: str = field(
        default="block",
        metadata={"help": "A moderator raises: block or allow.", "choices": ["block", "allow"]},
    )
    templates: dict[str, Any] | None = field(
        default=None, metadata={"help": "Template responses over the built-in ones (rlhf.templates)."}
    )
    system_prompt: str | None = field(
        default=None, metadata={"help": "System message for conversations without one."}
    )
    max_new_tokens: int = field(default=64, metadata={"help": "Longest answer, in tokens."})
    do_sample: bool = field(default=False, metadata={"help": "Sample instead of greedy decoding."})
    temperature: float = field(default=1.0, metadata={"help": "Sampling temperature."})
    top_p: float = field(default=1.0, metadata={"help": "Nucleus sampling mass."})
    top_k: int | None = field(default=None, metadata={"help": "Sample among the k likeliest tokens."})
    repetition_penalty: float = field(default=1.0, metadata={"help": "1.0 = no penalty."})
    max_prompt_tokens: int | None = field(
        default=None, metadata={"help": "Keep only the last N prompt tokens; None: all."}
    )
    batch_size: int = field(default=16, metadata={"help": "Requests per generate call in batch()."})
    stream_check_every: int = field(
        default=8, metadata={"help": "Streaming: moderate the held-back answer every N new tokens."}
    )
    stream_overlap: int = field(
        default=16, metadata={"help": "Streaming: released tokens re-checked with each window."}
    )

    def __post_init__(self):
        for name in ("max_new_tokens", "batch_size", "stream_check_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.stream_overlap < 0:
            raise ValueError(f"stream_overlap must be >= 0, got {self.stream_overlap}")
        if self.on_moderation_error not in ("block", "allow"):
            raise ValueError(
                f"on_moderation_error must be 'block' or 'allow', got {self.on_moderation_error!r}"
            )

    def generation_kwargs(self) -> dict[str, Any]:
        """The generation settings as ``model.generate`` keyword arguments."""
        return {key: getattr(self, key) for key in GENERATION_KEYS}


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


def _error_result(moderator: Moderator, side: str, err: Exception, block: bool, seconds: float):
    """A result standing in for a moderator that raised (fail closed or open)."""
    return ModerationResult(
        flagged=block,
        action="block" if block else "allow",
        categories={},
        scores=None,
        thresholds=None,
        reason=f"moderator error ({type(err).__name__}); failing {'closed' if block else 'open'}",
        backend=getattr(moderator, "name", type(moderator).__name__),
        latency_s=seconds,
        side=side,
    )


def _stop_flag(event):
    """A stopping criterion that ends generation once ``event`` is set (a streamed answer was flagged, or
    the caller cancelled). ``event``: one flag for every row, or a list of one flag per row (anything
    with ``is_set()``); a row whose flag is set stops at the next step while the others go on."""
    from transformers import StoppingCriteria

    class StopFlag(StoppingCriteria):
        def __call__(self, input_ids, scores, **kwargs):
            import torch

            if isinstance(event, Sequence):
                return torch.tensor([e.is_set() for e in event], dtype=torch.bool, device=input_ids.device)
            return torch.full(
                (input_ids.shape[0],), event.is_set(), dtype=torch.bool, device=input_ids.device
            )

    return StopFlag()


def _with_stop_flag(kwargs: dict[str, Any], event) -> dict[str, Any]:
    """``kwargs`` plus a :func:`_stop_flag` criterion for ``event`` (unchanged when ``event`` is None)."""
    if event is None:
        return kwargs
    return {**kwargs, "stopping_criteria": [*(kwargs.get("stopping_criteria") or []), _stop_flag(event)]}


class _ModeratedStreamer:
    """Receives tokens from ``model.generate`` and releases text only after output moderation passed.

    Runs in the generation thread. Events go to ``events``: ("text", str) for released text.
    """

    def __init__(self, pipe: Pipeline, conversation: list[dict[str, str]], events: queue.Queue, stop):
        self.pipe, self.conversation, self.events, self.stop = pipe, conversation, events, stop
        self.prompt_seen = False
        self.tokens: list[int] = []
        self.released_tokens = 0
        self.released_chars = 0
        self.flagged: ModerationResult | None = None
        self.moderation_s = 0.0

    def put(self, value) -> None:
        if not self.prompt_seen:  # generate() first hands over the prompt
            self.prompt_seen = True
            return
        if self.stop.is_set():
            return
        self.tokens.extend(int(t) for t in value.reshape(-1).tolist())
        if len(self.tokens) - self.released_tokens >= self.pipe.stream_check_every:
            self.check_and_release()

    def end(self) -> None:
        pass  # the remaining held-back text is released by stream() after the whole-answer check

    def text(self) -> str:
        return self.pipe._decode(self.tokens)

    def check_and_release(self) -> None:
        """Moderate the held-back tokens plus an overlap of released ones; release them or stop."""
        start = max(0, self.released_tokens - self.pipe.stream_overlap)
        window = self.pipe._decode(self.tokens[start:])
        if not window.strip():  # only whitespace so far: nothing to check or show yet
            return
        item = [*self.conversation, {"role": "assistant", "content": window}]
        began = time.perf_counter()
        [result] = self.pipe._moderate(self.pipe.output_moderator, [item], "output")
        self.moderation_s += time.perf_counter() - began
        if result is not None and result.flagged:
            self.flagged = result
            self.stop.set()
            return
        pending = self.take_pending(self.text())
        if pending:
            self.events.put(("text", pending))

    def take_pending(self, full_text: str) -> str:
        """The part of ``full_text`` not released yet (minus an unfinished UTF-8 character), marked released."""
        full_text = full_text.lstrip()
        pending = full_text[self.released_chars :].rstrip("\ufffd")
        self.released_tokens = len(self.tokens)
        self.released_chars += len(pending)
        return pending


class Pipeline:
    """Input moderation -> generation -> output moderation, with template responses when blocked.

    Args:
        model: a ``transformers`` causal LM (in eval mode, on its device).
        tokenizer: its tokenizer; it needs a chat template. The pipeline pads it on the left.
        input_moderator: checks requests (side "input"); None: no input check.
        output_moderator: checks answers in context (side "output"); None: no output check.
        templates: :class:`~rlhf.templates.Templates`, a ``templates:`` mapping, or None (built-in texts).
        generation_kwargs: defaults for ``model.generate`` (``max_new_tokens``, ``do_sample``, ...);
            other ``generate`` arguments such as ``logits_processor`` pass through unchanged.
        system_prompt, max_prompt_tokens, batch_size, stream_check_every, stream_overlap,
        on_moderation_error: as in :class:`PipelineConfig`.
    """

    def __init__(
        self,
        model,
        tokenizer,
        input_moderator: Moderator | None = None,
        output_moderator: Moderator | None = None,
        templates: Templates | Mapping[str, Any] | None = None,
        generation_kwargs: Mapping[str, Any] | None = None,
        *,
        system_prompt: str | None = None,
        max_prompt_tokens: int | None = None,
        batch_size: int = 16,
        stream_check_every: int = 8,
        stream_overlap: int = 16,
        on_moderation_error: str = "block",
        name: str | None = None,
    ):
        if getattr(tokenizer, "chat_template", None) is None:
            raise PipelineError(
                "the tokenizer has no chat template; use a chat model's tokenizer "
                "(tokenizer_name_or_path) or set tokenizer.chat_template"
            )
        self.model = model
        self.tokenizer = tokenizer
        tokenizer.padding_side = "left"  # batched generation: every prompt ends where generation starts
        tokenizer.truncation_side = "left"  # max_prompt_tokens cuts the oldest turns
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        self.input_moderator = input_moderator
        self.output_moderator = output_moderator
        if templates is None or isinstance(templates, Mapping):
            templates = Templates.from_config(templates)
        self.templates = templates
        self.generation_kwargs = {"max_new_tokens": 64, "do_sample": False, **dict(generation_kwargs or {})}
        self.system_prompt = system_prompt
        self.max_prompt_tokens = max_prompt_tokens
        self.batch_size = batch_size
        self.stream_check_every = max(1, stream_check_every)
        self.stream_overlap = max(0, stream_overlap)
        self.fail_closed = on_moderation_error != "allow"
        self.name = name or Path(getattr(getattr(model, "config", None), "_name_or_path", "") or "model").name
        self.eos_ids = self._eos_ids()

    # ----------------------------------------------------------------------------------------- building
    @classmethod
    def from_config(cls, config: PipelineConfig | Mapping[str, Any] | str | os.PathLike) -> Pipeline:
        """Load the model, tokenizer and moderators a :class:`PipelineConfig` (or a YAML file of its
        fields, or a mapping of them) names, and build the pipeline."""
        if isinstance(config, str | os.PathLike):
            from rlhf.config import parse_args

            (config,) = parse_args((PipelineConfig,), ["--config", str(config)], prog="rlhf.pipeline")
        elif isinstance(config, Mapping):
            config = PipelineConfig(**config)
        model, tokenizer = load_model_and_tokenizer(config)
        input_moderator, output_moderator = build_moderators(config)
        return cls(
            model,
            tokenizer,
            input_moderator,
            output_moderator,
            Templates.from_config(config.templates),
            config.generation_kwargs(),
            system_prompt=config.system_prompt,
            max_prompt_tokens=config.max_prompt_tokens,
            batch_size=config.batch_size,
            stream_check_every=config.stream_check_every,
            stream_overlap=config.stream_overlap,
            on_moderation_error=config.on_moderation_error,
            name=Path(config.model_name_or_path).name or config.model_name_or_path,
        )

    # ----------------------------------------------------------------------------------------- public
    def __call__(self, request: Request, **generation_overrides) -> Response:
        """Answer one request (a string or a conversation). See :meth:`batch` for the overrides."""
        return self.batch([request], **generation_overrides)[0]

    def batch(
        self, requests: Sequence[Request], cancel: Sequence[Any] | None = None, **generation_overrides
    ) -> list[Response]:
        """Answer several requests; one :class:`Response` per request, in the same order.

        Requests are processed ``batch_size`` at a time: one moderation call per side and one padded
        ``model.generate`` call per group. ``generation_overrides`` (any of ``GENERATION_KEYS``) apply to
        every request of this call. ``cancel``: optional flags, one per request (``threading.Event`` or
        anything with ``is_set()``); a request whose flag is set stops generating at the next token (its
        response is then cut short). Raises PipelineError on a malformed request or setting.
        """
        if isinstance(requests, str):
            raise PipelineError("batch() takes a list of requests; use pipe(request) for one")
        conversations = [normalize_request(r, self.system_prompt) for r in requests]
        if cancel is not None and len(cancel) != len(conversations):
            raise PipelineError(f"cancel has {len(cancel)} flags for {len(conversations)} requests")
        kwargs = self.generation_settings(generation_overrides)
        responses: list[Response] = []
        for start in range(0, len(conversations), self.batch_size):
            flags = cancel[start : start + self.batch_size] if cancel is not None else None
            responses += self._answer_group(conversations[start : start + self.batch_size], kwargs, flags)
        return responses

    def stream(
        self, request: Request, cancel: Any | None = None, **generation_overrides
    ) -> Iterator[StreamChunk]:
        """Answer one request as a stream of :class:`StreamChunk`; the last one carries the Response.

        Text is released only after output moderation passed it (module docstring). A blocked request
        or answer ends the stream with one ``blocked`` chunk holding the template. ``cancel``: an optional
        flag (``threading.Event``); once set, generation stops at the next token.
        """
        conversation = normalize_request(request, self.system_prompt)
        kwargs = self.generation_settings(generation_overrides)
        began = time.perf_counter()
        timings = {"input_moderation": 0.0, "generation": 0.0, "output_moderation": 0.0}
        [input_result] = self._moderate(self.input_moderator, [conversation], "input")
        timings["input_moderation"] = time.perf_counter() - began
        if input_result is not None and input_result.flagged:
            response = self._blocked(input_result, None, timings, began, "blocked_input", 0, 0)
            self._log([response])
            yield StreamChunk(response.text, final=True, blocked=True, response=response)
            return

        events: queue.Queue = queue.Queue()
        stop = threading.Event()
        streamer = _ModeratedStreamer(self, conversation, events, stop)
        encoded = self._encode([conversation])
        prompt_tokens = int(encoded["attention_mask"].sum())
        kwargs = dict(kwargs)
        kwargs["stopping_criteria"] = [*(kwargs.get("stopping_criteria") or []), _stop_flag(stop)]
        kwargs = _with_stop_flag(kwargs, cancel)

        def generate() -> None:
            try:
                self._generate(encoded, kwargs, streamer=streamer)
                events.put(("done", None))
            except BaseException as err:  # handed to the consumer, which re-raises it
                events.put(("error", err))

        gen_began = time.perf_counter()
        thread = threading.Thread(target=generate, name="rlhf-pipeline-generate", daemon=True)
        thread.start()
        try:
            while True:
                kind, payload = events.get()
                if kind == "text":
                    timings.setdefault("first_chunk", time.perf_counter() - began)
                    yield StreamChunk(payload)
                elif kind == "error":
                    raise payload
                else:
                    break
        finally:
            stop.set()  # also ends generation when the caller stops iterating early
            thread.join()
        timings["generation"] = max(0.0, time.perf_counter() - gen_began - streamer.moderation_s)
        timings["output_moderation"] = streamer.moderation_s
        completion_tokens = len(streamer.tokens)
        if streamer.flagged is not None:
            response = self._blocked(
                input_result,
                streamer.flagged,
                timings,
                began,
                "blocked_output",
                prompt_tokens,
                completion_tokens,
            )
            self._log([response])
            yield StreamChunk(response.text, final=True, blocked=True, response=response)
            return

        answer = streamer.text().strip()
        check_began = time.perf_counter()
        output_result = None
        if answer:  # an empty answer has nothing to check
            [output_result] = self._moderate(
                self.output_moderator, [[*conversation, {"role": "assistant", "content": answer}]], "output"
            )
        timings["output_moderation"] += time.perf_counter() - check_began
        if output_result is not None and output_result.flagged:
            response = self._blocked(
                input_result,
                output_result,
                timings,
                began,
                "blocked_output",
                prompt_tokens,
                completion_tokens,
            )
            self._log([response])
            yield StreamChunk(response.text, final=True, blocked=True, response=response)
            return
        tail = streamer.take_pending(answer)
        if tail:
            timings.setdefault("first_chunk", time.perf_counter() - began)
        timings["total"] = time.perf_counter() - began
        finish = self._finish_reason(streamer.tokens, kwargs)
        response = Response(
            answer, "answered", input_result, output_result, timings, finish, prompt_tokens, completion_tokens
        )
        self._log([response])
        yield StreamChunk(tail, final=True, response=response)

    def moderate(self, items: Sequence[Request], side: str = "input") -> list[ModerationResult | None]:
        """Run this pipeline's moderator for ``side`` on ``items`` (None per item when it has none)."""
        moderator = self.input_moderator if side == "input" else self.output_moderator
        return self._moderate(moderator, list(items), side)

    # ----------------------------------------------------------------------------------------- steps
    def _answer_group(
        self, conversations: list[list[dict[str, str]]], kwargs: dict[str, Any], cancel=None
    ) -> list[Response]:
        began = time.perf_counter()
        n = len(conversations)
        input_results = self._moderate(self.input_moderator, conversations, "input")
        t_input = time.perf_counter() - began
        admitted = [i for i, r in enumerate(input_results) if r is None or not r.flagged]

        answers: dict[int, tuple[str, str, int, int]] = {}  # index -> (text, finish, prompt, completion)
        t_gen = t_output = 0.0
        output_results: list[ModerationResult | None] = [None] * n
        if admitted:
            gen_began = time.perf_counter()
            encoded = self._encode([conversations[i] for i in admitted])
            flags = [cancel[i] for i in admitted] if cancel is not None else None
            output = self._generate(encoded, _with_stop_flag(kwargs, flags))
            width = encoded["input_ids"].shape[1]
            for row, i in enumerate(admitted):
                tokens = self._until_eos(output[row, width:].tolist())
                finish = self._finish_reason(tokens, kwargs, generated=output.shape[1] - width)
                prompt_tokens = int(encoded["attention_mask"][row].sum())
                answers[i] = (self._decode(tokens).strip(), finish, prompt_tokens, len(tokens))
            t_gen = time.perf_counter() - gen_began

            out_began = time.perf_counter()
            checked = [i for i in admitted if answers[i][0]]  # an empty answer has nothing to check
            items = [[*conversations[i], {"role": "assistant", "content": answers[i][0]}] for i in checked]
            for i, result in zip(
                checked, self._moderate(self.output_moderator, items, "output"), strict=True
            ):
                output_results[i] = result
            t_output = time.perf_counter() - out_began

        total = time.perf_counter() - began
        responses = []
        for i in range(n):
            timings = {
                "input_moderation": t_input,
                "generation": 0.0,
                "output_moderation": 0.0,
                "total": total,
            }
            if i not in answers:
                responses.append(
                    Response(
                        self.templates.for_result(input_results[i]),
                        "blocked_input",
                        input_results[i],
                        None,
                        timings,
                        "content_filter",
                    )
                )
                continue
            timings.update(generation=t_gen, output_moderation=t_output)
            text, finish, prompt_tokens, completion_tokens = answers[i]
            result = output_results[i]
            if result is not None and result.flagged:
                text, finish, status = self.templates.for_result(result), "content_filter", "blocked_output"
            else:
                status = "answered"
            responses.append(
                Response(
                    text, status, input_results[i], result, timings, finish, prompt_tokens, completion_tokens
                )
            )
        answers.clear()  # drop blocked answers' text as soon as possible
        self._log(responses)
        return responses

    def _moderate(self, moderator: Moderator | None, items: list, side: str) -> list[ModerationResult | None]:
        if moderator is None or not items:
            return [None] * len(items)
        began = time.perf_counter()
        try:
            results = list(moderator.moderate(items, side=side))
        except Exception as err:  # fail closed (or open) rather than answer unchecked by accident
            seconds = time.perf_counter() - began
            logger.warning(
                "%s moderator raised %s; %s %d item(s)",
                side,
                type(err).__name__,
                "blocking" if self.fail_closed else "allowing",
                len(items),
            )
            return [
                _error_result(moderator, side, err, self.fail_closed, seconds / len(items)) for _ in items
            ]
        if len(results) != len(items):
            raise RuntimeError(f"{side} moderator returned {len(results)} results for {len(items)} items")
        return results

    def _encode(self, conversations: list[list[dict[str, str]]]):
        prompts = [
            self.tokenizer.apply_chat_template(c, tokenize=False, add_generation_prompt=True)
            for c in conversations
        ]
        self.tokenizer.padding_side = "left"  # again: a moderator sharing this tokenizer may have changed it
        self.tokenizer.truncation_side = "left"
        truncation = (
            {"truncation": True, "max_length": self.max_prompt_tokens} if self.max_prompt_tokens else {}
        )
        encoded = self.tokenizer(
            prompts, return_tensors="pt", padding=True, add_special_tokens=False, **truncation
        )
        device = getattr(self.model, "device", None)
        return {k: v.to(device) for k, v in encoded.items()} if device is not None else dict(encoded)

    def _generate(self, encoded, kwargs: dict[str, Any], streamer=None):
        import torch

        with torch.inference_mode():
            return self.model.generate(
                input_ids=encoded["input_ids"],
                attention_mask=encoded["attention_mask"],
                streamer=streamer,
                **kwargs,
            )

    def generation_settings(self, overrides: Mapping[str, Any]) -> dict[str, Any]:
        """The ``model.generate`` keyword arguments for a request: defaults plus ``overrides`` (validated).

        Raises PipelineError for an unknown setting or a value out of range.
        """
        unknown = set(overrides) - set(GENERATION_KEYS)
        if unknown:
            raise PipelineError(
                f"unknown generation setting(s) {sorted(unknown)}; expected {list(GENERATION_KEYS)}"
            )
        kwargs = dict(self.generation_kwargs)
        kwargs.update({k: v for k, v in overrides.items() if v is not None})
        max_new = kwargs.get("max_new_tokens")
        if not isinstance(max_new, int) or isinstance(max_new, bool) or max_new < 1:
            raise PipelineError(f"max_new_tokens must be a positive integer, got {max_new!r}")
        if kwargs.get("do_sample"):
            temperature = kwargs.get("temperature", 1.0)
            if not isinstance(temperature, int | float) or temperature <= 0:
                raise PipelineError(f"temperature must be > 0 when sampling, got {temperature!r}")
            top_p = kwargs.get("top_p", 1.0)
            if not isinstance(top_p, int | float) or not 0 < top_p <= 1:
                raise PipelineError(f"top_p must be in (0, 1], got {top_p!r}")
            if kwargs.get("top_k") is None:
                kwargs.pop("top_k", None)
        else:  # greedy: sampling settings would only draw warnings from generate()
            for key in SAMPLING_KEYS:
                kwargs.pop(key, None)
        kwargs.setdefault("pad_token_id", self.tokenizer.pad_token_id)
        kwargs.setdefault("eos_token_id", sorted(self.eos_ids) if self.eos_ids else None)
        return kwargs

    def _eos_ids(self) -> set[int]:
        ids: set[int] = set()
        config = getattr(self.model, "generation_config", None)
        for value in (getattr(config, "eos_token_id", None), self.tokenizer.eos_token_id):
            if isinstance(value, int):
                ids.add(value)
            elif isinstance(value, list | tuple):
                ids.update(int(v) for v in value)
        return ids

    def _until_eos(self, tokens: list[int]) -> list[int]:
        """Generated tokens up to and including the first end-of-turn token (padding after it dropped)."""
        for i, token in enumerate(tokens):
            if token in self.eos_ids:
                return tokens[: i + 1]
        return tokens

    def _finish_reason(
        self, tokens: list[int], kwargs: Mapping[str, Any], generated: int | None = None
    ) -> str:
        if tokens and tokens[-1] in self.eos_ids:
            return "stop"
        if (generated if generated is not None else len(tokens)) >= kwargs.get("max_new_tokens", 0):
            return "length"
        return "stop"  # a stopping criterion from the caller ended it

    def _decode(self, tokens: list[int]) -> str:
        return self.tokenizer.decode(tokens, skip_special_tokens=True)

    def _blocked(self, input_result, output_result, timings, began, status, prompt_tokens, completion_tokens):
        blocking = input_result if status == "blocked_input" else output_result
        timings = {**timings, "total": time.perf_counter() - began}
        return Response(
            self.templates.for_result(blocking),
            status,
            input_result,
            output_result,
            timings,
            "content_filter",
            prompt_tokens,
            completion_tokens,
        )

    def _log(self, responses: list[Response]) -> None:
        """Counts at INFO, per-request status and categories at DEBUG; never any text."""
        counts = {s: sum(r.status == s for r in responses) for s in STATUSES}
        logger.info(
            "pipeline: %d request(s): %d answered, %d blocked at input, %d blocked at output",
            len(responses),
            counts["answered"],
            counts["blocked_input"],
            counts["blocked_output"],
        )
        if logger.isEnabledFor(logging.DEBUG):
            for i, r in enumerate(responses):
                logger.debug(
                    "request %d: %s categories=%s completion_tokens=%d timings=%s",
                    i,
                    r.status,
                    r.flagged_categories,
                    r.completion_tokens,
                    {k: round(v, 4) for k, v in r.timings.items()},
                )


# --------------------------------------------------------------------------------------------- loading
def _resolve_device(device: str) -> str:
    import torch

    if device == "auto":
        if torch.cuda.is_available():
            return "cuda"
        return "cpu"
    return device


def load_model_and_tokenizer(config: PipelineConfig):
    """Load the causal LM and tokenizer ``config`` names; returns ``(model, tokenizer)``, model in eval mode.

    Uses :mod:`rlhf.models`, so a Hub id, a local directory, a ``.gguf`` file or a LoRA adapter directory
    (merged into its base) all work. Raises PipelineError naming ``model_name_or_path`` /
    ``tokenizer_name_or_path`` when either cannot be loaded, or when the tokenizer has no chat template.
    """
    from rlhf.models import ChatTemplateError, load_causal_lm, load_tokenizer

    tokenizer_path = config.tokenizer_name_or_path or config.model_name_or_path
    try:
        tokenizer = load_tokenizer(
            tokenizer_path,
            chat_template_path=config.chat_template_path,
            gguf_file=None if config.tokenizer_name_or_path else config.gguf_file,
            padding_side="left",
        )
    except ChatTemplateError as err:
        raise PipelineError(str(err)) from None
    except (OSError, ValueError) as err:
        key = "tokenizer_name_or_path" if config.tokenizer_name_or_path else "model_name_or_path"
        raise PipelineError(_load_error("tokenizer", key, tokenizer_path, err)) from None
    try:
        model = load_causal_lm(
            config.model_name_or_path,
            dtype=config.dtype,
            gguf_file=config.gguf_file,
            device=_resolve_device(config.device),
        )
    except (OSError, ValueError) as err:
        raise PipelineError(
            _load_error("model", "model_name_or_path", config.model_name_or_path, err)
        ) from None
    model.eval()
    return model, tokenizer


def _load_error(what: str, key: str, path: str, err: Exception) -> str:
    if not os.path.exists(path) and (
        path.startswith(("/", "./", "../", "~", "runs/")) or path.count("/") > 1
    ):
        hint = " (`rlhf quickstart` writes it; run that first)" if path.startswith("runs/quickstart") else ""
        return f"cannot load the {what}: {key}='{path}' is not an existing directory{hint}"
    first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return f"cannot load the {what} from {key}='{path}': {first}"


def load_pipeline(config: PipelineConfig, prog: str) -> Pipeline:
    """``Pipeline.from_config`` for a command: a configuration mistake exits 2 with one line, not a traceback."""
    from rlhf.moderation.base import ModerationConfigError
    from rlhf.templates import TemplateError

    try:
        return Pipeline.from_config(config)
    except (PipelineError, ModerationConfigError, TemplateError) as err:
        print(f"{prog}: error: {err}", file=sys.stderr)
        raise SystemExit(2) from None


def _moderation_mapping(inline: Mapping[str, Any] | None, path: str | None) -> dict[str, Any] | None:
    if inline is not None:
        return dict(inline)
    if path:
        return load_moderation_config(path)
    return None


def build_moderators(config: PipelineConfig) -> tuple[Moderator | None, Moderator | None]:
    """The (input, output) moderators ``config`` names; the output side reuses the input's moderator
    unless it has its own mapping. (None, None) when the config names no moderation."""
    input_mapping = _moderation_mapping(config.moderation, config.moderation_config)
    output_mapping = _moderation_mapping(config.output_moderation, config.output_moderation_config)
    input_moderator = build_moderator(input_mapping) if input_mapping is not None else None
    if output_mapping is None:
        output_moderator = input_moderator
    else:
        output_moderator = build_moderator(output_mapping)
    if input_moderator is None and output_moderator is None:
        logger.warning("pipeline: no moderation configured; every request is answered unchecked")
    return input_moderator, output_moderator


# --------------------------------------------------------------------------------------------- quickstart
def _rebase(value: Any, old_root: str, new_root: str) -> Any:
    """Point string paths under ``old_root`` (recursively, in mappings and lists) at ``new_root``."""
    if isinstance(value, str) and (value == old_root or value.startswith(old_root + "/")):
        return new_root + value[len(old_root) :]
    if isinstance(value, Mapping):
        return {k: _rebase(v, old_root, new_root) for k, v in value.items()}
    if isinstance(value, list):
        return [_rebase(v, old_root, new_root) for v in value]
    return value


def block_rates(pipe: Pipeline, texts: Sequence[str], unsafe: Sequence[int]) -> dict[str, Any]:
    """Run ``texts`` (user prompts) through ``pipe`` and measure what happened to safe and unsafe ones.

    Returns ``unsafe_blocked_rate`` (unsafe prompts not answered), ``safe_answered_rate``, the counts
    per status for each group, and the mean seconds per request.
    """
    began = time.perf_counter()
    responses = pipe.batch(list(texts))
    seconds = time.perf_counter() - began
    groups = {
        "safe": [r for r, u in zip(responses, unsafe, strict=True) if not u],
        "unsafe": [r for r, u in zip(responses, unsafe, strict=True) if u],
    }
    metrics: dict[str, Any] = {
        "num_prompts": len(responses),
        "seconds_per_request": seconds / max(1, len(texts)),
    }
    for group, items in groups.items():
        metrics[f"num_{group}"] = len(items)
        for status in STATUSES:
            metrics[f"{group}_{status}"] = sum(r.status == status for r in items)
    metrics["unsafe_blocked_rate"] = (
        (metrics["unsafe_blocked_input"] + metrics["unsafe_blocked_output"]) / len(groups["unsafe"])
        if groups["unsafe"]
        else None
    )
    metrics["safe_answered_rate"] = metrics["safe_answered"] / len(groups["safe"]) if groups["safe"] else None
    metrics["responses"] = responses
    return metrics


def demo_pipeline(
    config_path: str | os.PathLike,
    output_dir: str | os.PathLike,
    max_prompts: int | None = None,
    split: str = "test",
    dataset_name: str = "builtin",
) -> dict[str, Any]:
    """The quickstart's last step: build the pipeline from ``config_path`` (its ``runs/quickstart`` paths,
    and those inside its moderation file, pointed at ``output_dir``) and run the built-in task's held-out
    user prompts (side "input" of the moderation data: all of them, or ``max_prompts``, safe and unsafe halves)
    through it, each distinct prompt once (rates count prompts, not repeats). ``dataset_name``: any moderation dataset `rlhf moderation-eval` reads (with ``text``,
    ``side`` and ``unsafe`` columns) instead of the built-in one.

    Writes ``OUTPUT_DIR/pipeline/metrics.json`` and ``samples.jsonl`` (a few answered and blocked
    requests: prompt, status, categories, shown text) and returns the metrics, among them
    ``unsafe_blocked_rate`` and ``safe_answered_rate``.
    """
    from rlhf.config import parse_args
    from rlhf.moderation.data import load_split
    from rlhf.runs import write_metrics

    (config,) = parse_args((PipelineConfig,), ["--config", str(config_path)], prog="rlhf chat")
    root, new_root = "runs/quickstart", str(output_dir).rstrip("/")
    config.model_name_or_path = _rebase(config.model_name_or_path, root, new_root)
    config.tokenizer_name_or_path = _rebase(config.tokenizer_name_or_path, root, new_root)
    for inline, path in (
        ("moderation", "moderation_config"),
        ("output_moderation", "output_moderation_config"),
    ):
        mapping = _moderation_mapping(getattr(config, inline), getattr(config, path))
        setattr(config, inline, _rebase(mapping, root, new_root) if mapping is not None else None)
        setattr(config, path, None)
    pipe = Pipeline.from_config(config)

    data = load_split(dataset_name, split)
    rows = list({r["text"]: r for r in data if r["side"] == "input"}.values())  # each distinct prompt once
    safe, unsafe = [r for r in rows if not r["unsafe"]], [r for r in rows if r["unsafe"]]
    if max_prompts is not None:
        safe = safe[: max_prompts // 2]
        unsafe = unsafe[: max_prompts - len(safe)]
    chosen = safe + unsafe
    metrics = block_rates(pipe, [r["text"] for r in chosen], [int(r["unsafe"]) for r in chosen])
    responses = metrics.pop("responses")

    run_dir = Path(output_dir) / "pipeline"
    run_dir.mkdir(parents=True, exist_ok=True)
    samples = []
    for status in STATUSES:
        picked = [(row, r) for row, r in zip(chosen, responses, strict=True) if r.status == status][:3]
        samples += [
            {
                "prompt": row["text"],
                "unsafe": int(row["unsafe"]),
                "status": r.status,
                "categories": r.flagged_categories,
                "shown": r.text,
            }
            for row, r in picked
        ]
    (run_dir / "samples.jsonl").write_text("".join(json.dumps(s) + "\n" for s in samples))
    write_metrics(run_dir, metrics)
    return metrics
