"""Every user mistake in every command ends in exit status 2 and one line naming the file or the field, never a
traceback, and before anything is trained or written.

The table runs `rlhf.cli.main` (what the `rlhf` console script calls) in this process; a few rows run again as
`python -m rlhf.cli` in a fresh process, where library log lines would show too.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import datasets
import pytest
from helpers import save_tiny_base
from huggingface_hub.utils import disable_progress_bars, enable_progress_bars

from rlhf.cli import STAGES, main
from rlhf.config import ConfigError

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = "configs/quickstart"

# The kinds of mistake the table covers (a command has a row for each that applies to it).
MISSPELT, WRONG_TYPE, MISSING_FILE, BAD_DATA, LEFTOVER_OUTPUT, BAD_MODERATION = (
    "misspelt key",
    "wrong type",
    "missing file",
    "bad dataset",
    "leftover output dir",
    "malformed moderation config",
)
# Where a command has no such input, and why.
NOT_APPLICABLE = {
    ("data", BAD_DATA): "writes the built-in data; reads none",
    ("data", BAD_MODERATION): "no moderation",
    ("tokenizer", BAD_MODERATION): "no moderation",
    ("pretrain", BAD_MODERATION): "no moderation",
    ("sft", BAD_MODERATION): "no moderation",
    ("reward", BAD_MODERATION): "no moderation",
    ("ppo", BAD_MODERATION): "no moderation",
    ("dpo", BAD_MODERATION): "no moderation",
    ("moderation-train", BAD_MODERATION): "writes a moderation config; reads none",
    ("chat", BAD_DATA): "reads no dataset",
    ("chat", LEFTOVER_OUTPUT): "writes no output directory",
    ("serve", BAD_DATA): "reads no dataset",
    ("serve", LEFTOVER_OUTPUT): "writes no output directory",
    ("push", WRONG_TYPE): "every option is a string or a switch",
    ("push", BAD_DATA): "reads no dataset",
    ("push", BAD_MODERATION): "no moderation",
    ("quickstart", BAD_DATA): "its stages' configs name the data (their rows are above)",
    ("quickstart", LEFTOVER_OUTPUT): "a finished stage is skipped by design, not an error",
    ("quickstart", BAD_MODERATION): "its pipeline step runs after training; the chat rows cover the config",
}


def _write(path: Path, text: str) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return str(path)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """The broken inputs of the table, and a tiny model so the fine-tuning stages get as far as their data."""
    tmp = tmp_path_factory.mktemp("inputs")
    finished = tmp / "finished"
    _write(finished / "metrics.json", "{}\n")  # what a finished run leaves
    run = save_tiny_base(tmp / "run")  # a run directory push accepts
    _write(tmp / "not-empty" / "file.txt", "x")
    (tmp / "interrupted" / "checkpoint-10").mkdir(parents=True)  # what an interrupted pretraining leaves
    return {
        "tmp": tmp,
        "base": str(save_tiny_base(tmp / "base")),
        "run": str(run),
        "misspelt": _write(tmp / "misspelt.yaml", "learnig_rate: 0.001\n"),
        "wrong_type": _write(tmp / "wrong_type.yaml", "seed: ten\n"),
        "bad_json": _write(tmp / "bad.jsonl", '{"text": "a"}\n{"text": \n'),
        "wrong_column": _write(tmp / "wrong.jsonl", '{"txt": "a"}\n'),
        "bad_moderation": _write(
            tmp / "moderation.yaml",
            "moderation:\n  backend: classifier\n  classifier: {model: m, treshold: 0.3}\n",
        ),
        "finished": str(finished),
        "checkpoint_left": str(tmp / "interrupted"),
        "not_empty": str(tmp / "not-empty"),
        "missing": str(tmp / "nope.jsonl"),
        "missing_yaml": str(tmp / "nope.yaml"),
        "out": str(tmp / "out"),
    }


def table(i):
    """(command, kind of mistake, argv after the command, words the one line must hold)."""
    base, out = ["--model_name_or_path", i["base"]], ["--output_dir", i["out"]]
    ppo = [*base, "--reward_model_path", i["base"], "--config", f"{CONFIGS}/ppo.yaml", *out]
    dpo = [*base, "--reward_model_path", "", "--config", f"{CONFIGS}/dpo.yaml", *out]
    sft, reward = (
        [*base, "--config", f"{CONFIGS}/sft.yaml", *out],
        [*base, "--config", f"{CONFIGS}/reward.yaml", *out],
    )
    moderation = ["--moderation", "{backend: rules}"]
    return [
        ("data", MISSPELT, ["--config", i["misspelt"]], ["misspelt.yaml", "'learnig_rate'"]),
        ("data", WRONG_TYPE, ["--num_people", "many"], ["num_people", "'many'"]),
        ("data", MISSING_FILE, ["--config", i["missing_yaml"]], ["nope.yaml", "not found"]),
        ("data", LEFTOVER_OUTPUT, ["--output_dir", i["finished"]], ["finished", "finished run"]),
        ("tokenizer", MISSPELT, ["--config", i["misspelt"]], ["misspelt.yaml", "'learnig_rate'"]),
        ("tokenizer", WRONG_TYPE, ["--vocab_size", "big"], ["vocab_size", "'big'"]),
        ("tokenizer", MISSING_FILE, ["--dataset_name", i["missing"], *out], ["nope.jsonl", "no such file"]),
        ("tokenizer", BAD_DATA, ["--dataset_name", i["bad_json"], *out], ["bad.jsonl", "JSON parse error"]),
        (
            "tokenizer",
            BAD_DATA,
            ["--dataset_name", "no-such-org/no-such-corpus", *out],
            ["no-such-corpus", "Hub"],
        ),
        ("tokenizer", LEFTOVER_OUTPUT, ["--output_dir", i["finished"]], ["finished", "finished run"]),
        (
            "pretrain",
            MISSPELT,
            ["--config", i["misspelt"], *out],
            ["misspelt.yaml", "'learnig_rate'", "learning_rate"],
        ),
        ("pretrain", WRONG_TYPE, ["--config", i["wrong_type"], *out], ["wrong_type.yaml", "seed", "'ten'"]),
        ("pretrain", MISSING_FILE, ["--dataset_name", i["missing"], *out], ["nope.jsonl"]),
        ("pretrain", BAD_DATA, ["--dataset_name", i["bad_json"], *out], ["bad.jsonl", "JSON parse error"]),
        ("pretrain", BAD_DATA, ["--dataset_name", i["wrong_column"], *out], ["wrong.jsonl", "text_column"]),
        ("pretrain", LEFTOVER_OUTPUT, ["--output_dir", i["checkpoint_left"]], ["checkpoint-10"]),
        ("pretrain", LEFTOVER_OUTPUT, ["--output_dir", i["finished"]], ["finished", "finished run"]),
        ("sft", MISSPELT, ["--config", i["misspelt"]], ["misspelt.yaml", "'learnig_rate'", "learning_rate"]),
        ("sft", WRONG_TYPE, ["--config", f"{CONFIGS}/sft.yaml", "--max_steps", "ten"], ["max_steps", "ten"]),
        ("sft", MISSING_FILE, [*sft, "--dataset_name", i["missing"]], ["nope.jsonl", "no such file"]),
        (
            "sft",
            MISSING_FILE,
            [*sft, "--model_name_or_path", i["missing"]],
            ["model_name_or_path", "nope.jsonl"],
        ),
        ("sft", BAD_DATA, [*sft, "--dataset_name", i["bad_json"]], ["bad.jsonl", "JSON parse error"]),
        (
            "sft",
            BAD_DATA,
            [*sft, "--dataset_name", i["wrong_column"]],
            ["wrong.jsonl", "'prompt'", "['txt']"],
        ),
        ("sft", LEFTOVER_OUTPUT, [*sft, "--output_dir", i["finished"]], ["finished", "finished run"]),
        (
            "reward",
            MISSPELT,
            ["--config", f"{CONFIGS}/reward.yaml", "--lora_rank", "8"],
            ["lora_rank", "lora_r"],
        ),
        ("reward", WRONG_TYPE, ["--config", i["wrong_type"]], ["wrong_type.yaml", "seed", "'ten'"]),
        ("reward", MISSING_FILE, [*reward, "--dataset_name", i["missing"]], ["nope.jsonl", "no such file"]),
        (
            "reward",
            MISSING_FILE,
            [*reward, "--model_name_or_path", i["missing"]],
            ["model_name_or_path", "nope.jsonl"],
        ),
        ("reward", BAD_DATA, [*reward, "--dataset_name", i["bad_json"]], ["bad.jsonl", "JSON parse error"]),
        ("reward", BAD_DATA, [*reward, "--dataset_name", i["wrong_column"]], ["wrong.jsonl", "'chosen'"]),
        ("reward", LEFTOVER_OUTPUT, [*reward, "--output_dir", i["finished"]], ["finished", "finished run"]),
        ("ppo", MISSPELT, ["--config", i["misspelt"]], ["misspelt.yaml", "'learnig_rate'"]),
        ("ppo", WRONG_TYPE, ["--config", f"{CONFIGS}/ppo.yaml", "--algorithm", "dpo"], ["algorithm", "dpo"]),
        ("ppo", MISSING_FILE, [*ppo, "--dataset_name", i["missing"]], ["nope.jsonl", "no such file"]),
        (
            "ppo",
            MISSING_FILE,
            [*ppo, "--reward_model_path", i["missing"]],
            ["reward_model_path", "nope.jsonl"],
        ),
        (
            "dpo",
            MISSING_FILE,
            [*dpo, "--reward_model_path", i["missing"]],
            ["reward_model_path", "nope.jsonl"],
        ),
        ("ppo", BAD_DATA, [*ppo, "--dataset_name", i["bad_json"]], ["bad.jsonl", "JSON parse error"]),
        ("ppo", BAD_DATA, [*ppo, "--dataset_name", i["wrong_column"]], ["wrong.jsonl", "'prompt'"]),
        ("ppo", LEFTOVER_OUTPUT, [*ppo, "--output_dir", i["finished"]], ["finished", "finished run"]),
        ("dpo", MISSPELT, ["--config", f"{CONFIGS}/dpo.yaml", "--betta", "0.1"], ["betta", "beta"]),
        ("dpo", WRONG_TYPE, ["--config", f"{CONFIGS}/dpo.yaml", "--beta", "high"], ["beta", "'high'"]),
        ("dpo", MISSING_FILE, [*dpo, "--dataset_name", i["missing"]], ["nope.jsonl", "no such file"]),
        ("dpo", MISSING_FILE, [*dpo, "--model_name_or_path", ""], ["model_name_or_path"]),
        ("dpo", BAD_DATA, [*dpo, "--dataset_name", i["bad_json"]], ["bad.jsonl", "JSON parse error"]),
        ("dpo", BAD_DATA, [*dpo, "--dataset_name", i["wrong_column"]], ["wrong.jsonl", "'chosen'"]),
        ("dpo", LEFTOVER_OUTPUT, [*dpo, "--output_dir", i["finished"]], ["finished", "finished run"]),
        ("moderation-train", MISSPELT, ["--config", i["misspelt"]], ["misspelt.yaml", "'learnig_rate'"]),
        ("moderation-train", WRONG_TYPE, ["--config", i["wrong_type"]], ["wrong_type.yaml", "seed", "'ten'"]),
        (
            "moderation-train",
            MISSING_FILE,
            ["--dataset_name", i["missing"], *out],
            ["nope.jsonl", "no such file"],
        ),
        (
            "moderation-train",
            BAD_DATA,
            ["--dataset_name", i["bad_json"], *out],
            ["bad.jsonl", "JSON parse error"],
        ),
        (
            "moderation-train",
            BAD_DATA,
            ["--dataset_name", i["wrong_column"], *out],
            ["wrong.jsonl", "text column"],
        ),
        ("moderation-train", LEFTOVER_OUTPUT, ["--output_dir", i["finished"]], ["finished", "finished run"]),
        ("moderation-eval", MISSPELT, ["--config", i["misspelt"]], ["misspelt.yaml", "'learnig_rate'"]),
        ("moderation-eval", WRONG_TYPE, [*moderation, "--max_samples", "all"], ["max_samples", "'all'"]),
        (
            "moderation-eval",
            MISSING_FILE,
            ["--moderation_config", i["missing_yaml"]],
            ["nope.yaml", "not found"],
        ),
        (
            "moderation-eval",
            BAD_DATA,
            [*moderation, "--dataset_name", i["bad_json"]],
            ["bad.jsonl", "JSON parse"],
        ),
        (
            "moderation-eval",
            BAD_DATA,
            [*moderation, "--dataset_name", i["wrong_column"]],
            ["wrong.jsonl", "'text'"],
        ),
        ("moderation-eval", LEFTOVER_OUTPUT, [*moderation, "--output_dir", i["finished"]], ["finished run"]),
        (
            "moderation-eval",
            BAD_MODERATION,
            ["--moderation_config", i["bad_moderation"]],
            ["moderation.yaml", "moderation.classifier", "'treshold'", "thresholds"],
        ),
        ("chat", MISSPELT, ["--config", i["misspelt"]], ["misspelt.yaml", "'learnig_rate'"]),
        ("chat", WRONG_TYPE, ["--max_new_tokens", "ten"], ["max_new_tokens", "'ten'"]),
        ("chat", MISSING_FILE, ["--model_name_or_path", i["missing"]], ["model_name_or_path", "nope.jsonl"]),
        ("chat", MISSING_FILE, [*base, "--moderation_config", i["missing_yaml"]], ["nope.yaml", "not found"]),
        (
            "chat",
            BAD_MODERATION,
            [*base, "--moderation_config", i["bad_moderation"]],
            ["moderation.yaml", "moderation.classifier", "'treshold'", "thresholds"],
        ),
        ("serve", MISSPELT, ["--config", i["misspelt"]], ["misspelt.yaml", "'learnig_rate'"]),
        ("serve", WRONG_TYPE, ["--port", "http"], ["port", "'http'"]),
        (
            "serve",
            MISSING_FILE,
            ["--api_key_file", i["missing_yaml"], "--port", "0"],
            ["api_key_file", "nope.yaml"],
        ),
        (
            "serve",
            BAD_MODERATION,
            [*base, "--moderation_config", i["bad_moderation"], "--port", "0"],
            ["moderation.yaml", "moderation.classifier", "'treshold'"],
        ),
        ("push", MISSPELT, [i["run"], "--repo-idd", "a/b"], ["--repo-idd", "--help"]),
        (
            "push",
            MISSING_FILE,
            [i["missing"], "--repo-id", "a/b", "--dry-run"],
            ["nope.jsonl", "no such run"],
        ),
        (
            "push",
            LEFTOVER_OUTPUT,
            [i["run"], "--repo-id", "a/b", "--dry-run", "--output-dir", i["not_empty"]],
            ["not-empty", "not empty"],
        ),
        ("quickstart", MISSPELT, ["--config", i["misspelt"]], ["misspelt.yaml", "'learnig_rate'"]),
        ("quickstart", WRONG_TYPE, ["--eval_split", "tset"], ["eval_split", "tset"]),
        (
            "quickstart",
            MISSING_FILE,
            ["--config_dir", str(i["tmp"] / "no-recipe"), *out],
            ["no-recipe", "tokenizer"],
        ),
    ]


@pytest.fixture
def quiet_progress():
    """Progress bars (datasets, the Hub's) share stderr with the error line; the table checks the error line."""
    datasets.disable_progress_bars()
    disable_progress_bars()
    yield
    datasets.enable_progress_bars()
    enable_progress_bars()


def run_command(command: str, argv: list[str], capsys) -> tuple[object, list[str]]:
    """(exit status, stderr lines) of ``rlhf COMMAND ARGV``; any other exception propagates (a traceback)."""
    capsys.readouterr()
    try:
        status = main([command, *argv])
    except SystemExit as stop:
        status = stop.code
    return status, capsys.readouterr().err.strip().splitlines()


def test_every_command_s_mistakes_exit_2_with_one_line(inputs, capsys, monkeypatch, quiet_progress):
    monkeypatch.chdir(ROOT)
    rows = table(inputs)
    commands = {command for command, *_ in rows}
    assert commands == set(STAGES), set(STAGES) ^ commands  # every command `rlhf --help` lists
    covered = {(command, kind) for command, kind, *_ in rows}
    kinds = (MISSPELT, WRONG_TYPE, MISSING_FILE, BAD_DATA, LEFTOVER_OUTPUT, BAD_MODERATION)
    missing = {(c, k) for c in STAGES for k in kinds} - covered - set(NOT_APPLICABLE)
    assert not missing, f"no row and no reason for {sorted(missing)}"
    assert not covered & set(NOT_APPLICABLE)

    for command, kind, argv, words in rows:
        status, lines = run_command(command, argv, capsys)
        where = (command, kind, argv, lines)
        assert status == 2, where
        assert len(lines) == 1 and lines[0].startswith(f"rlhf {command}: error: "), where
        assert all(word in lines[0] for word in words), where
        written = [p.name for p in Path(inputs["out"]).rglob("*") if p.suffix in (".safetensors", ".json")]
        assert not written, (where, written)  # stopped before anything was trained or saved
    assert len(rows) >= 60


def test_a_fresh_process_shows_the_same_single_line(inputs):
    """As a user runs it: a new interpreter, library log handlers in place, nothing captured in-process."""
    env = {**os.environ, "HF_DATASETS_DISABLE_PROGRESS_BARS": "1", "HF_HUB_DISABLE_PROGRESS_BARS": "1"}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    for argv, words in [
        (
            ["tokenizer", "--dataset_name", inputs["bad_json"], "--output_dir", inputs["out"]],
            ["JSON parse error"],
        ),
        (["moderation-eval", "--moderation_config", inputs["bad_moderation"]], ["'treshold'"]),
    ]:
        done = subprocess.run(
            [sys.executable, "-m", "rlhf.cli", *argv],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        lines = done.stderr.strip().splitlines()
        assert done.returncode == 2 and len(lines) == 1, (argv, done.stderr[-3000:])
        assert lines[0].startswith(f"rlhf {argv[0]}: error: ") and all(w in lines[0] for w in words), lines


def test_every_user_error_type_is_a_config_error():
    from rlhf.corpus import CorpusError
    from rlhf.dataset_formats import DatasetFormatError, MalformedRowError
    from rlhf.models import ChatTemplateError
    from rlhf.moderation.base import ModerationConfigError
    from rlhf.moderation.data import DatasetError
    from rlhf.push import PushError
    from rlhf.responses import PipelineError
    from rlhf.runs import RunDirError
    from rlhf.templates import TemplateError

    types = (
        CorpusError,
        DatasetError,
        DatasetFormatError,
        MalformedRowError,
        ModerationConfigError,
        PipelineError,
    )
    types += (ChatTemplateError, PushError, RunDirError, TemplateError)
    assert all(issubclass(error, ConfigError) for error in types)
