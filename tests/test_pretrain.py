"""The pretraining stage: data order, schedule, a tiny run that learns, exact resume after SIGKILL, DDP."""

import json
import math
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from helpers import assert_config_is_what_ran, launch_env
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoTokenizer

from rlhf.config import ConfigError, parse_args
from rlhf.corpus import BlockOrder, pack_blocks
from rlhf.pretrain import PretrainArguments, cli, main
from rlhf.pretrain_eval import complete
from rlhf.pretrain_model import build_optimizer
from rlhf.tokenizer import train_tokenizer

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT / "tests" / "_fixtures" / "tiny_corpus.jsonl"

# A ~0.1M-parameter Llama on the fixture corpus: 60 steps take ~2 s on 2 cores.
TINY = {
    "dataset_name": str(CORPUS),
    "tokenizer_vocab_size": 400,
    "hidden_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "intermediate_size": 128,
    "block_size": 64,
    "per_device_train_batch_size": 8,
    "max_steps": 60,
    "warmup_steps": 5,
    "learning_rate": 3e-3,
    "eval_steps": 20,
    "logging_steps": 5,
    "disable_tqdm": True,
    "report_to": "none",
}


def argv(output_dir, **overrides) -> list[str]:
    flags = []
    for key, value in {**TINY, "output_dir": str(output_dir), **overrides}.items():
        flags += [f"--{key}", str(value)]
    return flags


def run_stage(args: list[str], env_extra=None, launcher=None) -> subprocess.Popen:
    env = {**launch_env(), "PYTHONUNBUFFERED": "1", **(env_extra or {})}
    command = (launcher or [sys.executable]) + ["-m", "rlhf.pretrain", *args]
    return subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


def test_pack_blocks_puts_eos_after_every_document():
    tokenizer = train_tokenizer(["aa bb", "cc dd ee"] * 20, vocab_size=300)
    blocks = pack_blocks(["aa bb", "cc dd ee"] * 3, tokenizer, block_size=4)
    stream = [
        t for doc in ["aa bb", "cc dd ee"] * 3 for t in tokenizer(doc)["input_ids"] + [tokenizer.eos_token_id]
    ]
    assert blocks.shape == (len(stream) // 4, 4) and blocks.dtype == torch.long
    assert blocks.flatten().tolist() == stream[: blocks.numel()]
    assert (blocks == tokenizer.eos_token_id).sum() >= 2


def test_block_order_is_a_pure_function_and_shards_the_global_batch():
    single = BlockOrder(n_blocks=50, batch_size=8, num_processes=1, rank=0, seed=3)
    # every epoch uses each block at most once; 50 blocks // 8 = 6 batches, 2 blocks dropped
    epoch0 = torch.cat([single(m) for m in range(6)])
    assert single.batches_per_epoch == 6 and len(set(epoch0.tolist())) == 48
    assert not torch.equal(single(6), single(0))  # epoch 1 is reshuffled
    # a fresh sampler (a resumed run) gives the same rows for any position, in any query order
    fresh = BlockOrder(n_blocks=50, batch_size=8, num_processes=1, rank=0, seed=3)
    for m in [13, 2, 7, 0]:
        assert torch.equal(fresh(m), single(m))
    assert not torch.equal(BlockOrder(50, 8, 1, 0, seed=4)(0), single(0))
    # two processes with half the batch each see exactly the single process's rows
    ranks = [BlockOrder(n_blocks=50, batch_size=4, num_processes=2, rank=r, seed=3) for r in (0, 1)]
    for m in range(8):
        assert torch.equal(torch.cat([ranks[0](m), ranks[1](m)]), single(m))
    with pytest.raises(ValueError, match="fewer than one global batch"):
        BlockOrder(n_blocks=7, batch_size=4, num_processes=2, rank=0, seed=0)


def test_learning_rate_warms_up_linearly_then_decays_by_cosine():
    args = PretrainArguments(max_steps=110, warmup_steps=10, learning_rate=1e-3, min_lr_ratio=0.1)
    optimizer, scheduler = build_optimizer(args, torch.nn.Linear(2, 2))
    lrs = []
    for _ in range(args.max_steps):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert lrs[0] == pytest.approx(1e-4) and lrs[9] == pytest.approx(1e-3)  # (step + 1) / warmup
    assert lrs[60] == pytest.approx(1e-4 + 0.9e-3 * 0.5)  # half way through the decay
    assert lrs[-1] == pytest.approx(1e-4, rel=3e-3) and min(lrs[10:]) >= 1e-4 - 1e-12
    # weight decay only on matrices
    decays = {tuple(p.shape): g["weight_decay"] for g in optimizer.param_groups for p in g["params"]}
    assert decays == {(2, 2): args.weight_decay, (2,): 0.0}


def test_tiny_run_learns_and_its_outputs_reload(tmp_path, capsys):
    out = tmp_path / "run"
    configs = parse_args((PretrainArguments,), argv(out))
    metrics = main(*configs)
    # it learnt: held-out loss fell far below the untrained model's ~ln(vocab)
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["eval_loss"] == pytest.approx(metrics["eval_loss"])
    assert metrics["eval_perplexity"] == pytest.approx(math.exp(metrics["eval_loss"]))
    assert metrics["eval_loss"] < 0.6 * math.log(400)
    assert metrics["tokens_seen"] == 60 * 8 * 64 and metrics["steps"] == 60 and metrics["num_processes"] == 1
    assert metrics["fact_accuracy"] is None  # only the built-in task has fact prompts
    # the curves were recorded at the configured steps and the PNG, config and card exist
    card = (out / "README.md").read_text()
    assert "pretrain" in card and "eval_loss" in card
    assert (out / "loss.png").stat().st_size > 1000
    config = assert_config_is_what_ran(out, configs, (PretrainArguments,))
    assert config["hidden_size"] == 64 and config["output_dir"] == str(out)
    assert not list(out.glob("checkpoint-*"))  # save_steps 0: no checkpoints

    # model and tokenizer reload with the Auto classes and generate
    model = AutoModelForCausalLM.from_pretrained(out)
    tokenizer = AutoTokenizer.from_pretrained(out)
    assert (out / "model.safetensors").is_file() and model.config.num_hidden_layers == 2
    assert tokenizer.padding_side == "right" and tokenizer.eos_token == "<|end|>"
    prompts = ["Hiro works as a", "The friend of Mara is", "Olga"]
    batched = complete(model, tokenizer, prompts, max_new_tokens=6)
    one_by_one = [complete(model, tokenizer, [p], max_new_tokens=6)[0] for p in prompts]
    assert batched == one_by_one  # left padding does not change greedy completions
    assert all(len(c) > 0 for c in batched) and tokenizer.padding_side == "right"
    # the reloaded model scores a training block like the trained one did (nothing lost in saving)
    blocks = pack_blocks(
        [json.loads(line)["text"] for line in CORPUS.read_text().splitlines()[:40]], tokenizer, 64
    )
    with torch.no_grad():
        loss = model(input_ids=blocks, labels=blocks).loss.item()
    assert loss < 0.6 * math.log(400)

    # a finished run is not overwritten; an unknown key is a one-line error
    with pytest.raises(SystemExit) as exit_info:
        cli(argv(out))
    assert exit_info.value.code == 2 and "already holds a finished run" in capsys.readouterr().err
    assert (out / "model.safetensors").is_file()
    with pytest.raises(SystemExit) as exit_info:
        cli([*argv(tmp_path / "other"), "--no_such_key", "1"])
    assert exit_info.value.code == 2 and "no_such_key" in capsys.readouterr().err


@pytest.mark.slow
def test_sigkill_then_resume_matches_an_uninterrupted_run(tmp_path):
    """Kill a run right after its first checkpoint, resume it, and compare with a run never stopped."""
    killed = tmp_path / "killed"
    args = argv(killed, max_steps=150, save_steps=20, save_total_limit=1, eval_steps=50)
    proc = run_stage(args)
    deadline = time.time() + 120
    while not (killed / "checkpoint-20").is_dir():
        assert proc.poll() is None, f"the run ended before its first checkpoint:\n{proc.stdout.read()}"
        assert time.time() < deadline, "no checkpoint after 120 s"
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert not (killed / "metrics.json").exists() and not (killed / "model.safetensors").exists()
    checkpoints = sorted(p.name for p in killed.glob("checkpoint-*"))

    # starting afresh over the unfinished run's checkpoints is refused, not silently mixed
    with pytest.raises(ConfigError, match="--resume_from_checkpoint latest"):
        main(PretrainArguments(**{**TINY, "output_dir": str(killed)}))

    resumed = run_stage([*args, "--resume_from_checkpoint", "latest"])
    output, _ = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, output
    assert "resumed from" in output and "checkpoint-" in output

    straight = tmp_path / "straight"  # in this process: same code, same thread count, no restart
    main(PretrainArguments(**{**TINY, "max_steps": 150, "eval_steps": 50, "output_dir": str(straight)}))

    a = json.loads((straight / "metrics.json").read_text())
    b = json.loads((killed / "metrics.json").read_text())
    assert checkpoints and b["steps"] == a["steps"] == 150 and b["tokens_seen"] == a["tokens_seen"]
    # same batches in the same order, same optimizer/scheduler state: identical up to float noise
    assert b["eval_loss"] == pytest.approx(a["eval_loss"], rel=1e-5)
    assert b["train_loss"] == pytest.approx(a["train_loss"], rel=1e-5)
    weights_a, weights_b = load_file(straight / "model.safetensors"), load_file(killed / "model.safetensors")
    assert max((weights_a[k] - weights_b[k]).abs().max().item() for k in weights_a) < 1e-5
    assert a["eval_loss"] < 0.5 * math.log(400)  # and it did learn


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_cpu_processes_under_accelerate_launch(tmp_path):
    """DDP over gloo with 2 processes x 4 blocks learns the same as 1 process x 8 blocks."""
    ddp = tmp_path / "ddp"
    launcher = [
        "accelerate",
        "launch",
        "--config_file",
        "launch/cpu_ddp.yaml",
        "--main_process_port",
        str(_free_port()),
    ]
    launcher[0] = str(Path(sys.executable).with_name("accelerate"))
    proc = run_stage(argv(ddp, per_device_train_batch_size=4, max_steps=30, save_steps=30), launcher=launcher)
    output, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, output
    metrics = json.loads((ddp / "metrics.json").read_text())
    assert metrics["num_processes"] == 2 and metrics["tokens_seen"] == 30 * 2 * 4 * 64
    history = json.loads((ddp / "checkpoint-30" / "trainer_state.json").read_text())
    assert history["train_loss"][-1][1] < 0.7 * history["train_loss"][0][1]  # the loss went down
    assert sorted(p.name for p in (ddp / "checkpoint-30").glob("random_states_*")) == [
        "random_states_0.pkl",
        "random_states_1.pkl",
    ]
    assert not list(ddp.glob("checkpoint-*.tmp"))  # no process wrote after the rename
    # gradients were all-reduced: the same global batch on one process gives the same model
    single = main(PretrainArguments(**{**TINY, "max_steps": 30, "output_dir": str(tmp_path / "single")}))
    assert metrics["eval_loss"] == pytest.approx(single["eval_loss"], rel=1e-4)


def test_an_unknown_fact_split_is_a_config_error():
    from rlhf.pretrain_eval import load_facts

    assert len(load_facts(PretrainArguments(fact_split="validation"))) == 96
    with pytest.raises(ConfigError, match="fact_split: expected one of validation, test, blind"):
        load_facts(PretrainArguments(fact_split="held-out"))
