"""The model side of the moderated pipeline: conversations in, generated tokens and answer text out.

- :func:`generation_settings`: a request's ``model.generate`` keyword arguments (defaults plus validated
  overrides); :data:`GENERATION_KEYS` are the settings a caller may override.
- :func:`encode_prompts`: conversations rendered with the chat template, left-padded, old turns cut first.
- :func:`generate`: ``model.generate`` without gradients; :func:`with_stop_flag` adds a stopping criterion
  that a flag (a cancelled request, a flagged stream) trips.
- :func:`eos_token_ids`, :func:`until_eos`, :func:`finish_reason`: where an answer ends and why.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from rlhf.responses import PipelineError

# Settings a caller may override per request (``pipe(prompt, max_new_tokens=16)``, the server's fields).
GENERATION_KEYS = ("max_new_tokens", "do_sample", "temperature", "top_p", "top_k", "repetition_penalty")
SAMPLING_KEYS = ("temperature", "top_p", "top_k")  # only meaningful with do_sample=True


def generation_settings(
    defaults: Mapping[str, Any], overrides: Mapping[str, Any], pad_token_id: int | None, eos_ids: set[int]
) -> dict[str, Any]:
    """The ``model.generate`` keyword arguments for a request: ``defaults`` plus ``overrides`` (validated).

    Raises PipelineError for an unknown setting or a value out of range.
    """
    unknown = set(overrides) - set(GENERATION_KEYS)
    if unknown:
        raise PipelineError(
            f"unknown generation setting(s) {sorted(unknown)}; expected {list(GENERATION_KEYS)}"
        )
    kwargs = dict(defaults)
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
    kwargs.setdefault("pad_token_id", pad_token_id)
    kwargs.setdefault("eos_token_id", sorted(eos_ids) if eos_ids else None)
    return kwargs


def encode_prompts(
    tokenizer, conversations: list[list[dict[str, str]]], max_prompt_tokens: int | None, device
):
    """The conversations as one left-padded batch of prompts (chat template, generation prompt added),
    each cut from the left to ``max_prompt_tokens`` (None: uncut); tensors on ``device`` when given."""
    prompts = [
        tokenizer.apply_chat_template(c, tokenize=False, add_generation_prompt=True) for c in conversations
    ]
    tokenizer.padding_side = "left"  # again: a moderator sharing this tokenizer may have changed it
    tokenizer.truncation_side = "left"
    truncation = {"truncation": True, "max_length": max_prompt_tokens} if max_prompt_tokens else {}
    encoded = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False, **truncation)
    return {k: v.to(device) for k, v in encoded.items()} if device is not None else dict(encoded)


def generate(model, encoded, kwargs: dict[str, Any], streamer=None):
    """``model.generate`` on an :func:`encode_prompts` batch, without gradients; returns the token ids."""
    import torch

    with torch.inference_mode():
        return model.generate(
            input_ids=encoded["input_ids"],
            attention_mask=encoded["attention_mask"],
            streamer=streamer,
            **kwargs,
        )


def stop_flag(event):
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


def with_stop_flag(kwargs: dict[str, Any], event) -> dict[str, Any]:
    """``kwargs`` plus a :func:`stop_flag` criterion for ``event`` (unchanged when ``event`` is None)."""
    if event is None:
        return kwargs
    return {**kwargs, "stopping_criteria": [*(kwargs.get("stopping_criteria") or []), stop_flag(event)]}


def eos_token_ids(model, tokenizer) -> set[int]:
    """The ids that end a turn: the model's generation config's ``eos_token_id`` (one or several) and the
    tokenizer's."""
    ids: set[int] = set()
    config = getattr(model, "generation_config", None)
    for value in (getattr(config, "eos_token_id", None), tokenizer.eos_token_id):
        if isinstance(value, int):
            ids.add(value)
        elif isinstance(value, list | tuple):
            ids.update(int(v) for v in value)
    return ids


def until_eos(tokens: list[int], eos_ids: set[int]) -> list[int]:
    """Generated tokens up to and including the first end-of-turn token (padding after it dropped)."""
    for i, token in enumerate(tokens):
        if token in eos_ids:
            return tokens[: i + 1]
    return tokens


def finish_reason(
    tokens: list[int], eos_ids: set[int], max_new_tokens: int, generated: int | None = None
) -> str:
    """``stop`` (the answer ended its turn, or a caller's stopping criterion ended it) or ``length``
    (``max_new_tokens`` reached; ``generated``: the row's generated width when padding follows it)."""
    if tokens and tokens[-1] in eos_ids:
        return "stop"
    if (generated if generated is not None else len(tokens)) >= max_new_tokens:
        return "length"
    return "stop"
