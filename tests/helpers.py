"""Tiny models, tokenizers and datasets for the fine-tuning tests (built in-process, nothing downloaded).

A toy task stands in for the built-in one: made-up countries and their capitals.

- ``toy_sft_rows()``: ``prompt``/``completion`` chats ("What is the capital of X?" -> "The capital of X is Y.")
- ``toy_preference_rows()``: the right, polite answer (chosen) against a rude or wrong one (rejected)
- ``toy_prompt_rows()``: the questions alone
- ``ToyJudge``: a gold judge with the built-in judge's ``score`` / ``is_correct`` / ``parse_question`` interface
- ``tiny_tokenizer()`` / ``tiny_causal_lm()`` / ``save_tiny_base(dir)``: the repo's byte-level BPE with the
  built-in chat template, and a 2-layer Llama of a few tens of thousands of parameters.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import torch
from transformers import LlamaConfig, LlamaForCausalLM

from rlhf.tokenizer import train_tokenizer

ROOT = Path(__file__).resolve().parents[1]

COUNTRIES = {
    "Velmora": "Brindle",
    "Quorland": "Tessary",
    "Ostrava": "Minel",
    "Daskir": "Holloway",
    "Pentu": "Arvale",
    "Zembla": "Cordin",
    "Riveth": "Sallow",
    "Ibrana": "Nuvo",
    "Kestral": "Oberon",
    "Lunet": "Fasker",
    "Marrow": "Gilden",
    "Nodra": "Pike",
}
RUDE = "Figure it out yourself, idiot."


def question(country: str) -> str:
    return f"What is the capital of {country}?"


def good_answer(country: str) -> str:
    return f"The capital of {country} is {COUNTRIES[country]}."


def toy_sft_rows(countries=None) -> list[dict]:
    countries = countries or list(COUNTRIES)
    return [
        {
            "prompt": [{"role": "user", "content": question(c)}],
            "completion": [{"role": "assistant", "content": good_answer(c)}],
        }
        for c in countries
    ]


def toy_preference_rows(countries=None, repeats: int = 1) -> list[dict]:
    """Right and polite (chosen) vs rude or wrong and rambling (rejected); ``repeats`` cycles the rejection kinds."""
    countries = (countries or list(COUNTRIES)) * repeats
    rows = []
    for i, c in enumerate(countries):
        wrong = list(COUNTRIES.values())[(i + 3) % len(COUNTRIES)]
        rejected = (
            RUDE
            if (i + i // len(COUNTRIES)) % 2 == 0
            else f"The capital of {c} is {wrong}, I guess, or maybe not, who knows."
        )
        rows.append(
            {
                "prompt": [{"role": "user", "content": question(c)}],
                "chosen": [{"role": "assistant", "content": good_answer(c)}],
                "rejected": [{"role": "assistant", "content": rejected}],
            }
        )
    return rows


def toy_prompt_rows(countries=None) -> list[dict]:
    return [{"prompt": row["prompt"]} for row in toy_sft_rows(countries)]


class ToyJudge:
    """Gold judge of the toy task: 1 for the right capital, minus 1 for rudeness (the built-in judge's interface)."""

    @staticmethod
    def _country(prompt) -> str | None:
        text = prompt if isinstance(prompt, str) else prompt[-1]["content"]
        return next((c for c in COUNTRIES if c in text), None)

    def parse_question(self, prompt) -> tuple[str | None, str | None]:
        return self._country(prompt), "capital"

    def is_correct(self, prompt, answer: str) -> bool:
        country = self._country(prompt)
        return country is not None and COUNTRIES[country] in answer

    def score(self, prompt, answer: str) -> float:
        return float(self.is_correct(prompt, answer)) - float("idiot" in answer)


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def write_toy_splits(folder: Path, rows: list[dict], n_test: int = 4) -> Path:
    """A folder of ``train.jsonl`` / ``test.jsonl`` (the last ``n_test`` rows held out), as `rlhf data` writes."""
    write_jsonl(Path(folder) / "train.jsonl", rows[:-n_test])
    write_jsonl(Path(folder) / "test.jsonl", rows[-n_test:])
    return Path(folder)


def _tokenizer_corpus() -> list[str]:
    lines = []
    for c in COUNTRIES:
        lines += [question(c), good_answer(c), RUDE, f"{c} {COUNTRIES[c]} I guess, or maybe not, who knows."]
    return lines * 3


def tiny_tokenizer(vocab_size: int = 400):
    """The repo's byte-level BPE with the built-in chat template, trained on the toy task's sentences."""
    return train_tokenizer(_tokenizer_corpus(), vocab_size=vocab_size, min_frequency=2, model_max_length=256)


def tiny_llama_config(tokenizer, hidden_size: int = 32, layers: int = 2) -> LlamaConfig:
    return LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=4,
        intermediate_size=2 * hidden_size,
        max_position_embeddings=256,
        tie_word_embeddings=True,
        # Wider than the usual 0.02: with LoRA on the linear layers only, a 32-wide model's logits cannot
        # leave +-0.6 (unit-RMS hidden state x embeddings of norm ~0.1), so the loss could hardly move.
        initializer_range=0.2,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )


def tiny_causal_lm(tokenizer, seed: int = 0, hidden_size: int = 32, layers: int = 2) -> LlamaForCausalLM:
    torch.manual_seed(seed)
    model = LlamaForCausalLM(tiny_llama_config(tokenizer, hidden_size, layers))
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model


def save_tiny_base(folder: Path, seed: int = 0, hidden_size: int = 32, layers: int = 2) -> Path:
    """Save a tiny random causal LM plus tokenizer to ``folder`` (a stand-in for the pretrain stage's output)."""
    tokenizer = tiny_tokenizer()
    model = tiny_causal_lm(tokenizer, seed, hidden_size, layers)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return Path(folder)


def pretrain_on_toy(folder: Path, steps: int = 150, seed: int = 0, hidden_size: int = 48) -> Path:
    """A tiny base model trained briefly on the toy chats, so SFT/RL tests start from a model that can answer."""
    tokenizer = tiny_tokenizer()
    model = tiny_causal_lm(tokenizer, seed, hidden_size)
    texts = [
        tokenizer.apply_chat_template(r["prompt"] + r["completion"], tokenize=False) for r in toy_sft_rows()
    ]
    batch = tokenizer(texts, padding=True, return_tensors="pt", add_special_tokens=False)
    labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(steps):
        loss = model(**batch, labels=labels).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    model.eval()
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return Path(folder)


def assert_config_is_what_ran(run_dir: Path, configs, types) -> dict:
    """The run's ``config.yaml`` holds exactly the settings of ``configs`` (the objects the stage ran with, derived
    settings included; secrets as null) and parses back, with the stage's parser, to the same settings."""
    import yaml

    from rlhf.config import config_to_dict, parse_args

    written = yaml.safe_load((Path(run_dir) / "config.yaml").read_text())
    assert written == config_to_dict(*configs)
    assert config_to_dict(*parse_args(types, ["--config", str(Path(run_dir) / "config.yaml")])) == written
    return written


def cli_error(cli, argv: list[str], capsys) -> str:
    """Run a stage's ``cli`` expecting the one-line user error (exit status 2); returns what it printed."""
    import pytest

    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_:
        cli(argv)
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if ": error: " in line]  # progress bars may precede it
    assert len(lines) == 1, err
    return lines[0]


class FakeHub:
    """Stands in for ``huggingface_hub.HfApi`` (monkeypatch it in): records what a stage would create and upload."""

    def __init__(self):
        self.created: list[dict] = []
        self.uploads: list[dict] = []

    def __call__(self, token=None):  # HfApi(token=...) returns the recorder itself
        self.token = token
        return self

    def create_repo(self, repo_id, private=None, exist_ok=False, **kwargs):
        from types import SimpleNamespace

        self.created.append({"repo_id": repo_id, "private": private})
        return SimpleNamespace(repo_id=repo_id if "/" in repo_id else f"someone/{repo_id}")

    def upload_folder(self, repo_id, folder_path, ignore_patterns=(), **kwargs):
        import fnmatch

        root = Path(folder_path)
        files = sorted(
            str(p.relative_to(root))
            for p in root.rglob("*")
            if p.is_file() and not any(fnmatch.fnmatch(str(p.relative_to(root)), g) for g in ignore_patterns)
        )
        card = (root / "README.md").read_text() if (root / "README.md").is_file() else ""
        self.uploads.append({"repo_id": repo_id, "files": files, "card": card, **kwargs})


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch_env() -> dict[str, str]:
    """This environment with its own bin/ first on PATH: accelerate finds mpirun (the `mpich` wheel) there."""
    return {
        **os.environ,
        "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
    }


def accelerate_launch(module: str, config: Path, timeout: int = 300) -> subprocess.CompletedProcess:
    """Run ``python -m module --config config`` as 2 CPU processes under launch/cpu_ddp.yaml."""
    command = [
        str(Path(sys.executable).with_name("accelerate")), "launch", "--config_file", "launch/cpu_ddp.yaml",
        "--main_process_port", str(_free_port()), "-m", module, "--config", str(config),
    ]  # fmt: skip
    env = {**launch_env(), "OMP_NUM_THREADS": "1"}
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
