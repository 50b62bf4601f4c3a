"""The settings of `rlhf moderation-train` (`--help` lists them): ``ModerationTrainArguments``."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from rlhf.moderation.data import LabelledTextArguments


@dataclass
class ModerationTrainArguments(LabelledTextArguments):
    """
    Data and head of the moderation classifier (the backbone and LoRA settings are TRL's `ModelConfig`:
    `model_name_or_path` is `"tiny"` (default when unset), `"minilm"`, a directory or a Hub id).

    Args (besides the labelled data's, `rlhf.moderation.data.LabelledTextArguments`):
        dataset_train_split (`str`, *optional*, defaults to `"train"`):
            Split to train on.
        dataset_mixture (`dict` or `str` or `None`, *optional*, defaults to `None`):
            Several labelled sources mixed and split by text (see `rlhf.moderation.mixture`); replaces
            `dataset_name`. The splits are written to `<output_dir>/data/<split>.jsonl` for `moderation-eval`.
        dataset_validation_split (`str` or `None`, *optional*, defaults to `None`):
            Split on which `target_fpr` chooses the thresholds; `None`: thresholds stay at `threshold`.
        dataset_test_split (`str` or `None`, *optional*, defaults to `"test"`):
            Held-out split scored at the end; `None` (or a dataset without it) holds out
            `validation_split_percentage` of the training rows instead.
        validation_split_percentage (`float`, *optional*, defaults to `10.0`):
            Share of the training rows held out when there is no test split.
        normalize_text (`bool`, *optional*, defaults to `True`):
            Fold case, Unicode look-alike letters and zero-width characters before tokenizing, in training
            and (recorded in the model's config) at inference.
        max_length (`int`, *optional*, defaults to `128`):
            Tokens per training text (longer ones are truncated; inference scores every window).
        train_mode (`str`, *optional*, defaults to `"full"`):
            Pretrained encoders: `full` fine-tunes the encoder and head (LoRA with `use_peft`); `frozen` is the
            fast path, a logistic regression per category on the frozen encoder's mean-pooled embeddings.
        pooling (`str`, *optional*, defaults to `"mean"`):
            Pretrained encoders: `mean` (average of the token vectors, what sentence encoders are trained
            for) under a fresh linear head; `model` keeps the model's own sequence-classification head.
        head_learning_rate (`float` or `None`, *optional*, defaults to `1e-3`):
            `full` mode with `pooling: mean`: learning rate of the head (`learning_rate` is the encoder's).
        probe_init (`bool`, *optional*, defaults to `True`):
            `full` mode with `pooling: mean`: start the head from the frozen-encoder logistic fit rather than
            from random weights.
        max_pos_weight (`float`, *optional*, defaults to `20.0`):
            Pretrained encoders: positives of a category weigh negatives/positives in the loss, at most this
            (1.0: unweighted).
        target_fpr (`float` or `None`, *optional*, defaults to `None`):
            With a validation split: per category and side, a threshold whose false-positive rate on
            the validation split's safe items is at most this; saved with the model (`rlhf_thresholds` in its
            config.json, what a classifier config without `thresholds` serves) and in moderation.yaml.
        target_fpr_scope (`str`, *optional*, defaults to `"category"`):
            `category`: each category may flag `target_fpr` of the safe items; `overall`: all categories
            together (the target shared evenly among them).
        serve_backend (`str`, *optional*, defaults to `"classifier"`):
            What moderation.yaml serves: `classifier`, or `cascade` (the default rules, then the classifier).
        threshold (`float`, *optional*, defaults to `0.5`):
            Score threshold of every category when scoring the held-out split and in `moderation.yaml`
            (`rlhf moderation-eval` can pick per-category thresholds for a target false-positive rate).
        tokenizer_vocab_size (`int`, *optional*, defaults to `4096`):
            `tiny` backbone: vocabulary of the WordPiece tokenizer trained on the training texts.
        tiny_hidden_size (`int`, *optional*, defaults to `128`):
            `tiny` backbone: hidden width.
        tiny_num_hidden_layers (`int`, *optional*, defaults to `2`):
            `tiny` backbone: transformer layers.
        tiny_dropout (`float`, *optional*, defaults to `0.0`):
            tiny backbone: dropout on hidden states and attention probabilities (BERT's own default, 0.1,
            slows a model trained from scratch on a thousand rows several-fold).
        tiny_num_attention_heads (`int`, *optional*, defaults to `2`):
            `tiny` backbone: attention heads per layer.
        max_train_samples (`int` or `None`, *optional*, defaults to `None`):
            Train on at most this many rows (a random subset); `None`: all.
        overwrite_output_dir (`bool`, *optional*, defaults to `False`):
            Replace an output directory that already holds a finished run.
    """

    dataset_train_split: str = field(default="train", metadata={"help": "Split to train on."})
    dataset_mixture: dict[str, Any] | str | None = field(
        default=None,
        metadata={"help": "Several labelled sources mixed and split by text (replaces dataset_name)."},
    )
    dataset_validation_split: str | None = field(
        default=None, metadata={"help": "Split on which target_fpr chooses the thresholds."}
    )
    dataset_test_split: str | None = field(
        default="test", metadata={"help": "Held-out split scored at the end."}
    )
    validation_split_percentage: float = field(
        default=10.0, metadata={"help": "Share of training rows held out when there is no test split."}
    )
    normalize_text: bool = field(
        default=True, metadata={"help": "Fold case, look-alike letters and zero-width characters first."}
    )
    max_length: int = field(default=128, metadata={"help": "Tokens per training text."})
    train_mode: str = field(
        default="full",
        metadata={
            "help": "full (fine-tune) or frozen (logistic head on frozen embeddings).",
            "choices": ["full", "frozen"],
        },
    )
    pooling: str = field(
        default="mean",
        metadata={
            "help": "Pretrained encoders: mean-pooled linear head, or the model's own head.",
            "choices": ["mean", "model"],
        },
    )
    head_learning_rate: float | None = field(default=1e-3, metadata={"help": "Learning rate of the head."})
    probe_init: bool = field(default=True, metadata={"help": "Start the head from the frozen-encoder fit."})
    max_pos_weight: float = field(default=20.0, metadata={"help": "Cap of the per-category positive weight."})
    target_fpr: float | None = field(
        default=None, metadata={"help": "Choose thresholds on validation for this false-positive rate."}
    )
    target_fpr_scope: str = field(
        default="category",
        metadata={
            "help": "target_fpr per category, or for all categories together.",
            "choices": ["category", "overall"],
        },
    )
    serve_backend: str = field(
        default="classifier",
        metadata={"help": "What moderation.yaml serves.", "choices": ["classifier", "cascade"]},
    )
    threshold: float = field(default=0.5, metadata={"help": "Score threshold of every category."})
    tokenizer_vocab_size: int = field(
        default=4096, metadata={"help": "tiny backbone: WordPiece vocabulary size."}
    )
    tiny_hidden_size: int = field(default=128, metadata={"help": "tiny backbone: hidden width."})
    tiny_num_hidden_layers: int = field(default=2, metadata={"help": "tiny backbone: transformer layers."})
    tiny_num_attention_heads: int = field(default=2, metadata={"help": "tiny backbone: attention heads."})
    tiny_dropout: float = field(
        default=0.0, metadata={"help": "tiny backbone: hidden and attention dropout."}
    )
    max_train_samples: int | None = field(default=None, metadata={"help": "Train on at most this many rows."})
    overwrite_output_dir: bool = field(
        default=False, metadata={"help": "Replace an output directory that holds a finished run."}
    )

    def __post_init__(self):
        super().__post_init__()
        if isinstance(self.dataset_mixture, str):
            self.dataset_mixture = _load_mixture_spec(self.dataset_mixture)
        if self.target_fpr is not None and not 0.0 <= self.target_fpr <= 1.0:
            raise ValueError(f"target_fpr must be in [0, 1], got {self.target_fpr}")


def _load_mixture_spec(value: str) -> dict[str, Any]:
    """``dataset_mixture`` given as a YAML file (its ``dataset_mixture:`` key or the whole mapping) or inline."""
    text = Path(value).read_text() if Path(value).is_file() else value
    parsed = yaml.safe_load(text)
    if isinstance(parsed, dict) and isinstance(parsed.get("dataset_mixture"), dict):
        parsed = parsed["dataset_mixture"]
    if not isinstance(parsed, dict):
        raise ValueError(
            f"dataset_mixture must be a mapping with a 'sources:' list or a YAML file, got {value!r}"
        )
    return parsed
