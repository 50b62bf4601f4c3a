"""The classifier moderation-train trains: the backbone (LoRA applied with ``use_peft``), its head fitted on
frozen embeddings (the fast path), the optimizer that gives the head its own learning rate, per-category
loss weights, and the tokenized training rows ``transformers.Trainer`` reads.

``args`` is the stage's :class:`rlhf.moderation.train.ModerationTrainArguments` (not imported here: the
stage imports this module).
"""

from __future__ import annotations

from transformers import TrainingArguments
from trl import ModelConfig

from rlhf.moderation.data import Examples
from rlhf.moderation.normalize import normalize


def build_model(args, model_args: ModelConfig, train: Examples, seed: int):
    """(model, tokenizer) for the configured backbone, with LoRA applied when ``use_peft``."""
    from rlhf.moderation.backbone import build_tiny_classifier, load_classifier_backbone

    name = model_args.model_name_or_path or "tiny"
    texts = [normalize(t) for t in train.texts] if args.normalize_text else train.texts
    if name == "tiny":
        model, tokenizer = build_tiny_classifier(
            texts,
            train.categories,
            vocab_size=args.tokenizer_vocab_size,
            hidden_size=args.tiny_hidden_size,
            num_hidden_layers=args.tiny_num_hidden_layers,
            num_attention_heads=args.tiny_num_attention_heads,
            dropout=args.tiny_dropout,
            max_position_embeddings=max(args.max_length, 512),  # room for long-text windows at inference
            seed=seed,
        )
    else:
        import torch

        dtype = getattr(torch, model_args.dtype) if model_args.dtype not in (None, "auto") else None
        model, tokenizer = load_classifier_backbone(name, train.categories, dtype=dtype, pooling=args.pooling)
    model.config.rlhf_normalize_text = args.normalize_text
    if model_args.use_peft:
        from peft import LoraConfig, get_peft_model

        lora = LoraConfig(
            task_type="SEQ_CLS",  # keeps the new classification head trainable (modules_to_save)
            r=model_args.lora_r,
            lora_alpha=model_args.lora_alpha,
            lora_dropout=model_args.lora_dropout,
            target_modules=_target_modules(model_args.lora_target_modules),
            modules_to_save=model_args.lora_modules_to_save,
            use_rslora=model_args.use_rslora,
            use_dora=model_args.use_dora,
        )
        model = get_peft_model(model, lora)
    return model, tokenizer


def _target_modules(value):
    """TRL's ModelConfig turns a one-item list into a string, which peft reads as a full-match regex; keep a
    single module name a name (``all-linear`` stays the keyword)."""
    if isinstance(value, str) and value != "all-linear":
        return [value]
    return value


def class_weights(train: Examples, cap: float) -> list[float]:
    """Per-category ``pos_weight`` for the loss: negatives / positives in the training rows, capped."""
    import torch

    from rlhf.moderation.pooled import positive_weights

    return positive_weights(torch.tensor(train.labels, dtype=torch.float32), cap=cap).tolist()


def fit_head(model, tokenizer, train: Examples, args) -> None:
    """The fast path: embed the training texts with the frozen encoder and set the head to a weighted
    logistic regression per category on those embeddings."""
    import torch

    from rlhf.moderation.pooled import embed, fit_linear_head, positive_weights

    texts = [normalize(t) for t in train.texts] if args.normalize_text else train.texts
    features = embed(model, tokenizer, texts, args.max_length)
    labels = torch.tensor(train.labels, dtype=torch.float32)
    weight, bias = fit_linear_head(features, labels, positive_weights(labels, cap=args.max_pos_weight))
    with torch.no_grad():
        model.classifier.weight.copy_(weight.to(model.classifier.weight.dtype))
        model.classifier.bias.copy_(bias.to(model.classifier.bias.dtype))


def head_optimizer(model, training_args: TrainingArguments, head_learning_rate: float | None):
    """AdamW with the head at ``head_learning_rate`` and the encoder at ``learning_rate`` (no weight decay on
    biases and norms); Trainer adds its scheduler."""
    import torch

    head_lr = head_learning_rate or training_args.learning_rate
    groups: dict[tuple[float, float], list] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        lr = head_lr if "classifier" in name.split(".") else training_args.learning_rate
        decay = (
            0.0
            if name.endswith("bias") or "LayerNorm" in name or "norm" in name
            else training_args.weight_decay
        )
        groups.setdefault((lr, decay), []).append(param)
    return torch.optim.AdamW(
        [{"params": p, "lr": lr, "weight_decay": wd} for (lr, wd), p in groups.items()],
        betas=(training_args.adam_beta1, training_args.adam_beta2),
        eps=training_args.adam_epsilon,
    )


def tokenize(examples: Examples, tokenizer, max_length: int, normalize_text: bool):
    """A ``datasets.Dataset`` of input_ids, attention_mask and float multi-hot labels."""
    import datasets

    texts = [normalize(t) for t in examples.texts] if normalize_text else examples.texts
    enc = tokenizer(texts, truncation=True, max_length=max_length)
    return datasets.Dataset.from_dict(
        {
            "input_ids": enc["input_ids"],
            "attention_mask": enc["attention_mask"],
            "labels": [[float(v) for v in row] for row in examples.labels],
        }
    )
