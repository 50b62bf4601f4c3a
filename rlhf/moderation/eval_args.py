"""The settings of `rlhf moderation-eval` (`--help` lists them): ``ModerationEvalArguments``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml

from rlhf.moderation.data import LabelledTextArguments


@dataclass
class ModerationEvalArguments(LabelledTextArguments):
    """
    Which moderator to evaluate, on which labelled data, and what to write.

    Args (besides the labelled data's, `rlhf.moderation.data.LabelledTextArguments`):
        moderation_config (`str` or `None`, *optional*, defaults to `None`):
            YAML file holding a `moderation:` mapping (e.g. `configs/quickstart/moderation.yaml`).
        moderation (`dict` or `None`, *optional*, defaults to `None`):
            The `moderation:` mapping given inline; used instead of `moderation_config` when set.
        dataset_split (`str`, *optional*, defaults to `"test"`):
            Split to evaluate (a single local file is used whole).
        side_column (`str` or `None`, *optional*, defaults to `"side"`):
            Column saying `input` or `output` per row; rows without one use `side`.
        prompt_column (`str` or `None`, *optional*, defaults to `"prompt"`):
            Output-side rows: column with the user request the text answers (given to the moderator as context).
        side (`str`, *optional*, defaults to `"input"`):
            Side of rows that have no side column.
        group_column (`str` or `None`, *optional*, defaults to `None`):
            Column that groups rows (XSTest's `type`, a mixture's `source`): a table of the share of unsafe
            rows flagged and of safe rows passed per group.
        max_samples (`int` or `None`, *optional*, defaults to `None`):
            Evaluate at most this many rows (the first ones).
        batch_size (`int`, *optional*, defaults to `64`):
            Items per `moderate` call.
        output_dir (`str` or `None`, *optional*, defaults to `None`):
            Where to write metrics.json, the report and PR curves; `None`: print only.
        target_fpr (`float` or `None`, *optional*, defaults to `None`):
            Choose per-side, per-category thresholds whose false-positive rate on the safe items of `tune_split`
            is at most this, then report `dataset_split` at those thresholds.
        tune_split (`str`, *optional*, defaults to `"validation"`):
            With `target_fpr`: the split the thresholds are chosen on. It must share no text with
            `dataset_split` (a threshold chosen on the rows it is scored on overstates what it does on new ones).
        target_fpr_scope (`str`, *optional*, defaults to `"category"`):
            `category`: each category may flag `target_fpr` of the safe items; `overall`: all categories
            together (the target shared evenly among them).
        thresholds_output (`str` or `None`, *optional*, defaults to `None`):
            With `target_fpr`: a new YAML file that receives the moderation config with the chosen thresholds.
        overwrite_output_dir (`bool`, *optional*, defaults to `False`):
            Replace an output directory that already holds a finished evaluation.
    """

    moderation_config: str | None = field(
        default=None, metadata={"help": "YAML file with a `moderation:` mapping."}
    )
    moderation: dict[str, Any] | str | None = field(
        default=None,
        metadata={
            "help": "The `moderation:` mapping inline, e.g. '{backend: rules}' (replaces moderation_config)."
        },
    )
    dataset_split: str = field(default="test", metadata={"help": "Split to evaluate."})
    side_column: str | None = field(
        default="side", metadata={"help": "Column saying input or output per row."}
    )
    prompt_column: str | None = field(
        default="prompt", metadata={"help": "Output rows: the request answered."}
    )
    side: str = field(
        default="input",
        metadata={"help": "Side of rows without a side column.", "choices": ["input", "output"]},
    )
    group_column: str | None = field(
        default=None, metadata={"help": "Column grouping rows for a per-group table (e.g. type, source)."}
    )
    max_samples: int | None = field(default=None, metadata={"help": "Evaluate at most this many rows."})
    batch_size: int = field(default=64, metadata={"help": "Items per moderate() call."})
    output_dir: str | None = field(default=None, metadata={"help": "Where to write metrics.json and plots."})
    target_fpr: float | None = field(
        default=None, metadata={"help": "Pick thresholds for this FPR on safe items."}
    )
    target_fpr_scope: str = field(
        default="category",
        metadata={
            "help": "target_fpr per category, or for all categories together.",
            "choices": ["category", "overall"],
        },
    )
    tune_split: str = field(
        default="validation",
        metadata={"help": "With target_fpr: the split thresholds are chosen on (never dataset_split)."},
    )
    thresholds_output: str | None = field(
        default=None, metadata={"help": "New YAML file for the tuned config."}
    )
    overwrite_output_dir: bool = field(default=False, metadata={"help": "Replace a finished evaluation."})

    def __post_init__(self):
        super().__post_init__()
        if isinstance(self.moderation, str):  # given on the command line as YAML/JSON text
            parsed = yaml.safe_load(self.moderation)
            if not isinstance(parsed, dict):
                raise ValueError(
                    f"moderation must be a mapping such as '{{backend: rules}}', got {self.moderation!r}"
                )
            self.moderation = parsed
        if self.moderation is None and not self.moderation_config:
            raise ValueError("set moderation_config (a YAML file with a `moderation:` mapping) or moderation")
        if self.target_fpr is not None and not 0.0 <= self.target_fpr <= 1.0:
            raise ValueError(f"target_fpr must be in [0, 1], got {self.target_fpr}")
        if self.thresholds_output and self.target_fpr is None:
            raise ValueError("thresholds_output needs target_fpr")
        if self.target_fpr is not None and self.tune_split == self.dataset_split:
            raise ValueError(
                f"tune_split and dataset_split are both '{self.dataset_split}': choose thresholds on another "
                "split (e.g. validation) than the one reported"
            )
