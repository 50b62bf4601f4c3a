"""Benchmark: the moderation fast path (frozen encoder + logistic head) vs full fine-tuning, on real text.

    RLHF_SHARED_DATA=/path/to/shared/data python bench/moderation.py [--config configs/moderation-real/moderation-train.yaml]

Both sides run ``rlhf moderation-train`` with the same recipe (the real-data mixture, MiniLM, max_length,
thresholds chosen on the validation split at the recipe's target_fpr) and differ only in ``train_mode``
(``frozen``: embed the training texts once and fit one weighted logistic regression per category;
``full``: the same head as the starting point, then encoder and head fine-tuned). Reported per side, on the
mixture's held-out test split: training seconds (head fit + fine-tuning, not loading), inference texts/s of
the classifier over the test split (batch = per_device_eval_batch_size, fp32, CPU threads as set), overall
AUPRC (the "unsafe" score is the highest category score), every category's AUPRC against its prevalence,
and the share of held-out HarmBench/StrongREJECT requests the cascade (default rules, then the classifier)
blocks. XSTest (test only; never trained on or tuned on): share of its safe prompts passed and unsafe
prompts flagged, by the classifier alone and by the cascade, and the cascade's table per XSTest type.
The last line of output is a JSON object.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def shared_data() -> Path | None:
    for candidate in (
        os.environ.get("RLHF_SHARED_DATA"),
        ROOT.parent / "shared" / "data",
        "/work/shared/data",
    ):
        if candidate and Path(candidate).is_dir():
            return Path(candidate)
    return None


def train(config: str, mode: str, out: Path, extra: list[str]) -> dict:
    from rlhf.cli import main as rlhf_main

    rlhf_main(
        ["moderation-train", "--config", config, "--train_mode", mode, "--output_dir", str(out), *extra]
    )
    return json.loads((out / "metrics.json").read_text())


def xstest(run_dir: Path, data: Path) -> dict:
    """XSTest through the run's classifier alone and through its cascade (the written moderation.yaml)."""
    from rlhf.moderation import build_moderator, load_moderation_config
    from rlhf.moderation.data import build_examples
    from rlhf.moderation.report import group_table

    with (data / "xstest" / "xstest_prompts.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    texts = [r["prompt"] for r in rows]
    unsafe = [r["label"] == "unsafe" for r in rows]
    mapping = load_moderation_config(run_dir / "moderation.yaml")
    out = {}
    for name, config in (
        ("classifier", {"backend": "classifier", "classifier": mapping["classifier"]}),
        ("cascade", mapping),
    ):
        results = build_moderator(config).moderate(texts)
        safe_flags = [r.flagged for r, u in zip(results, unsafe, strict=True) if not u]
        unsafe_flags = [r.flagged for r, u in zip(results, unsafe, strict=True) if u]
        out[name] = {
            "safe_passed": 1 - sum(safe_flags) / len(safe_flags),
            "unsafe_flagged": sum(unsafe_flags) / len(unsafe_flags),
        }
        if name == "cascade":
            examples = build_examples(
                _Rows({"text": texts, "unsafe": [int(u) for u in unsafe], "type": [r["type"] for r in rows]}),
                categories_column=None,
                group_column="type",
                categories=[],
            )
            out[name]["per_type"], out[name]["table"] = group_table(results, examples, examples.groups)
    return out


class _Rows(dict):
    """Columns as a mapping, the shape ``build_examples`` reads."""

    @property
    def column_names(self):
        return list(self)

    def __len__(self):
        return len(next(iter(self.values())))


def held_out_blocked(run_dir: Path) -> dict:
    """Share of the test split's HarmBench and StrongREJECT requests the cascade blocks."""
    from rlhf.moderation import build_moderator, load_moderation_config

    moderator = build_moderator(load_moderation_config(run_dir / "moderation.yaml"))
    rows = [json.loads(line) for line in (run_dir / "data" / "test.jsonl").read_text().splitlines()]
    out = {}
    for source in ("harmbench", "strongreject"):
        texts = [r["text"] for r in rows if r["source"] == source and r["unsafe"]]
        if texts:
            out[source] = sum(r.flagged for r in moderator.moderate(texts)) / len(texts)
            out[f"{source}_n"] = len(texts)
    return out


def category_table(metrics: dict, data_dir: Path) -> tuple[dict, list[str]]:
    """Per category: test AUPRC, prevalence and their ratio."""
    rows = [json.loads(line) for line in (data_dir / "test.jsonl").read_text().splitlines()]
    out, lines = {}, []
    for cid in metrics["categories"]:
        prevalence = sum(cid in r["categories"] for r in rows) / len(rows)
        auprc = metrics.get(f"eval_{cid}_auprc", math.nan)
        out[cid] = {
            "auprc": auprc,
            "prevalence": prevalence,
            "ratio": auprc / prevalence if prevalence else None,
        }
        lines.append(
            f"  {cid:<24} AUPRC {auprc:.3f}  prevalence {prevalence:.3f}  ratio {auprc / prevalence:.1f}x"
        )
    return out, lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--config", default=str(ROOT / "configs" / "moderation-real" / "moderation-train.yaml")
    )
    parser.add_argument("--output_dir", default=None, help="keep the two runs here (default: a temp folder)")
    parser.add_argument(
        "extra", nargs="*", help="more moderation-train flags for both sides, e.g. --num_train_epochs 2"
    )
    bench = parser.parse_args()
    data = shared_data()
    if data is None:
        print(
            '{"skipped": "no shared data: set RLHF_SHARED_DATA to the folder with xstest/, harmbench/, ..."}'
        )
        return
    os.environ["RLHF_SHARED_DATA"] = str(data)
    import torch

    root = Path(bench.output_dir or tempfile.mkdtemp(prefix="bench-moderation-"))
    summary: dict = {"torch_threads": torch.get_num_threads()}
    for mode, key in (("frozen", "fast"), ("full", "finetune")):
        out = root / mode
        metrics = train(bench.config, mode, out, bench.extra)
        categories, lines = category_table(metrics, out / "data")
        xs = xstest(out, data)
        blocked = held_out_blocked(out)
        summary.update(
            {
                f"auprc_{key}": metrics["eval_overall_auprc"],
                f"macro_auprc_{key}": metrics["eval_macro_auprc"],
                f"train_s_{key}": metrics["train_runtime_s"],
                f"texts_per_s_{key}": metrics["test_texts_per_s"],
                f"min_category_auprc_over_prevalence_{key}": min(c["ratio"] for c in categories.values()),
                f"xstest_safe_passed_classifier_{key}": xs["classifier"]["safe_passed"],
                f"xstest_unsafe_flagged_classifier_{key}": xs["classifier"]["unsafe_flagged"],
                f"xstest_safe_passed_cascade_{key}": xs["cascade"]["safe_passed"],
                f"xstest_unsafe_flagged_cascade_{key}": xs["cascade"]["unsafe_flagged"],
                **{f"heldout_blocked_{k}_{key}": v for k, v in blocked.items()},
            }
        )
        print(f"== {key} (train_mode {mode}): {metrics['train_samples']} training texts")
        print(
            f"train {metrics['train_runtime_s']:.1f} s; inference {metrics['test_texts_per_s']:.1f} texts/s"
        )
        print(f"test overall AUPRC {metrics['eval_overall_auprc']:.4f}; per category:")
        print("\n".join(lines))
        print(f"held-out requests blocked by the cascade: {json.dumps(blocked)}")
        for side in ("classifier", "cascade"):
            print(
                f"XSTest {side}: safe passed {xs[side]['safe_passed']:.3f}, "
                f"unsafe flagged {xs[side]['unsafe_flagged']:.3f}"
            )
        print(xs["cascade"]["table"])
    summary["texts_per_s"] = summary["texts_per_s_finetune"]  # same architecture both sides: one speed
    summary["auprc_gap"] = summary["auprc_finetune"] - summary["auprc_fast"]
    summary["train_s_ratio"] = summary["train_s_finetune"] / summary["train_s_fast"]
    print(
        f"fine-tune vs fast path: AUPRC {summary['auprc_finetune']:.4f} vs {summary['auprc_fast']:.4f} "
        f"(gap {summary['auprc_gap']:+.4f}); training {summary['train_s_ratio']:.1f}x longer"
    )
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
