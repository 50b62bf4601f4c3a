"""Shared pieces of the fine-tuning benchmarks (``bench/sft.py``, ``bench/reward.py``, ``bench/ppo.py``).

Each benchmark runs this repo's stage (its ``main``, the function ``rlhf <stage>`` runs) and a plain TRL script
of the kind TRL's own ``trl/scripts/*.py`` are (load the data, build the trainer, ``train()``, ``save_model()``)
on the same model, data, batch and number of steps, in one process, alternating repo, plain, repo, plain, ...
so a busy neighbour slows both sides alike. The model is a random Llama of the quickstart's shape (the
quickstart's pretrain.yaml: hidden 256, 4 layers) with the repo's byte-level BPE; the data is the built-in
task's, written once to JSONL so both sides read the same file.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout without installing

import torch  # noqa: E402
from transformers import LlamaConfig, LlamaForCausalLM  # noqa: E402
from transformers.utils import logging as hf_logging  # noqa: E402

hf_logging.set_verbosity_error()

# The quickstart's model shape (configs/quickstart/pretrain.yaml and tokenizer.yaml).
MODEL_SHAPE = {"hidden_size": 256, "num_hidden_layers": 4, "num_attention_heads": 4, "intermediate_size": 688}
VOCAB_SIZE = 2048


def workdir() -> Path:
    """A fresh temporary directory for one benchmark's models, data and run directories."""
    return Path(tempfile.mkdtemp(prefix="rlhf-bench-"))


def write_builtin(kind: str, folder: Path, n_train: int, n_test: int, seed: int = 0) -> Path:
    """The built-in task's ``kind`` rows (first ``n_train`` / ``n_test``) as ``train.jsonl`` / ``test.jsonl``."""
    from rlhf.task import load_builtin

    data = load_builtin(kind, seed=seed)
    folder.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", n_train), ("test", n_test)):
        rows = data[split].select(range(min(n, len(data[split]))))
        (folder / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder


def save_base_model(folder: Path, seed: int = 0) -> Path:
    """A random causal LM of the quickstart's shape plus the repo's tokenizer (trained on built-in chats)."""
    from rlhf.task import load_builtin
    from rlhf.tokenizer import train_tokenizer

    sft = load_builtin("sft", seed=seed)["train"]
    texts = [m["content"] for row in sft for m in row["prompt"] + row["completion"]]
    tokenizer = train_tokenizer(texts, vocab_size=VOCAB_SIZE, min_frequency=2, model_max_length=128)
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        num_key_value_heads=MODEL_SHAPE["num_attention_heads"],
        max_position_embeddings=256,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        **MODEL_SHAPE,
    )
    model = LlamaForCausalLM(config)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def write_yaml(path: Path, config: dict) -> Path:
    import yaml

    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def alternate(
    run_repo: Callable[[int], dict], run_plain: Callable[[int], dict], rounds: int
) -> tuple[list[dict], list[dict]]:
    """Call ``run_repo(i)`` and ``run_plain(i)`` alternately, ``rounds`` times each; returns their results."""
    repo, plain = [], []
    for i in range(rounds):
        repo.append(run_repo(i))
        plain.append(run_plain(i))
        print(
            f"round {i + 1}: repo {repo[-1]['rate']:,.1f}, plain {plain[-1]['rate']:,.1f} {repo[-1]['unit']} "
            f"(train {repo[-1]['train_s']:.2f} s vs {plain[-1]['train_s']:.2f} s, "
            f"CPU {repo[-1]['train_cpu_s']:.2f} s vs {plain[-1]['train_cpu_s']:.2f} s; "
            f"whole run {repo[-1]['wall_s']:.2f} s vs {plain[-1]['wall_s']:.2f} s)",
            flush=True,
        )
    return repo, plain


class TrainTimer:
    """Wraps ``trainer_cls.train`` (both sides call the same TRL method) to time each call: wall and CPU seconds.

    CPU seconds (this process's, all threads) are less disturbed by other processes on a shared machine than
    wall time; a side that does extra work per step shows it in both.
    """

    def __init__(self, trainer_cls):
        self.last: dict[str, float] = {}
        original = trainer_cls.train

        def train(trainer, *args, **kwargs):
            wall, cpu = time.perf_counter(), time.process_time()
            try:
                return original(trainer, *args, **kwargs)
            finally:
                self.last = {"train_s": time.perf_counter() - wall, "train_cpu_s": time.process_time() - cpu}

        trainer_cls.train = train


def timed(fn: Callable[[], dict]) -> dict:
    """Run ``fn`` and add its wall time (``wall_s``) to the dict it returns."""
    start = time.perf_counter()
    result = fn()
    result["wall_s"] = time.perf_counter() - start
    return result


def summary(bench: str, unit: str, repo: list[dict], plain: list[dict], **extra) -> dict:
    """Print the comparison and return the figures (the caller prints them as the last line, JSON)."""
    best_repo, best_plain = max(r["rate"] for r in repo), max(r["rate"] for r in plain)
    wall_repo, wall_plain = min(r["wall_s"] for r in repo), min(r["wall_s"] for r in plain)
    print(f"repo stage:        {best_repo:,.1f} {unit} (best of {len(repo)}; median {_median(repo):,.1f})")
    print(f"plain TRL script:  {best_plain:,.1f} {unit} (best of {len(plain)}; median {_median(plain):,.1f})")
    print(f"ratio repo / plain: {best_repo / best_plain:.3f}")
    print(
        f"whole run, best: repo {wall_repo:.2f} s, plain {wall_plain:.2f} s (the repo's stage also evaluates, "
        "plots and writes a model card; these are not in the rate)"
    )
    return {
        "bench": bench,
        "ratio": round(best_repo / best_plain, 4),
        "unit": unit,
        f"repo_{_key(unit)}": round(best_repo, 2),
        f"plain_{_key(unit)}": round(best_plain, 2),
        "ratio_median": round(_median(repo) / _median(plain), 4),
        "repo_rounds": [round(r["rate"], 2) for r in repo],
        "plain_rounds": [round(r["rate"], 2) for r in plain],
        "ratio_cpu": round(
            min(p["train_cpu_s"] / p["work"] for p in plain)
            / min(r["train_cpu_s"] / r["work"] for r in repo),
            4,
        ),
        "repo_wall_s": round(wall_repo, 3),
        "plain_wall_s": round(wall_plain, 3),
        "threads": torch.get_num_threads(),
        **extra,
    }


def _median(results: list[dict]) -> float:
    return statistics.median(r["rate"] for r in results)


def _key(unit: str) -> str:
    return unit.replace("/", "_per_").replace(" ", "_")
