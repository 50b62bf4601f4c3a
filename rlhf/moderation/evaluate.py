"""Moderation evaluation: run any configured moderator over any labelled dataset.

    rlhf moderation-eval --config configs/quickstart/moderation-eval.yaml
    rlhf moderation-eval --moderation_config configs/quickstart/moderation.yaml \\
        --dataset_name my_labels.jsonl --text_column content --label_columns '{is_threat: violent_crimes}'

Any labelled file works through config alone: name its text column and map its label columns (0/1,
true/false or probabilities) to category ids, e.g. in a YAML config::

    moderation_config: configs/quickstart/moderation.yaml
    dataset_name: my_labels/             # validation.jsonl + test.jsonl: {"content": ..., "is_threat": 1, ...}
    text_column: content
    label_columns: {is_threat: violent_crimes, is_hateful: hate}
    target_fpr: 0.02                     # thresholds that flag at most 2% of the safe rows of validation
    thresholds_output: tuned-moderation.yaml

Prints per-category and overall precision, recall, F1, average precision (AUPRC) and the false-positive
rate on safe items (over-refusal), per side as well. With ``target_fpr`` it picks, per side and category,
a threshold whose false-positive rate on the safe items of ``tune_split`` stays within the target (midway
between the safe scores it passes and the next score above, for a margin on new text), reports ``dataset_split`` at those thresholds (the two splits may share no text), and writes a copy of the
moderation config with them to ``thresholds_output`` (a new file: the input config is never overwritten).
"""

from __future__ import annotations

import copy
import json
import logging
import sys
from pathlib import Path
from typing import Any

import yaml

from rlhf.config import ConfigError, run_cli, save_config
from rlhf.moderation.base import ModerationConfigError
from rlhf.moderation.config import load_moderation_config, parse_moderation_config, resolve_path
from rlhf.moderation.data import Examples, build_examples, load_split
from rlhf.moderation.eval_args import ModerationEvalArguments
from rlhf.moderation.factory import build_moderator
from rlhf.moderation.metrics import threshold_for_fpr
from rlhf.moderation.report import (
    flat_metrics,
    format_table,
    group_table,
    plot_pr_curves,
    result_scores,
    run_moderator,
    score_examples,
)
from rlhf.moderation.taxonomy import load_taxonomy
from rlhf.runs import prepare_output_dir, write_metrics

logger = logging.getLogger(__name__)


FPR_SCOPES = ("category", "overall")


def choose_thresholds(
    results, examples: Examples, target_fpr: float, scope: str = "category"
) -> dict[str, dict[str, float]]:
    """Per side and category, a threshold with FPR <= target on that side's safe items.

    Positives are the items labelled with the category, negatives the safe items. ``scope="category"``:
    each category may flag ``target_fpr`` of the safe items; ``"overall"``: the target is shared evenly
    by the side's categories, so the share of safe items that *any* category flags is at most
    ``target_fpr`` (a union bound). A (side, category) without positives or without safe items is left out
    (its threshold stays as configured).
    """
    if scope not in FPR_SCOPES:
        raise ValueError(f"target_fpr_scope must be one of {list(FPR_SCOPES)}, got {scope!r}")
    chosen: dict[str, dict[str, float]] = {}
    per_scores = [result_scores(r, examples.categories)[0] for r in results]
    for side in ("input", "output"):
        columns = []
        for k in range(len(examples.categories)):
            idx = [
                i
                for i, s in enumerate(examples.sides)
                if s == side and (examples.labels[i][k] or not examples.unsafe[i])
            ]
            y = [examples.labels[i][k] for i in idx]
            if any(y) and not all(y):
                columns.append((k, idx, y))
        target = target_fpr / len(columns) if scope == "overall" and columns else target_fpr
        for k, idx, y in columns:
            chosen.setdefault(side, {})[examples.categories[k]] = round(
                threshold_for_fpr(y, [per_scores[i][k] for i in idx], target), 6
            )
    return chosen


def with_thresholds(document: dict[str, Any], chosen: dict[str, dict[str, float]]) -> dict[str, Any]:
    """A copy of a config document (``moderation:`` mapping at top level or under ``moderation``) whose
    classifier (or guard) thresholds are replaced by ``chosen``."""
    document = copy.deepcopy(document)
    mapping = document.get("moderation", document)
    mapping.pop("_base_dir", None)
    mapping.pop("_source", None)
    backend = mapping.get("backend", "rules")
    if backend in ("classifier", "cascade") and "classifier" in mapping:
        section = mapping["classifier"]
        old = section.get("thresholds", 0.5)
        base = dict(old) if isinstance(old, dict) else {"default": float(old)}
        for side, values in chosen.items():
            side_old = base.get(side, {})
            side_map = dict(side_old) if isinstance(side_old, dict) else {"default": float(side_old)}
            side_map.update(values)
            base[side] = side_map
        section["thresholds"] = base
    elif backend == "guard":
        # one threshold per side: the strictest (highest) of the categories' choices
        mapping["guard"]["threshold"] = {
            side: max(values.values()) for side, values in chosen.items() if values
        }
    else:
        raise ModerationConfigError(f"backend '{backend}' has no thresholds to tune (rules cannot score)")
    return document


def _pin_model_paths(document: dict[str, Any], base_dir: str | None) -> dict[str, Any]:
    """Make model paths that were relative to the input config's folder absolute, so the tuned copy
    (written elsewhere) still finds them."""
    tuned = document.get("moderation", document)
    for key in ("classifier", "guard"):
        section = tuned.get(key)
        if isinstance(section, dict) and isinstance(section.get("model"), str):
            resolved = resolve_path(section["model"], base_dir)
            if resolved != section["model"]:
                section["model"] = str(Path(resolved).resolve())
    return document


def load_examples(args: ModerationEvalArguments, split: str) -> Examples:
    """One split of the evaluation data as moderation examples, with the columns the arguments name."""
    dataset = load_split(args.dataset_name, split, args.dataset_config, args.task_seed)
    if args.max_samples is not None:
        dataset = dataset.select(range(min(args.max_samples, len(dataset))))
    return build_examples(
        dataset,
        text_column=args.text_column,
        label_columns=args.label_columns,
        categories_column=args.categories_column,
        unsafe_column=args.unsafe_column,
        label_mapping_name=args.label_mapping,
        categories=args.categories,
        side_column=args.side_column,
        prompt_column=args.prompt_column,
        default_side=args.side,
        source=args.dataset_name,
        group_column=args.group_column,
    )


def main(args: ModerationEvalArguments) -> dict[str, Any]:
    """Evaluate, print the table and the headline numbers, write outputs; returns the metrics.

    A mistake in the moderation config or the dataset's columns raises ConfigError (one line naming the
    key or column and the file) before anything is written.
    """
    if args.moderation is not None:
        mapping, document = dict(args.moderation), {"moderation": dict(args.moderation)}
    else:
        mapping = load_moderation_config(args.moderation_config)
        document = yaml.safe_load(Path(args.moderation_config).read_text()) or {}
    config = parse_moderation_config(mapping)  # a malformed mapping stops here, before any data is read
    source = config.source or "inline"
    if args.thresholds_output:
        out_path = Path(args.thresholds_output)
        if args.moderation_config and out_path.resolve() == Path(args.moderation_config).resolve():
            raise ConfigError("thresholds_output must be a new file, not the input moderation_config")
        if out_path.exists() and not args.overwrite_output_dir:
            raise ConfigError(
                f"thresholds_output '{out_path}' already exists; choose a new file "
                "(or pass --overwrite_output_dir true to replace it)"
            )
    if args.target_fpr is not None and config.backend == "rules":
        raise ConfigError(
            f"{source}: backend 'rules' has no thresholds to tune; target_fpr needs a classifier, "
            "guard or cascade moderator"
        )
    try:
        examples = load_examples(args, args.dataset_split)
        tune_examples = load_examples(args, args.tune_split) if args.target_fpr is not None else None
        known = load_taxonomy(config.resolve_path(config.taxonomy) if config.taxonomy else None)
    except (
        ValueError
    ) as err:  # an unknown label mapping or taxonomy (a DatasetError is a ConfigError already)
        raise ConfigError(str(err).splitlines()[0]) from None
    if tune_examples is not None:
        shared = set(tune_examples.texts) & set(examples.texts)
        if shared:
            raise ConfigError(
                f"{args.dataset_name}: tune_split '{args.tune_split}' and dataset_split '{args.dataset_split}' "
                f"share {len(shared)} text(s), e.g. {next(iter(shared))[:60]!r}; thresholds must be chosen on "
                "rows that are not reported (a single file is one split: give a folder with "
                "validation and test files)"
            )
    unknown = [c for c in examples.categories if c not in known]
    if unknown:
        raise ConfigError(
            f"{args.dataset_name}: labels map to unknown category id(s) {unknown}; map each label column "
            "to a category, e.g. label_columns: {toxic: hate}, or set label_mapping "
            f"(category ids: {', '.join(known)})"
        )
    moderator = build_moderator(config)
    output_dir = prepare_output_dir(args.output_dir, args.overwrite_output_dir) if args.output_dir else None

    chosen = None
    if tune_examples is not None:
        tune_results = run_moderator(moderator, tune_examples, batch_size=args.batch_size)
        chosen = choose_thresholds(tune_results, tune_examples, args.target_fpr, args.target_fpr_scope)
        document = _pin_model_paths(with_thresholds(document, chosen), config.base_dir)
        tuned = dict(document.get("moderation", document))
        # relative paths (a taxonomy file) still resolve against the input's folder
        tuned.update(_base_dir=config.base_dir, _source=config.source)
        moderator = build_moderator(tuned)
        print(
            f"thresholds for FPR <= {args.target_fpr} ({args.target_fpr_scope}) chosen on "
            f"[{args.tune_split}] ({len(tune_examples)} rows): {json.dumps(chosen)}"
        )
    results = run_moderator(moderator, examples, batch_size=args.batch_size)
    scores = score_examples(results, examples)
    table = format_table(scores)
    print(
        f"moderator: {moderator.name} ({source}); dataset: {args.dataset_name} [{args.dataset_split}], {len(examples)} rows"
    )
    print(table)
    print(
        f"overall: AUPRC {scores['overall_auprc']:.4f}  F1 {scores['overall_f1']:.4f}  "
        f"FPR (over-refusal) {scores['overall_fpr']:.4f}  precision {scores['overall_precision']:.4f}  "
        f"recall {scores['overall_recall']:.4f}"
    )
    metrics = flat_metrics(scores)
    metrics["per_category"] = scores["per_category"]
    if examples.groups is not None:
        metrics["per_group"], group_text = group_table(results, examples, examples.groups)
        print(group_text)
        table += "\n\n" + group_text
    safe = [r.flagged for r, u in zip(results, examples.unsafe, strict=True) if not u]
    unsafe = [r.flagged for r, u in zip(results, examples.unsafe, strict=True) if u]
    metrics["safe_passed"] = 1 - sum(safe) / len(safe) if safe else None
    metrics["unsafe_flagged"] = sum(unsafe) / len(unsafe) if unsafe else None
    print(
        f"safe items passed: {metrics['safe_passed'] if safe else float('nan'):.4f} of {len(safe)}; "
        f"unsafe items flagged: {metrics['unsafe_flagged'] if unsafe else float('nan'):.4f} of {len(unsafe)}"
    )
    if chosen is not None:
        metrics["chosen_thresholds"] = chosen
        metrics["tune_split"] = args.tune_split
        if args.thresholds_output:
            header = (
                f"# {source} with thresholds chosen by `rlhf moderation-eval` for a false-positive rate <= "
                f"{args.target_fpr} on {args.dataset_name} [{args.tune_split}]\n"
            )
            Path(args.thresholds_output).parent.mkdir(parents=True, exist_ok=True)
            Path(args.thresholds_output).write_text(header + yaml.safe_dump(document, sort_keys=False))
            print(f"wrote {args.thresholds_output}")
    if output_dir is not None:
        (output_dir / "report.txt").write_text(table + "\n")
        plot_pr_curves(output_dir / "pr_curve.png", scores, title=f"{moderator.name}: precision-recall")
        save_config(output_dir, args)
        write_metrics(output_dir, metrics)
    return metrics


def cli(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    if "-h" in argv or "--help" in argv:  # what the command does, before the list of options
        print(__doc__.strip() + "\n")
    return run_cli(main, (ModerationEvalArguments,), "rlhf moderation-eval", argv)


if __name__ == "__main__":
    cli()
