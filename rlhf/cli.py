"""The ``rlhf`` command: ``rlhf <stage> [--config FILE] [--key value ...]``.

Each stage lives in its own module with a ``cli(argv)`` function, so ``rlhf sft ...`` and
``python -m rlhf.sft ...`` are the same program; modules are imported only when their stage runs.
"""

from __future__ import annotations

import importlib
import sys

STAGES: dict[str, tuple[str, str]] = {
    "data": ("rlhf.data", "write the built-in task's datasets to disk"),
    "tokenizer": ("rlhf.tokenizer", "train a byte-level BPE tokenizer with a chat template"),
    "pretrain": ("rlhf.pretrain", "pre-train a causal LM with an Accelerate loop"),
    "sft": ("rlhf.sft", "supervised fine-tuning with TRL's SFTTrainer + LoRA"),
    "reward": ("rlhf.reward", "train a reward model with TRL's RewardTrainer + LoRA"),
    "ppo": ("rlhf.ppo", "optimise the policy against the reward model (PPO, RLOO or GRPO)"),
    "dpo": ("rlhf.dpo", "optimise the policy on preference pairs directly with TRL's DPOTrainer + LoRA"),
    "quickstart": ("rlhf.quickstart", "run the whole built-in recipe end to end"),
    "moderation-train": ("rlhf.moderation.train", "fine-tune a moderation classifier"),
    "moderation-eval": ("rlhf.moderation.evaluate", "evaluate a moderator on labelled data"),
    "chat": ("rlhf.chat", "chat in the terminal through the moderated pipeline"),
    "serve": ("rlhf.serve", "OpenAI-compatible HTTP server over the moderated pipeline"),
    "push": ("rlhf.push", "publish a run directory to the Hugging Face Hub"),
}


def usage() -> str:
    lines = ["usage: rlhf <command> [--config FILE] [--key value ...]", "", "commands:"]
    lines += [f"  {name:<18}{help_}" for name, (_, help_) in STAGES.items()]
    lines += ["", "Run `rlhf <command> --help` for a command's options."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        return 0 if argv else 2
    if argv[0] in ("-V", "--version"):
        from rlhf import __version__

        print(f"rlhf {__version__}")
        return 0
    name, rest = argv[0], argv[1:]
    if name not in STAGES:
        print(f"rlhf: error: unknown command '{name}'\n\n{usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(STAGES[name][0])
    result = module.cli(rest)
    return result if isinstance(result, int) else 0


if __name__ == "__main__":
    raise SystemExit(main())
