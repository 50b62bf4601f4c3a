"""`rlhf quickstart` at a smaller scale: every stage runs from the real recipe, and every gold metric moves the
way the full recipe's targets say (the README's main command runs the full-size version)."""

import json
from pathlib import Path

import pytest
import yaml

from rlhf.config import ConfigError
from rlhf.quickstart import QuickstartArguments, main, stage_argv

RECIPE = Path(__file__).resolve().parents[1] / "configs" / "quickstart"

# The full recipe with fewer steps (about 60% of the full run's time).
SMALLER = {
    "pretrain": {"max_steps": 350, "eval_steps": 175, "save_steps": 1000},
    "reward": {"max_steps": 150},
    "ppo": {"total_episodes": 1024},
    "dpo": {"max_steps": 50},
    "moderation-train": {"num_train_epochs": 4},
}


def write_smaller_recipe(directory: Path) -> Path:
    directory.mkdir()
    for path in RECIPE.glob("*.yaml"):
        recipe = yaml.safe_load(path.read_text())
        if isinstance(recipe, dict) and path.stem in SMALLER:
            recipe.update(SMALLER[path.stem])
        # keep the first-line command comment and let YAML hold the rest
        first_line = path.read_text().splitlines()[0]
        (directory / path.name).write_text(first_line + "\n" + yaml.safe_dump(recipe, sort_keys=False))
    return directory


@pytest.fixture(scope="module")
def quickstart_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("quickstart")
    recipe = write_smaller_recipe(root / "recipe")
    report = main(QuickstartArguments(output_dir=str(root / "run"), config_dir=str(recipe), with_dpo=True))
    return root / "run", report


@pytest.mark.slow
def test_every_stage_moves_its_gold_metric_the_right_way(quickstart_run):
    run_dir, report = quickstart_run
    m = report["metrics"]
    assert m["pretrain"]["fact_accuracy"] > m["pretrain"]["fact_accuracy_untrained"] + 0.2
    assert m["sft"]["answer_accuracy"] > 0.5
    assert m["reward"]["pairwise_accuracy"] > 0.75
    assert m["ppo"]["gold_reward_policy"] > m["ppo"]["gold_reward_sft"]
    assert m["ppo"]["kl_to_sft"] > 0
    # DPO answers the prompts PPO answers, and its SFT answers are PPO's (same model, seed and batches)
    assert m["dpo"]["gold_reward_sft"] == m["ppo"]["gold_reward_sft"] and m["dpo"]["eval_prompts"] == 192
    assert (
        m["dpo"]["gold_reward_gain_ci_low"]
        <= m["dpo"]["gold_reward_gain"]
        <= m["dpo"]["gold_reward_gain_ci_high"]
    )
    assert m["dpo"]["eval_reward_accuracy"] > 0.6 and m["dpo"]["kl_to_sft"] > 0
    assert [r["metric"] for r in report["rows"] if r["stage"] == "dpo"][2] == "gain (DPO - SFT)"
    assert m["moderation-train"]["f1"] > 0.8
    assert m["pipeline"]["unsafe_blocked_rate"] > 0.8 and m["pipeline"]["safe_answered_rate"] > 0.8
    on_disk = json.loads((run_dir / "report.json").read_text())
    assert [r["key"] for r in on_disk["rows"]] == [r["key"] for r in report["rows"]]
    for stage in ("tokenizer", "pretrain", "sft", "reward", "ppo", "dpo", "moderation-train"):
        assert (run_dir / stage / "metrics.json").is_file()
        assert (run_dir / stage / "config.yaml").is_file()


@pytest.mark.slow
def test_a_second_run_skips_finished_stages(quickstart_run, capsys):
    run_dir, report = quickstart_run
    recipe = run_dir.parent / "recipe"
    again = main(QuickstartArguments(output_dir=str(run_dir), config_dir=str(recipe), with_dpo=True))
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
