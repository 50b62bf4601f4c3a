"""The pipeline's configuration (`rlhf chat`, `rlhf serve`, ``Pipeline.from_config``) and loading what it names.

    rlhf chat --config configs/quickstart/pipeline.yaml

:class:`PipelineConfig` holds the model, its moderators, templates and generation settings;
:func:`load_model_and_tokenizer` and :func:`build_moderators` load what it names, raising PipelineError
(a ConfigError: the command stops with one line) naming the key when something cannot be loaded.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from rlhf.generation import GENERATION_KEYS
from rlhf.moderation.base import Moderator
from rlhf.moderation.config import ModerationConfig, load_moderation_config, parse_moderation_config
from rlhf.moderation.factory import build_moderator
from rlhf.responses import PipelineError

logger = logging.getLogger(__name__)


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


def moderation_mapping(inline: Mapping[str, Any] | None, path: str | None) -> dict[str, Any] | None:
    """A side's ``moderation:`` mapping: the inline one, else the one in the file ``path``; None: neither."""
    if inline is not None:
        return dict(inline)
    if path:
        return load_moderation_config(path)
    return None


def moderation_configs(config: PipelineConfig) -> tuple[ModerationConfig | None, ModerationConfig | None]:
    """The (input, output) moderation configs ``config`` names, parsed (cheap: no model is loaded, so a
    malformed one stops before anything slow). None for a side without one (the output side then uses the
    input's moderator)."""
    mappings = (
        moderation_mapping(config.moderation, config.moderation_config),
        moderation_mapping(config.output_moderation, config.output_moderation_config),
    )
    input_config, output_config = (parse_moderation_config(m) if m is not None else None for m in mappings)
    return input_config, output_config


def build_moderators(
    input_config: ModerationConfig | None, output_config: ModerationConfig | None
) -> tuple[Moderator | None, Moderator | None]:
    """The (input, output) moderators of :func:`moderation_configs`; the output side reuses the input's
    moderator unless it has its own config. (None, None) when there is no moderation at all."""
    input_moderator = build_moderator(input_config) if input_config is not None else None
    output_moderator = build_moderator(output_config) if output_config is not None else input_moderator
    if input_moderator is None and output_moderator is None:
        logger.warning("pipeline: no moderation configured; every request is answered unchecked")
    return input_moderator, output_moderator
