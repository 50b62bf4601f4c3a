"""Benchmark: moderation overhead in the answering pipeline, and batched vs one-at-a-time throughput.

    python bench/pipeline.py [--max_new_tokens 32] [--requests 16] [--repeats 5] [--quickstart_dir runs/quickstart]

The answering model is the quickstart's RL policy when ``QUICKSTART_DIR/ppo/merged`` exists, else a
model of the same shape (the pretrain recipe's Llama: hidden 256, 4 layers) with random weights, built
here and saved to a temporary directory. Every answer is exactly ``--max_new_tokens`` long
(``min_new_tokens`` = ``max_new_tokens``), so every backend and mode does the same generation work.

1. **Overhead share per backend.** The same safe prompts go one at a time through a pipeline whose
   two moderators (input and output) are each backend in turn: ``rules``, ``classifier`` (the
   quickstart's trained classifier when ``QUICKSTART_DIR/moderation-train`` exists, else a BERT of the
   quickstart shape with random weights), ``guard`` (the answering model prompted Llama-Guard style
   with the six built-in categories) and ``cascade`` (rules -> classifier -> guard for scores in the
   uncertain band). Moderators built here never flag (thresholds above any score), so every request
   runs the whole path. Share = (input + output moderation seconds) / end-to-end seconds, from the
   pipeline's own per-step timings; backends alternate round by round and the median round counts.
   A run with no moderation gives the baseline end-to-end latency.
2. **Batching.** ``--requests`` prompts answered by one ``Pipeline.batch`` call (one padded generate)
   vs one ``pipeline(prompt)`` call each, rules moderation on; ``ratio`` = batched / sequential
   requests per second, the median of ``--repeats`` paired rounds whose order alternates, with
   ``ratio_iqr`` (``bench/_stats.py``).

The last line of output is a JSON object of the figures.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout without installing

from _stats import describe, paired_ratio, paired_rounds  # noqa: E402
from transformers import (  # noqa: E402
    AutoModelForCausalLM,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    BertConfig,
    BertForSequenceClassification,
    LlamaConfig,
    LlamaForCausalLM,
)

from rlhf.moderation.cascade import CascadeModerator  # noqa: E402
from rlhf.moderation.classifier import ClassifierModerator  # noqa: E402
from rlhf.moderation.guard import GuardModerator  # noqa: E402
from rlhf.moderation.rules import RulesModerator  # noqa: E402
from rlhf.moderation.taxonomy import BUILTIN_CATEGORIES, select_categories  # noqa: E402
from rlhf.pipeline import Pipeline  # noqa: E402
from rlhf.tokenizer import train_tokenizer  # noqa: E402

PROMPTS = [
    "What is the capital of Velmora?",
    "Tell me a short story about a dragon who loves tea.",
    "How do I kill a python process on linux?",
    "Which river flows through the old town of Brindle?",
    "Can you recommend a good book about the sea?",
    "What does the word assassin mean in chess?",
    "How many legs does a spider have?",
    "Write a polite email asking my neighbour to trim the hedge.",
    "Explain how a rainbow forms, in two sentences.",
    "What is a good name for a grey cat?",
    "Who founded the library in the northern province?",
    "Give me three tips for learning to juggle.",
    "How long should I boil an egg for a soft yolk?",
    "What is the tallest mountain in the eastern range?",
    "Summarise the plot of a heist movie without spoilers.",
    "How do I reset my own password on the school portal?",
]
NEVER = 1.01  # a threshold no probability reaches: bench moderators never block, so every request runs fully


def build_answer_model(tmp: Path, quickstart: Path):
    """The quickstart policy if present, else a random-weight Llama of the pretrain recipe's shape."""
    merged = quickstart / "ppo" / "merged"
    if (merged / "config.json").is_file():
        return (
            AutoModelForCausalLM.from_pretrained(merged).eval(),
            AutoTokenizer.from_pretrained(merged),
            str(merged),
        )
    corpus = PROMPTS * 4 + [" ".join(PROMPTS)] * 4
    tokenizer = train_tokenizer(corpus, vocab_size=2048, model_max_length=4096)
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=256, num_hidden_layers=4, num_attention_heads=4,
        num_key_value_heads=4, intermediate_size=688, max_position_embeddings=4096,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )  # fmt: skip
    model = LlamaForCausalLM(config).eval()
    model.save_pretrained(tmp / "lm")
    tokenizer.save_pretrained(tmp / "lm")
    return model, tokenizer, "random Llama 256x4 (quickstart pretrain shape)"


def build_classifier(tmp: Path, quickstart: Path, tokenizer):
    """The quickstart's trained classifier if present, else a random tiny BERT; thresholds that never flag."""
    trained = quickstart / "moderation-train"
    if (trained / "config.json").is_file():
        model = AutoModelForSequenceClassification.from_pretrained(trained)
        classifier = ClassifierModerator(
            model, AutoTokenizer.from_pretrained(trained), thresholds=NEVER, max_length=128
        )
        return classifier, str(trained)
    labels = list(BUILTIN_CATEGORIES)
    torch.manual_seed(1)
    config = BertConfig(
        vocab_size=len(tokenizer), hidden_size=128, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=512, max_position_embeddings=512, num_labels=len(labels),
        id2label=dict(enumerate(labels)), label2id={c: i for i, c in enumerate(labels)},
        problem_type="multi_label_classification", pad_token_id=tokenizer.pad_token_id,
    )  # fmt: skip
    model = BertForSequenceClassification(config).eval()
    return ClassifierModerator(model, tokenizer, thresholds=NEVER, max_length=128), "random BERT 128x2"


def build_moderators(model, tokenizer, classifier) -> dict:
    rules = RulesModerator.from_config({})
    guard = GuardModerator(
        model, tokenizer, categories=select_categories(BUILTIN_CATEGORIES), threshold=NEVER, batch_size=8
    )
    return {
        "none": None,
        "rules": rules,
        "classifier": classifier,
        "guard": guard,
        "cascade": CascadeModerator(
            rules=rules, classifier=classifier, guard=guard, uncertain_band=(0.2, 0.8)
        ),
    }


def one_at_a_time(pipe: Pipeline, prompts: list[str]) -> dict:
    """Answer ``prompts`` one by one; returns summed step seconds and the wall time."""
    sums = {"moderation": 0.0, "total": 0.0, "wall": 0.0, "blocked": 0}
    start = time.perf_counter()
    for prompt in prompts:
        response = pipe(prompt)
        sums["moderation"] += response.timings["input_moderation"] + response.timings["output_moderation"]
        sums["total"] += response.timings["total"]
        sums["blocked"] += response.blocked
    sums["wall"] = time.perf_counter() - start
    return sums


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max_new_tokens", type=int, default=32, help="tokens per answer (all answers)")
    parser.add_argument("--requests", type=int, default=16, help="prompts per round")
    parser.add_argument("--repeats", type=int, default=5, help="rounds (backends/modes alternate)")
    parser.add_argument("--quickstart_dir", default=str(ROOT / "runs/quickstart"))
    parser.add_argument("--backends", default="rules,classifier,guard,cascade")
    args = parser.parse_args()
    prompts = (PROMPTS * (args.requests // len(PROMPTS) + 1))[: args.requests]
    quickstart = Path(args.quickstart_dir)

    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        model, tokenizer, model_name = build_answer_model(tmp, quickstart)
        classifier, classifier_name = build_classifier(tmp, quickstart, tokenizer)
        # fixed-length answers of real text: no early end of turn, and no special tokens (a random-weight
        # model would otherwise emit role or padding tokens that decode to nothing)
        special = [i for i in tokenizer.all_special_ids if i != tokenizer.eos_token_id]
        generation = {
            "max_new_tokens": args.max_new_tokens,
            "min_new_tokens": args.max_new_tokens,
            "do_sample": True,  # sampled, so a random-weight model does not repeat one whitespace token
            "suppress_tokens": special,
        }
        moderators = build_moderators(model, tokenizer, classifier)
        backends = ["none", *[b for b in args.backends.split(",") if b]]
        pipes = {
            name: Pipeline(
                model,
                tokenizer,
                moderators[name],
                moderators[name],
                None,
                generation,
                batch_size=len(prompts),
            )
            for name in backends
        }
        n_params = sum(p.numel() for p in model.parameters())
        print(
            f"answering model: {model_name} ({n_params / 1e6:.1f}M parameters); classifier: {classifier_name}; "
            f"{args.requests} prompts x {args.max_new_tokens} new tokens; {torch.get_num_threads()} threads"
        )

        for pipe in pipes.values():  # warm-up: first calls allocate and pick kernels
            pipe(prompts[0])
        pipes["rules"].batch(prompts[:4])

        # 1. overhead share per backend, one request at a time
        rounds: dict[str, list[dict]] = {name: [] for name in backends}
        for r in range(args.repeats):
            for name in backends:
                rounds[name].append(one_at_a_time(pipes[name], prompts))
            line = ", ".join(
                f"{n} {rounds[n][-1]['moderation'] / rounds[n][-1]['total']:.2%}"
                for n in backends
                if n != "none"
            )
            print(f"round {r + 1}: moderation share of end-to-end latency: {line}")
        share = {
            n: statistics.median(x["moderation"] / x["total"] for x in rounds[n])
            for n in backends
            if n != "none"
        }
        latency = {n: statistics.median(x["total"] for x in rounds[n]) / len(prompts) for n in backends}
        blocked = {n: sum(x["blocked"] for x in rounds[n]) for n in backends}
        assert not any(blocked.values()), f"bench moderators must not block: {blocked}"

        # 2. batched vs sequential throughput (rules moderation on)
        pipe = pipes["rules"]

        def run_sequential(_: int) -> float:
            start = time.perf_counter()
            for prompt in prompts:
                pipe(prompt)
            return len(prompts) / (time.perf_counter() - start)

        def run_batched(_: int) -> float:
            start = time.perf_counter()
            responses = pipe.batch(prompts)
            assert all(r.completion_tokens == args.max_new_tokens for r in responses)
            return len(prompts) / (time.perf_counter() - start)

        batched, sequential = paired_rounds(run_batched, run_sequential, float, args.repeats, args.repeats)
        paired = paired_ratio(batched, sequential)
        seq_rps, batch_rps = statistics.median(sequential), statistics.median(batched)

    print("\nbackend      moderation share   end-to-end s/request")
    print(f"{'none':<12} {'-':>16}   {latency['none']:.4f}")
    for name, value in share.items():
        print(f"{name:<12} {value:>16.2%}   {latency[name]:.4f}")
    print(
        f"\nsequential: {seq_rps:.2f} requests/s; batched ({len(prompts)} per generate): {batch_rps:.2f} requests/s"
    )
    print(describe(paired).replace("repo / plain", "batched / sequential"))
    rules_ok = share.get("rules", 1.0) < 0.05
    print(f"rules overhead under 5% of end-to-end latency: {'yes' if rules_ok else 'NO'}")
    print(
        json.dumps(
            {
                "bench": "pipeline",
                **paired,
                "batched_requests_per_s": round(batch_rps, 3),
                "sequential_requests_per_s": round(seq_rps, 3),
                "overhead_share": {k: round(v, 5) for k, v in share.items()},
                "latency_s_per_request": {k: round(v, 5) for k, v in latency.items()},
                "rules_overhead_under_5pct": rules_ok,
                "requests": len(prompts),
                "max_new_tokens": args.max_new_tokens,
                "answer_model": model_name,
                "classifier": classifier_name,
                "threads": torch.get_num_threads(),
            }
        )
    )


if __name__ == "__main__":
    main()
