"""What the pretraining loop trains: its tokenizer, the causal LM, and the optimizer with its schedule.

- :func:`load_or_train_tokenizer`: the named tokenizer, the model's own, or a byte-level BPE trained on the corpus;
- :func:`build_model`: a causal LM loaded to continue, or built from ``model_type`` and the size fields (fp32);
- :func:`build_optimizer`: AdamW (decay on matrices and embeddings only), linear warmup then cosine decay.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from accelerate import Accelerator
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

if TYPE_CHECKING:
    from rlhf.pretrain_args import PretrainArguments


def load_or_train_tokenizer(args: PretrainArguments, train_texts: list[str], accelerator: Accelerator):
    """The tokenizer named in ``args``, the model's own, or one trained here and saved in output_dir."""
    if args.tokenizer_name_or_path or args.model_name_or_path:
        tokenizer = AutoTokenizer.from_pretrained(args.tokenizer_name_or_path or args.model_name_or_path)
        if tokenizer.pad_token is None:  # many base models ship without one; padding only matters at eval
            tokenizer.pad_token = tokenizer.eos_token
        return tokenizer
    from rlhf.tokenizer import train_tokenizer

    output_dir = Path(args.output_dir)
    saved = (output_dir / "tokenizer.json").is_file() and args.resume_from_checkpoint is not None
    if accelerator.is_main_process and not saved:  # train once, share through the output directory
        model_max_length = args.max_position_embeddings or args.block_size
        train_tokenizer(
            train_texts, args.tokenizer_vocab_size, model_max_length=model_max_length
        ).save_pretrained(output_dir)
    accelerator.wait_for_everyone()
    return AutoTokenizer.from_pretrained(output_dir)


def build_model(args: PretrainArguments, tokenizer) -> torch.nn.Module:
    """Load ``model_name_or_path`` or build a fresh causal LM of ``model_type`` sized by ``args`` (fp32)."""
    if args.model_name_or_path:
        model = AutoModelForCausalLM.from_pretrained(args.model_name_or_path, dtype=torch.float32)
        if len(tokenizer) > model.get_input_embeddings().weight.shape[0]:
            model.resize_token_embeddings(len(tokenizer))
        return model
    config = AutoConfig.for_model(
        args.model_type,
        vocab_size=len(tokenizer),
        hidden_size=args.hidden_size,
        num_hidden_layers=args.num_hidden_layers,
        num_attention_heads=args.num_attention_heads,
        num_key_value_heads=args.num_key_value_heads or args.num_attention_heads,
        intermediate_size=args.intermediate_size,
        max_position_embeddings=args.max_position_embeddings or args.block_size,
        tie_word_embeddings=args.tie_word_embeddings,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(args.seed)  # the init depends on the seed only
    return AutoModelForCausalLM.from_config(config)


def build_optimizer(args: PretrainArguments, model: torch.nn.Module):
    """AdamW (decay on >=2-D weights only) and a warmup + cosine schedule in optimizer steps."""
    decay, no_decay = [], []
    for param in model.parameters():
        if param.requires_grad:
            (decay if param.dim() >= 2 else no_decay).append(param)
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": args.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=args.learning_rate,
        betas=(args.adam_beta1, args.adam_beta2),
        eps=args.adam_epsilon,
    )

    def lr_factor(step: int) -> float:  # multiplier of learning_rate for optimizer step `step` (0-based)
        if step < args.warmup_steps:
            return (step + 1) / args.warmup_steps
        progress = min(1.0, (step - args.warmup_steps) / max(1, args.max_steps - args.warmup_steps))
        return args.min_lr_ratio + (1 - args.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor)
