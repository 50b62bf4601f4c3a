"""Shared pieces of the fine-tuning benchmarks (``bench/sft.py``, ``bench/reward.py``, ``bench/ppo.py``).

Each benchmark runs this repo's stage (its ``main``, the function ``rlhf <stage>`` runs) and a plain TRL script
of the kind TRL's own ``trl/scripts/*.py`` are (load the data, build the trainer, ``train()``, ``save_model()``)
on the same model, data, batch and number of steps, in one process, in paired rounds whose order alternates
(repo-plain, plain-repo, ...) so a busy neighbour slows both sides of a round alike (``_stats.py``). The model is a random Llama of the quickstart's shape (the
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
from _stats import describe, paired_ratio, paired_rounds  # noqa: E402
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
    run_repo: Callable[[int], dict],
    run_plain: Callable[[int], dict],
    min_rounds: int,
    max_rounds: int | None = None,
) -> tuple[list[dict], list[dict]]:
    """Paired rounds of ``run_repo(i)`` and ``run_plain(i)`` (``_stats.paired_rounds``); returns their results.

    Without ``max_rounds`` exactly ``min_rounds`` rounds run.
    """

    def log(i: int, repo: dict, plain: dict) -> None:
        print(
            f"round {i + 1} ({'repo' if i % 2 == 0 else 'plain'} first): repo {repo['rate']:,.1f}, "
            f"plain {plain['rate']:,.1f} {repo['unit']} (ratio {repo['rate'] / plain['rate']:.3f}; "
            f"train {repo['train_s']:.2f} s vs {plain['train_s']:.2f} s, "
            f"CPU {repo['train_cpu_s']:.2f} s vs {plain['train_cpu_s']:.2f} s; "
            f"whole run {repo['wall_s']:.2f} s vs {plain['wall_s']:.2f} s)",
            flush=True,
        )

    return paired_rounds(
        run_repo, run_plain, lambda r: r["rate"], min_rounds, max_rounds or min_rounds, log=log
    )


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
    """Print the comparison and return the figures (the caller prints them as the last line, JSON).

    ``ratio`` is the median of the per-round ratios repo_i / plain_i, with ``ratio_iqr`` beside it.
    """
    paired = paired_ratio([r["rate"] for r in repo], [p["rate"] for p in plain])
    med_repo = statistics.median(r["rate"] for r in repo)
    med_plain = statistics.median(p["rate"] for p in plain)
    print(f"repo stage:        {med_repo:,.1f} {unit} (median of {len(repo)} rounds)")
    print(f"plain TRL script:  {med_plain:,.1f} {unit} (median of {len(plain)} rounds)")
    print(describe(paired))
    print(
        f"whole run, median: repo {statistics.median(r['wall_s'] for r in repo):.2f} s, plain "
        f"{statistics.median(p['wall_s'] for p in plain):.2f} s (the repo's stage also evaluates, plots and "
        "writes a model card; these are not in the rate)"
    )
    cpu = paired_ratio(
        [r["work"] / r["train_cpu_s"] for r in repo], [p["work"] / p["train_cpu_s"] for p in plain]
    )
    return {
        "bench": bench,
        **paired,
        "unit": unit,
        f"repo_{_key(unit)}": round(med_repo, 2),
        f"plain_{_key(unit)}": round(med_plain, 2),
        "repo_rounds": [round(r["rate"], 2) for r in repo],
        "plain_rounds": [round(r["rate"], 2) for r in plain],
        "ratio_cpu": cpu["ratio"],
        "ratio_cpu_iqr": cpu["ratio_iqr"],
        "repo_wall_s": round(statistics.median(r["wall_s"] for r in repo), 3),
        "plain_wall_s": round(statistics.median(p["wall_s"] for p in plain), 3),
        "threads": torch.get_num_threads(),
        **extra,
    }


def _key(unit: str) -> str:
    return unit.replace("/", "_per_").replace(" ", "_")
