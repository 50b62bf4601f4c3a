"""Moderation classifier training: fine-tune a sequence-classification model on labelled text.

    rlhf moderation-train --config configs/quickstart/moderation-train.yaml

Glue around ``transformers.Trainer``: load labelled data (the built-in task's moderation split, any
dataset whose label columns are mapped to categories in config, or a ``dataset_mixture`` of several),
build or load a backbone (a tiny encoder trained from scratch, or a pretrained encoder such as the packaged
MiniLM under a mean-pooled linear head), train a multi-label head (``train_mode: frozen``: a logistic fit on
frozen embeddings; ``full``: fine-tuning, or LoRA via peft), choose per-category thresholds on the
validation split (``target_fpr``), then score the test split with the same
:class:`~rlhf.moderation.classifier.ClassifierModerator` that serves it. The output directory holds the
model and tokenizer (LoRA merged in), ``config.yaml``, ``metrics.json``, PR curves and loss PNGs, a model
card, ``data/`` (a mixture's splits) and ``moderation.yaml``: a ``moderation:`` mapping that serves this
classifier at the chosen thresholds.

This module holds the settings, the data splits and the run; the classifier's pieces (backbone, head fit,
optimizer, tokenized rows) are :mod:`rlhf.moderation.train_model`.
"""

from __future__ import annotations

import json
import logging
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from transformers import TrainingArguments
from trl import ModelConfig

from rlhf.config import ConfigError, run_cli
from rlhf.moderation.data import Examples, build_examples, load_split
from rlhf.moderation.train_model import build_model, class_weights, fit_head, head_optimizer, tokenize
from rlhf.reporting import plot_curves
from rlhf.runs import stage_run

logger = logging.getLogger(__name__)

CARD_METRICS = (
    "f1",
    "eval_overall_precision",
    "eval_overall_recall",
    "eval_overall_auprc",
    "eval_overall_fpr",
    "eval_micro_f1",
    "eval_macro_auprc",
)


@dataclass
class ModerationTrainArguments:
    """
    Data and head of the moderation classifier (the backbone and LoRA settings are TRL's `ModelConfig`:
    `model_name_or_path` is `"tiny"` (default when unset), `"minilm"`, a directory or a Hub id).

    Args:
        dataset_name (`str`, *optional*, defaults to `"builtin"`):
            `"builtin"` (the built-in task's moderation data), a local JSONL/JSON/CSV/Parquet file, a folder of
            `<split>.<ext>` files, or a Hub dataset id.
        dataset_config (`str` or `None`, *optional*, defaults to `None`):
            Configuration name of a Hub dataset.
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
        task_seed (`int`, *optional*, defaults to `0`):
            Built-in task only: seed of the generated world and data.
        text_column (`str`, *optional*, defaults to `"text"`):
            Column holding the text to classify.
        label_columns (`dict` or `list` or `None`, *optional*, defaults to `None`):
            Label columns (0/1, boolean or probability) mapped to category ids, e.g.
            `{toxic: hate, threat: violent_crimes, obscene: null}`, or a list of column names mapped by
            `label_mapping` (or taken as category ids).
        categories_column (`str` or `None`, *optional*, defaults to `"categories"`):
            Column holding a list of labels (or one label) per row; ignored when the dataset lacks it.
        unsafe_column (`str` or `None`, *optional*, defaults to `"unsafe"`):
            Column holding the overall unsafe label; without it an item is unsafe when any category is set.
        label_mapping (`str` or `None`, *optional*, defaults to `None`):
            Table from categories.yaml (`openai`, `llama_guard`, `jigsaw`, `beavertails`, `builtin`) that maps
            the dataset's labels to category ids; `None`: labels are category ids.
        categories (`list[str]` or `None`, *optional*, defaults to `None`):
            The classifier's labels, in order; `None`: the built-in ids when the data uses only those, else
            every id seen in the training data.
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

    dataset_name: str = field(
        default="builtin", metadata={"help": "'builtin', a local file/folder, or a Hub id."}
    )
    dataset_config: str | None = field(
        default=None, metadata={"help": "Configuration name of a Hub dataset."}
    )
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
    task_seed: int = field(default=0, metadata={"help": "Built-in task only: seed of the generated data."})
    text_column: str = field(default="text", metadata={"help": "Column holding the text to classify."})
    label_columns: dict[str, Any] | str | None = field(
        default=None,
        metadata={
            "help": "Label columns mapped to category ids, e.g. '{toxic: hate, threat: violent_crimes}', "
            "or column names (mapped by label_mapping)."
        },
    )
    categories_column: str | None = field(
        default="categories", metadata={"help": "Column holding a list of labels per row."}
    )
    unsafe_column: str | None = field(
        default="unsafe", metadata={"help": "Column holding the overall unsafe label."}
    )
    label_mapping: str | None = field(
        default=None,
        metadata={"help": "Label table from categories.yaml (openai, llama_guard, jigsaw, ...)."},
    )
    categories: list[str] | None = field(
        default=None, metadata={"help": "The classifier's labels, in order."}
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
        from rlhf.moderation.data import parse_label_columns

        self.label_columns = parse_label_columns(self.label_columns)
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


def load_examples(
    args: ModerationTrainArguments, data_dir: Path | None = None
) -> tuple[Examples, Examples | None, Examples]:
    """(train, validation or None, held-out test) examples with the same category columns.

    With ``dataset_mixture`` the splits are built, written to ``data_dir`` and read back from there.
    """
    from rlhf.moderation.data import DatasetError

    columns = dict(
        text_column=args.text_column,
        label_columns=args.label_columns,
        categories_column=args.categories_column,
        unsafe_column=args.unsafe_column,
        label_mapping_name=args.label_mapping,
    )
    dataset_name = args.dataset_name
    if args.dataset_mixture is not None:
        from rlhf.moderation.mixture import build_mixture, write_mixture

        dataset_name = str(write_mixture(build_mixture(args.dataset_mixture), data_dir))
        columns.update(text_column="text", label_columns=None, categories_column="categories",
                       unsafe_column="unsafe", label_mapping_name=None, group_column="source")  # fmt: skip

    def split(name: str, categories):
        dataset = load_split(dataset_name, name, args.dataset_config, args.task_seed)
        return build_examples(dataset, categories=categories, source=f"{dataset_name}:{name}", **columns)

    train = split(args.dataset_train_split, args.categories)
    single_file = Path(dataset_name).is_file()
    validation = test = None
    if args.dataset_validation_split and not single_file:
        validation = split(args.dataset_validation_split, train.categories)
    if args.dataset_test_split and not single_file:
        try:
            test = split(args.dataset_test_split, train.categories)
        except DatasetError as err:
            logger.warning(
                "%s; holding out %.0f%% of the training rows", err, args.validation_split_percentage
            )
    if test is None:
        order = list(range(len(train)))
        random.Random(0).shuffle(order)
        n_test = max(1, int(len(order) * args.validation_split_percentage / 100))
        test, train = train.subset(sorted(order[:n_test])), train.subset(sorted(order[n_test:]))
    if args.max_train_samples is not None and args.max_train_samples < len(train):
        order = list(range(len(train)))
        random.Random(0).shuffle(order)
        train = train.subset(sorted(order[: args.max_train_samples]))
    return train, validation, test


def main(args: ModerationTrainArguments, model_args: ModelConfig, training_args: TrainingArguments) -> dict:
    """Train, save and score the classifier; returns the metrics written to metrics.json."""
    with stage_run("moderation", args, model_args, training_args) as run:
        return train_and_score(run, args, model_args, training_args)


def train_and_score(run, args: ModerationTrainArguments, model_args: ModelConfig, training_args) -> dict:
    """The body of `main` inside its run (`rlhf.runs.stage_run`): config written once the data and the model are
    ready, the classifier trained, saved and scored, its card and metrics.json written last."""
    from transformers import DataCollatorWithPadding, Trainer, set_seed

    from rlhf.moderation.classifier import ClassifierModerator, resolve_thresholds
    from rlhf.moderation.data import DatasetError
    from rlhf.moderation.evaluate import choose_thresholds
    from rlhf.moderation.pooled import POOLING_KEY
    from rlhf.moderation.report import (
        flat_metrics,
        format_table,
        group_table,
        plot_pr_curves,
        run_moderator,
        score_examples,
    )

    output_dir = run.output_dir
    set_seed(training_args.seed)
    try:
        train, validation, test = load_examples(args, output_dir / "data")
    except (DatasetError, ValueError) as err:  # a missing column, an unknown label mapping or category
        raise ConfigError(str(err).strip().splitlines()[0]) from None
    logger.info(
        "moderation data: %d train / %s validation / %d test rows, categories %s",
        len(train), len(validation) if validation else 0, len(test), train.categories,
    )  # fmt: skip
    model, tokenizer = build_model(args, model_args, train, training_args.seed)
    pooled = getattr(model.config, POOLING_KEY, None) == "mean"  # a MeanPoolClassifier (maybe under LoRA)
    if args.train_mode == "frozen" and not pooled:
        raise ConfigError("train_mode 'frozen' needs a pretrained encoder with pooling 'mean' (not 'tiny')")
    run.write_config()

    start = time.perf_counter()
    losses, train_loss = [], None
    if pooled and (args.train_mode == "frozen" or args.probe_init) and not model_args.use_peft:
        fit_head(model, tokenizer, train, args)  # the fast path, and the fine-tune's starting head
    if args.train_mode == "full":
        optimizers = (None, None)
        if pooled:
            model.config.rlhf_pos_weight = class_weights(train, args.max_pos_weight)
            optimizers = (head_optimizer(model, training_args, args.head_learning_rate), None)
        trainer = Trainer(
            model=model,
            args=training_args,
            train_dataset=tokenize(train, tokenizer, args.max_length, args.normalize_text),
            data_collator=DataCollatorWithPadding(tokenizer),
            processing_class=tokenizer,
            optimizers=optimizers,
        )
        train_loss = trainer.train().training_loss
        model = trainer.model
        losses = [(e["step"], e["loss"]) for e in trainer.state.log_history if "loss" in e]
    train_seconds = time.perf_counter() - start
    if model_args.use_peft:
        model = model.merge_and_unload()  # a plain classifier: the moderator loads it without peft
    model.save_pretrained(output_dir)
    tokenizer.save_pretrained(output_dir)

    moderator = ClassifierModerator(
        model.eval(),
        tokenizer,
        thresholds=args.threshold,
        max_length=max(args.max_length, 64),
        batch_size=training_args.per_device_eval_batch_size,
    )
    thresholds: dict[str, Any] = {"default": args.threshold}
    if validation is not None and args.target_fpr is not None:
        chosen = choose_thresholds(
            run_moderator(moderator, validation), validation, args.target_fpr, args.target_fpr_scope
        )
        thresholds.update(chosen)
        moderator.thresholds = resolve_thresholds(thresholds, moderator.categories)
        print(
            f"thresholds chosen on validation for FPR <= {args.target_fpr} ({args.target_fpr_scope}): "
            + json.dumps(chosen)
        )
    model.config.rlhf_thresholds = thresholds  # a moderation config that names no thresholds serves these
    model.config.save_pretrained(output_dir)
    start = time.perf_counter()
    results = run_moderator(moderator, test)
    test_seconds = time.perf_counter() - start
    scores = score_examples(results, test)
    print(format_table(scores))
    groups = {}
    if test.groups is not None:
        groups, group_text = group_table(results, test, test.groups)
        print(group_text)
    plot_pr_curves(output_dir / "pr_curve.png", scores, title="Held-out precision-recall")
    if losses:
        plot_curves(output_dir / "loss.png", {"train": losses}, title="Moderation classifier training loss")

    metrics = {
        **flat_metrics(scores, prefix="eval_"),
        "f1": scores["overall_f1"],  # the headline: unsafe-vs-safe F1 on the held-out split
        "eval_f1": scores["overall_f1"],
        "train_loss": train_loss,
        "train_loss_first": losses[0][1] if losses else None,  # first and last logged losses: did it learn?
        "train_loss_last": losses[-1][1] if losses else None,
        "train_runtime_s": train_seconds,  # head fit + fine-tuning, seconds
        "test_texts_per_s": len(test) / test_seconds if test_seconds > 0 else None,
        "thresholds": thresholds,
        "per_source": groups,
        "train_mode": args.train_mode,
        "train_samples": len(train),
        "num_parameters": sum(p.numel() for p in model.parameters()),
        "categories": list(train.categories),
    }
    classifier = {"model": str(output_dir), "thresholds": thresholds, "max_length": moderator.max_length}
    serve = {"moderation": {"backend": "classifier", "classifier": classifier}}
    if args.serve_backend == "cascade":  # the default blocklists first, then this classifier
        serve = {
            "moderation": {"backend": "cascade", "on_error": "block", "rules": {}, "classifier": classifier}
        }
    (output_dir / "moderation.yaml").write_text(
        "# A `moderation:` mapping that serves this classifier (rlhf.moderation.build_moderator)\n"
        + yaml.safe_dump(serve, sort_keys=False)
    )
    if run.is_main_process:
        name = model_args.model_name_or_path
        run.finish(
            metrics,
            description=(
                "A multi-label moderation classifier over the categories "
                f"{', '.join(train.categories)} (sigmoid per category). Load it with "
                "`rlhf.moderation.build_moderator(rlhf.moderation.load_moderation_config('moderation.yaml'))`."
            ),
            tags=["text-classification", "moderation"],
            base_model=None
            if name in (None, "tiny", "minilm")
            else name,  # built here, or the packaged MiniLM
            card_metrics={k: metrics[k] for k in CARD_METRICS if k in metrics},
        )
    return metrics


def cli(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    if "-h" in argv or "--help" in argv:  # what the command does, before the list of options
        print(__doc__.strip() + "\n")
    return run_cli(
        main, (ModerationTrainArguments, ModelConfig, TrainingArguments), "rlhf moderation-train", argv
    )


if __name__ == "__main__":
    cli()
