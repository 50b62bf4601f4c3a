"""`rlhf quickstart`: the README's main command (plus DPO), at full size, meets the targets the README states."""

import json
from pathlib import Path

import pytest
import torch

from rlhf.config import ConfigError
from rlhf.quickstart import QuickstartArguments, format_report, main, stage_argv, target_met

RECIPE = Path(__file__).resolve().parents[1] / "configs" / "quickstart"
README = RECIPE.parents[1] / "README.md"

# Targets the README reports as missed on the test split, each with its reason there. A row here is still
# checked: the README's table must call it a miss (so the two cannot drift apart silently).
KNOWN_MISSES = {
    ("sft", "answer_accuracy"),  # 0.66-0.76 on test (0.870 on validation): new templates, a tiny model
}


@pytest.fixture(scope="module")
def quickstart_run(tmp_path_factory):
    """The full recipe as configured, with DPO (about 7 minutes on 2 idle CPU cores)."""
    root = tmp_path_factory.mktemp("quickstart")
    threads = torch.get_num_threads()
    # the suite's longest test keeps a second thread under pytest-xdist (one stage at 1 thread takes 1.75x)
    torch.set_num_threads(max(threads, 2))
    try:
        report = main(
            QuickstartArguments(output_dir=str(root / "run"), config_dir=str(RECIPE), with_dpo=True)
        )
    finally:
        torch.set_num_threads(threads)
    return root / "run", report


@pytest.mark.slow
def test_the_full_recipe_meets_every_target_the_readme_states(quickstart_run):
    run_dir, report = quickstart_run
    targets = {(r["stage"], r["key"]): (r["metric"], r["target"]) for r in report["rows"] if r["target"]}
    assert len(targets) == 10  # every stage with a target is in the report (PPO's and DPO's gain twice)
    readme = README.read_text().splitlines()
    for (stage, key), (label, target) in targets.items():
        value = report["metrics"][stage][key]
        rows = [line for line in readme if line.startswith(stage) and label in line and target in line]
        assert rows, f"the README's table has no row {stage} / {label} / {target}"
        if (stage, key) in KNOWN_MISSES:
            assert any("miss" in line for line in rows), f"{stage} / {label}: a known miss the README hides"
        else:
            assert target_met(value, target), (stage, key, value, target)
    m = report["metrics"]
    assert m["pretrain"]["fact_accuracy"] > m["pretrain"]["fact_accuracy_untrained"]
    assert m["ppo"]["kl_to_sft"] > 0 and m["dpo"]["kl_to_sft"] > 0
    # DPO answers the prompts PPO answers, and its SFT answers are PPO's (same model, seed and batches)
    assert m["dpo"]["gold_reward_sft"] == m["ppo"]["gold_reward_sft"] and m["dpo"]["eval_prompts"] == 192
    assert [r["metric"] for r in report["rows"] if r["stage"] == "dpo"][2] == "gain (DPO - SFT)"
    on_disk = json.loads((run_dir / "report.json").read_text())
    assert [r["key"] for r in on_disk["rows"]] == [r["key"] for r in report["rows"]]
    for stage in ("tokenizer", "pretrain", "sft", "reward", "ppo", "dpo", "moderation-train"):
        assert (run_dir / stage / "metrics.json").is_file()
        assert (run_dir / stage / "config.yaml").is_file()


@pytest.mark.slow
def test_a_second_run_skips_finished_stages(quickstart_run, capsys):
    run_dir, report = quickstart_run
    again = main(QuickstartArguments(output_dir=str(run_dir), config_dir=str(RECIPE), with_dpo=True))
    out = capsys.readouterr().out
    assert out.count("skipping") == 7
    assert again["metrics"]["ppo"] == report["metrics"]["ppo"]
    assert all(seconds == 0.0 for seconds in again["seconds"].values())


def test_a_partial_run_reports_its_stages_and_skips_the_pipeline(tmp_path, capsys):
    report = main(
        QuickstartArguments(output_dir=str(tmp_path / "run"), config_dir=str(RECIPE), stages=["tokenizer"])
    )
    assert "pipeline: skipped, it needs finished ppo and moderation-train runs" in capsys.readouterr().out
    assert [r["stage"] for r in report["rows"]] == ["tokenizer"]
    assert report["metrics"]["tokenizer"]["bytes_per_token"] > 1.0
    assert (tmp_path / "run" / "report.json").is_file()


def test_eval_split_reaches_the_stages_that_evaluate_on_a_held_out_split(tmp_path):
    for stage in ("sft", "reward", "ppo", "dpo"):
        argv = stage_argv(RECIPE / f"{stage}.yaml", str(tmp_path), False, "blind")
        assert argv[argv.index("--dataset_test_split") + 1] == "blind"
        assert "--dataset_test_split" not in stage_argv(RECIPE / f"{stage}.yaml", str(tmp_path), False)
    argv = stage_argv(RECIPE / "pretrain.yaml", str(tmp_path), False, "blind")
    assert argv[argv.index("--fact_split") + 1] == "blind" and "--dataset_test_split" not in argv
    assert "--fact_split" not in stage_argv(RECIPE / "tokenizer.yaml", str(tmp_path), False, "blind")
    with pytest.raises(ConfigError, match="eval_split"):
        QuickstartArguments(eval_split="tset")


def test_with_dpo_runs_dpo_right_after_the_rl_stage():
    assert QuickstartArguments(with_dpo=True).stages[4:6] == ["ppo", "dpo"]
    assert "dpo" not in QuickstartArguments().stages  # the default quickstart's time stays as it was
    assert QuickstartArguments(stages=["sft"], with_dpo=True).stages == ["sft", "dpo"]


def test_the_report_table_calls_a_missed_target_a_miss():
    assert target_met(0.8, ">= 0.8") and not target_met(0.79, ">= 0.8")
    assert target_met(0.1, "95% CI > 0") and not target_met(0.0, "> 0") and not target_met(None, "> 0")
    assert target_met(1.0, None) is None
    rows = [
        {"stage": "sft", "metric": "answer accuracy", "value": 0.435, "target": ">= 0.8", "met": False},
        {"stage": "reward", "metric": "pairwise accuracy", "value": 0.95, "target": ">= 0.9", "met": True},
        {"stage": "pretrain", "metric": "perplexity", "value": 4.2, "target": None, "met": None},
    ]
    lines = format_report(rows).splitlines()
    assert "0.435 (miss)" in lines[2] and "(miss)" not in lines[3] + lines[4]
