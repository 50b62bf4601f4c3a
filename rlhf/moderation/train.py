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

This module holds the data splits and the run (its settings are :mod:`rlhf.moderation.train_args`); the classifier's pieces (backbone, head fit,
optimizer, tokenized rows) are :mod:`rlhf.moderation.train_model`.
"""

from __future__ import annotations

import json
import logging
import random
import sys
import time
from pathlib import Path
from typing import Any

import yaml
from transformers import TrainingArguments
from trl import ModelConfig

from rlhf.config import ConfigError, run_cli
from rlhf.moderation.data import Examples, build_examples, load_split
from rlhf.moderation.train_args import ModerationTrainArguments
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
