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

Batch and stream end in the same answered-or-blocked decision (:meth:`Pipeline._respond`). The config and
the loading of what it names are :mod:`rlhf.pipeline_config`; requests and responses :mod:`rlhf.responses`;
the model side (prompt encoding, generation settings, end of turn) :mod:`rlhf.generation`.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from rlhf.generation import (
    encode_prompts,
    eos_token_ids,
    finish_reason,
    generate,
    generation_settings,
    until_eos,
    with_stop_flag,
)
from rlhf.moderation.base import ModerationResult, Moderator, error_result
from rlhf.pipeline_config import (
    PipelineConfig,
    build_moderators,
    load_model_and_tokenizer,
    moderation_configs,
)
from rlhf.responses import STATUSES, PipelineError, Request, Response, StreamChunk, normalize_request
from rlhf.streaming import ModeratedStreamer
from rlhf.templates import Templates

# The pipeline's public names, wherever they are defined: `from rlhf.pipeline import Pipeline, Response, ...`
__all__ = ["Pipeline", "PipelineConfig", "PipelineError", "Response", "StreamChunk", "normalize_request"]

logger = logging.getLogger(__name__)


def _flagged(result: ModerationResult | None) -> bool:
    return result is not None and result.flagged


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
        self.eos_ids = eos_token_ids(model, tokenizer)

    # ----------------------------------------------------------------------------------------- building
    @classmethod
    def from_config(cls, config: PipelineConfig | Mapping[str, Any] | str | os.PathLike) -> Pipeline:
        """Load the model, tokenizer and moderators a :class:`PipelineConfig` (or a YAML file of its
        fields, or a mapping of them) names, and build the pipeline. The moderation configs and templates
        are checked before any model loads."""
        if isinstance(config, str | os.PathLike):
            from rlhf.config import parse_args

            (config,) = parse_args((PipelineConfig,), ["--config", str(config)], prog="rlhf.pipeline")
        elif isinstance(config, Mapping):
            config = PipelineConfig(**config)
        moderation = moderation_configs(config)
        templates = Templates.from_config(config.templates)
        model, tokenizer = load_model_and_tokenizer(config)
        input_moderator, output_moderator = build_moderators(*moderation)
        return cls(
            model,
            tokenizer,
            input_moderator,
            output_moderator,
            templates,
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
        answer, output_result, finish, prompt_tokens, tokens, streamer = "", None, "stop", 0, [], None
        if not _flagged(input_result):
            streamer = ModeratedStreamer(
                conversation,
                lambda item: self._moderate(self.output_moderator, [item], "output")[0],
                self._decode,
                self.stream_check_every,
                self.stream_overlap,
            )
            encoded = self._encode([conversation])
            prompt_tokens = int(encoded["attention_mask"].sum())
            stoppable = with_stop_flag(with_stop_flag(kwargs, streamer.stop), cancel)
            gen_began = time.perf_counter()
            for text in streamer.run(lambda: generate(self.model, encoded, stoppable, streamer=streamer)):
                timings.setdefault("first_chunk", time.perf_counter() - began)
                yield StreamChunk(text)
            timings["generation"] = max(0.0, time.perf_counter() - gen_began - streamer.moderation_s)
            timings["output_moderation"] = streamer.moderation_s
            tokens, output_result = streamer.tokens, streamer.flagged
            answer = streamer.text().strip()
            if output_result is None:  # the whole answer, checked once more
                check_began = time.perf_counter()
                [output_result] = self._check_answers([conversation], [answer])
                timings["output_moderation"] += time.perf_counter() - check_began
            finish = finish_reason(tokens, self.eos_ids, kwargs["max_new_tokens"])
        response = self._respond(
            input_result, output_result, timings, answer, finish, prompt_tokens, len(tokens)
        )
        tail = "" if response.blocked else streamer.take_pending(answer)
        if tail:
            timings.setdefault("first_chunk", time.perf_counter() - began)
        timings["total"] = time.perf_counter() - began  # ``response.timings`` is this dict
        self._log([response])
        yield StreamChunk(response.text if response.blocked else tail, True, response.blocked, response)

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
        admitted = [i for i, r in enumerate(input_results) if not _flagged(r)]

        answers: dict[int, tuple[str, str, int, int]] = {}  # index -> (text, finish, prompt, completion)
        t_gen = t_output = 0.0
        output_results: dict[int, ModerationResult | None] = {}  # index -> output check (admitted only)
        if admitted:
            gen_began = time.perf_counter()
            encoded = self._encode([conversations[i] for i in admitted])
            flags = [cancel[i] for i in admitted] if cancel is not None else None
            output = generate(self.model, encoded, with_stop_flag(kwargs, flags))
            width, max_new = encoded["input_ids"].shape[1], kwargs["max_new_tokens"]
            for row, i in enumerate(admitted):
                tokens = until_eos(output[row, width:].tolist(), self.eos_ids)
                finish = finish_reason(tokens, self.eos_ids, max_new, output.shape[1] - width)
                prompt_tokens = int(encoded["attention_mask"][row].sum())
                answers[i] = (self._decode(tokens).strip(), finish, prompt_tokens, len(tokens))
            t_gen = time.perf_counter() - gen_began

            out_began = time.perf_counter()
            checked = self._check_answers(
                [conversations[i] for i in admitted], [answers[i][0] for i in admitted]
            )
            output_results = dict(zip(admitted, checked, strict=True))
            t_output = time.perf_counter() - out_began

        total = time.perf_counter() - began
        responses = []
        for i in range(n):  # the model's times count for the requests it answered
            ran = i in answers
            timings = {"input_moderation": t_input, "generation": t_gen if ran else 0.0}
            timings.update(output_moderation=t_output if ran else 0.0, total=total)
            responses.append(
                self._respond(input_results[i], output_results.get(i), timings, *answers.get(i, ()))
            )
        answers.clear()  # drop blocked answers' text as soon as possible
        self._log(responses)
        return responses

    def _respond(
        self,
        input_result: ModerationResult | None,
        output_result: ModerationResult | None,
        timings: dict[str, float],
        answer: str = "",
        finish: str = "stop",
        prompt_tokens: int = 0,
        completion_tokens: int = 0,
    ) -> Response:
        """The one answered-or-blocked decision, for batch and stream alike: a flagged input or answer is
        replaced by the template for its categories (finish reason ``content_filter``; the answer's text is
        dropped), anything else is answered."""
        for status, result in (("blocked_input", input_result), ("blocked_output", output_result)):
            if _flagged(result):
                text = self.templates.for_result(result)
                return Response(
                    text,
                    status,
                    input_result,
                    output_result,
                    timings,
                    "content_filter",
                    prompt_tokens,
                    completion_tokens,
                )
        return Response(
            answer, "answered", input_result, output_result, timings, finish, prompt_tokens, completion_tokens
        )

    def _check_answers(self, conversations: list, answers: list[str]) -> list[ModerationResult | None]:
        """Output moderation of each answer as the last message of its conversation, in one call; an empty
        answer has nothing to check (None)."""
        checked = [i for i, answer in enumerate(answers) if answer]
        items = [[*conversations[i], {"role": "assistant", "content": answers[i]}] for i in checked]
        results = dict(zip(checked, self._moderate(self.output_moderator, items, "output"), strict=True))
        return [results.get(i) for i in range(len(answers))]

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
            name = getattr(moderator, "name", type(moderator).__name__)
            return [error_result(name, side, err, self.fail_closed, seconds / len(items)) for _ in items]
        if len(results) != len(items):
            raise RuntimeError(f"{side} moderator returned {len(results)} results for {len(items)} items")
        return results

    def _encode(self, conversations: list[list[dict[str, str]]]):
        return encode_prompts(
            self.tokenizer, conversations, self.max_prompt_tokens, getattr(self.model, "device", None)
        )

    def _decode(self, tokens: list[int]) -> str:
        return self.tokenizer.decode(tokens, skip_special_tokens=True)

    def generation_settings(self, overrides: Mapping[str, Any]) -> dict[str, Any]:
        """The ``model.generate`` keyword arguments for a request: this pipeline's defaults plus ``overrides``
        (any of ``GENERATION_KEYS``). Raises PipelineError for an unknown setting or a value out of range."""
        return generation_settings(
            self.generation_kwargs, overrides, self.tokenizer.pad_token_id, self.eos_ids
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
