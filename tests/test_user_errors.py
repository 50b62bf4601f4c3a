"""Every user mistake ends in exit status 2 and one line naming the file or field, never a traceback."""

from __future__ import annotations

import importlib

import pytest

from rlhf.config import ConfigError

CONFIGS = "configs/quickstart"


def _write(path, text):
    path.write_text(text)
    return str(path)


def _cases(tmp):
    tmp.mkdir(exist_ok=True)
    bad_json = _write(tmp / "bad.jsonl", '{"text": "a"}\n{"text": \n')
    wrong_column = _write(tmp / "wrong.jsonl", '{"txt": "a"}\n')
    misspelt = _write(tmp / "misspelt.yaml", "dataset_name: builtin\nlearnig_rate: 0.001\n")
    wrong_type = _write(tmp / "wrong_type.yaml", "dataset_name: builtin\nmax_steps: ten\n")
    leftover = tmp / "leftover"
    (leftover / "checkpoint-10").mkdir(parents=True)
    out = str(tmp / "out")
    return [
        # (command module, argv, words the one line must hold)
        ("rlhf.pretrain", ["--config", misspelt, "--output_dir", out], ["misspelt.yaml", "learnig_rate"]),
        ("rlhf.pretrain", ["--config", wrong_type, "--output_dir", out], ["max_steps", "ten"]),
        ("rlhf.pretrain", ["--config", str(tmp / "nope.yaml")], ["nope.yaml", "not found"]),
        ("rlhf.pretrain", ["--dataset_name", str(tmp / "nope.jsonl"), "--output_dir", out], ["nope.jsonl"]),
        ("rlhf.pretrain", ["--dataset_name", bad_json, "--output_dir", out], ["bad.jsonl", "cannot read"]),
        (
            "rlhf.pretrain",
            ["--dataset_name", wrong_column, "--output_dir", out],
            ["wrong.jsonl", "text_column"],
        ),
        ("rlhf.pretrain", ["--dataset_name", "builtin", "--output_dir", str(leftover)], ["checkpoint-10"]),
        ("rlhf.tokenizer", ["--dataset_name", str(tmp / "nope.jsonl"), "--output_dir", out], ["nope.jsonl"]),
        ("rlhf.tokenizer", ["--dataset_name", "no-such-org/no-such-corpus", "--output_dir", out], ["Hub"]),
        ("rlhf.sft", ["--config", f"{CONFIGS}/sft.yaml", "--max_steps", "ten"], ["max_steps", "ten"]),
        ("rlhf.reward", ["--config", f"{CONFIGS}/reward.yaml", "--lora_rank", "8"], ["lora_rank", "lora_r"]),
        ("rlhf.ppo", ["--config", f"{CONFIGS}/ppo.yaml", "--algorithm", "dpo"], ["algorithm"]),
        ("rlhf.dpo", ["--config", f"{CONFIGS}/dpo.yaml", "--beta", "high"], ["beta", "high"]),
        (
            "rlhf.dpo",
            ["--config", f"{CONFIGS}/dpo.yaml", "--model_name_or_path", "", "--output_dir", out],
            ["model_name_or_path"],
        ),
        ("rlhf.quickstart", ["--eval_split", "tset"], ["eval_split", "tset"]),
    ]


def test_each_command_s_mistakes_exit_2_with_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    for module, argv, words in _cases(tmp_path / "inputs"):
        with pytest.raises(SystemExit) as exit_info:
            importlib.import_module(module).cli(argv)
        err = capsys.readouterr().err.strip()
        assert exit_info.value.code == 2, (module, argv, err)
        last = err.splitlines()[-1]
        assert "Traceback" not in err and last.startswith("rlhf "), (module, argv, err)
        assert all(word in last for word in words), (module, argv, last)


def test_every_user_error_type_is_a_config_error():
    from rlhf.corpus import CorpusError
    from rlhf.push import PushError
    from rlhf.runs import RunDirError
    from rlhf.templates import TemplateError

    assert all(issubclass(e, ConfigError) for e in (CorpusError, PushError, RunDirError, TemplateError))
