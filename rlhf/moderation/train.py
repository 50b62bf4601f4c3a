"""Moderation classifier training: fine-tune a sequence-classification model on labelled text.

    rlhf moderation-train --config configs/quickstart/moderation-train.yaml

Glue around ``transformers.Trainer``: load labelled data (the built-in task's moderation split, or any
dataset whose label columns are mapped to categories in config), build or load a backbone (a tiny BERT
trained from scratch, the packaged MiniLM encoder, or any model), train a multi-label head (full
fine-tuning or LoRA via peft), then score the held-out split with the same
:class:`~rlhf.moderation.classifier.ClassifierModerator` that serves it. The output directory holds the
model and tokenizer (LoRA merged in), ``config.yaml``, ``metrics.json``, PR curves and loss PNGs, a model
card, and ``moderation.yaml``: a ``moderation:`` mapping that serves this classifier.
"""

from __future__ import annotations

import logging
import random
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from transformers import TrainingArguments
from trl import ModelConfig

from rlhf.config import ConfigError, config_to_dict, run_cli, save_config
from rlhf.moderation.data import Examples, build_examples, load_split
from rlhf.moderation.normalize import normalize
from rlhf.runs import plot_curves, prepare_output_dir, write_metrics, write_model_card

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


def load_examples(args: ModerationTrainArguments) -> tuple[Examples, Examples]:
    """(train, held-out) examples with the same category columns."""
    from rlhf.moderation.data import DatasetError

    columns = dict(
        text_column=args.text_column,
        label_columns=args.label_columns,
        categories_column=args.categories_column,
        unsafe_column=args.unsafe_column,
        label_mapping_name=args.label_mapping,
    )
    train_ds = load_split(args.dataset_name, args.dataset_train_split, args.dataset_config, args.task_seed)
    train = build_examples(
        train_ds,
        categories=args.categories,
        source=f"{args.dataset_name}:{args.dataset_train_split}",
        **columns,
    )
    test = None
    single_file = Path(args.dataset_name).is_file()
    if args.dataset_test_split and not single_file:
        try:
            test_ds = load_split(
                args.dataset_name, args.dataset_test_split, args.dataset_config, args.task_seed
            )
            test = build_examples(
                test_ds,
                categories=train.categories,
                source=f"{args.dataset_name}:{args.dataset_test_split}",
                **columns,
            )
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
    return train, test


def build_model(args: ModerationTrainArguments, model_args: ModelConfig, train: Examples, seed: int):
    """(model, tokenizer) for the configured backbone, with LoRA applied when ``use_peft``."""
    from rlhf.moderation.backbone import build_tiny_classifier, load_classifier_backbone

    name = model_args.model_name_or_path or "tiny"
    texts = [normalize(t) for t in train.texts] if args.normalize_text else train.texts
    if name == "tiny":
        model, tokenizer = build_tiny_classifier(
            texts,
            train.categories,
            vocab_size=args.tokenizer_vocab_size,
            hidden_size=args.tiny_hidden_size,
            num_hidden_layers=args.tiny_num_hidden_layers,
            num_attention_heads=args.tiny_num_attention_heads,
            dropout=args.tiny_dropout,
            max_position_embeddings=max(args.max_length, 512),  # room for long-text windows at inference
            seed=seed,
        )
    else:
        import torch

        dtype = getattr(torch, model_args.dtype) if model_args.dtype not in (None, "auto") else None
        model, tokenizer = load_classifier_backbone(name, train.categories, dtype=dtype)
    model.config.rlhf_normalize_text = args.normalize_text
    if model_args.use_peft:
        from peft import LoraConfig, get_peft_model

        lora = LoraConfig(
            task_type="SEQ_CLS",  # keeps the new classification head trainable (modules_to_save)
            r=model_args.lora_r,
            lora_alpha=model_args.lora_alpha,
            lora_dropout=model_args.lora_dropout,
            target_modules=_target_modules(model_args.lora_target_modules),
            modules_to_save=model_args.lora_modules_to_save,
            use_rslora=model_args.use_rslora,
            use_dora=model_args.use_dora,
        )
        model = get_peft_model(model, lora)
    return model, tokenizer


def _target_modules(value):
    """TRL's ModelConfig turns a one-item list into a string, which peft reads as a full-match regex; keep a
    single module name a name (``all-linear`` stays the keyword)."""
    if isinstance(value, str) and value != "all-linear":
        return [value]
    return value


def tokenize(examples: Examples, tokenizer, max_length: int, normalize_text: bool):
    """A ``datasets.Dataset`` of input_ids, attention_mask and float multi-hot labels."""
    import datasets

    texts = [normalize(t) for t in examples.texts] if normalize_text else examples.texts
    enc = tokenizer(texts, truncation=True, max_length=max_length)
    return datasets.Dataset.from_dict(
        {
            "input_ids": enc["input_ids"],
            "attention_mask": enc["attention_mask"],
            "labels": [[float(v) for v in row] for row in examples.labels],
        }
    )


def main(args: ModerationTrainArguments, model_args: ModelConfig, training_args: TrainingArguments) -> dict:
    """Train, save and score the classifier; returns the metrics written to metrics.json."""
    from transformers import DataCollatorWithPadding, Trainer, set_seed

    from rlhf.moderation.classifier import ClassifierModerator
    from rlhf.moderation.data import DatasetError
    from rlhf.moderation.report import (
        flat_metrics,
        format_table,
        plot_pr_curves,
        run_moderator,
        score_examples,
    )

    output_dir = prepare_output_dir(training_args.output_dir, args.overwrite_output_dir)
    set_seed(training_args.seed)
    try:
        train, test = load_examples(args)
    except (DatasetError, ValueError) as err:  # a missing column, an unknown label mapping or category
        raise ConfigError(str(err).strip().splitlines()[0]) from None
    logger.info(
        "moderation data: %d train / %d held-out rows, categories %s", len(train), len(test), train.categories
    )
    model, tokenizer = build_model(args, model_args, train, training_args.seed)

    trainer = Trainer(
        model=model,
        args=training_args,
        train_dataset=tokenize(train, tokenizer, args.max_length, args.normalize_text),
        data_collator=DataCollatorWithPadding(tokenizer),
        processing_class=tokenizer,
    )
    train_result = trainer.train()
    model = trainer.model
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
    scores = score_examples(run_moderator(moderator, test), test)
    print(format_table(scores))
    plot_pr_curves(output_dir / "pr_curve.png", scores, title="Held-out precision-recall")
    losses = [(e["step"], e["loss"]) for e in trainer.state.log_history if "loss" in e]
    if losses:
        plot_curves(output_dir / "loss.png", {"train": losses}, title="Moderation classifier training loss")

    metrics = {
        **flat_metrics(scores, prefix="eval_"),
        "f1": scores["overall_f1"],  # the headline: unsafe-vs-safe F1 on the held-out split
        "eval_f1": scores["overall_f1"],
        "train_loss": train_result.training_loss,
        "train_loss_first": losses[0][1] if losses else None,  # first and last logged losses: did it learn?
        "train_loss_last": losses[-1][1] if losses else None,
        "train_runtime_s": train_result.metrics.get("train_runtime"),
        "train_samples": len(train),
        "num_parameters": sum(p.numel() for p in model.parameters()),
        "categories": list(train.categories),
    }
    save_config(output_dir, args, model_args, training_args)
    serve = {
        "moderation": {
            "backend": "classifier",
            "classifier": {
                "model": str(output_dir),
                "thresholds": {"default": args.threshold},
                "max_length": moderator.max_length,
            },
        }
    }
    (output_dir / "moderation.yaml").write_text(
        "# A `moderation:` mapping that serves this classifier (rlhf.moderation.build_moderator)\n"
        + yaml.safe_dump(serve, sort_keys=False)
    )
    write_model_card(
        output_dir,
        stage="moderation",
        description=(
            "A multi-label moderation classifier over the categories "
            f"{', '.join(train.categories)} (sigmoid per category). Load it with "
            "`rlhf.moderation.build_moderator(rlhf.moderation.load_moderation_config('moderation.yaml'))`."
        ),
        base_model=model_args.model_name_or_path
        if model_args.model_name_or_path not in (None, "tiny", "minilm")
        else None,
        datasets=[args.dataset_name]
        if args.dataset_name != "builtin" and not Path(args.dataset_name).exists()
        else [],
        metrics={k: metrics[k] for k in CARD_METRICS if k in metrics},
        config=config_to_dict(args, model_args),
        library_name="transformers",
        tags=["text-classification", "moderation"],
    )
    write_metrics(output_dir, metrics)
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
