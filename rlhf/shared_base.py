"""The networks the RL stage trains with: one frozen base shared by every role, or separate models.

With LoRA, PPO's four networks differ from one frozen base only by small adapters, so they can all be one
network with named peft adapters:

    policy    = base + "default" adapter (trained)         what TRL gets as ``model`` (a ``PeftModel``)
    reference = base with adapters off                     TRL's own ``ref_model=None`` path for a ``PeftModel``
    value     = base + "value" adapter + value head        both trained; start as the reward adapter and head
    reward    = base + "reward" adapter + score head       the reward stage's adapter, frozen

TRL's trainers stay as they are: they receive the ``PeftModel`` as the policy and, for the value and reward
models, *views*: genuine ``AutoModelForSequenceClassification`` objects whose backbone is the shared base behind
an `AdapterSwitch` (it activates the view's adapter for the length of one forward pass) and whose ``score`` is
the view's own head. TRL reads them as it reads any reward model (``getattr(model, model.base_model_prefix)``
then ``model.score``), and ``model(input_ids=...).logits`` scores a batch as the reward model does.

The base is shared when it applies: LoRA on the policy, a reward model that is a reward-stage adapter trained
on the policy's own base (``reward_model_path`` is that run's ``merged/`` or its directory), no separate
value-model source, and for PPO no reentrant gradient checkpointing. Otherwise the models are loaded
separately, as TRL's examples do, and the log says why. With ``gradient_checkpointing`` (TRL's PPOConfig
default, which TRL's PPOTrainer itself never acts on) PPO's shared base is checkpointed so that each layer's
recomputation runs with the adapter its forward pass ran with (`checkpoint_per_adapter`).
"""

from __future__ import annotations

import contextlib
import copy
import functools
import json
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from transformers import AutoModelForSequenceClassification

from rlhf.config import ConfigError
from rlhf.models import load_causal_lm, load_reward_model, split_gguf

POLICY, VALUE, REWARD = "default", "value", "reward"  # "default": the adapter name TRL expects on the policy


@dataclass
class RLModels:
    """What the RL trainer is built from.

    ``policy`` is a ``PeftModel`` already holding every adapter when ``shared``, else the plain causal LM that
    the trainer wraps with ``peft_config``. ``value_model`` is None outside PPO.
    """

    policy: nn.Module
    reward_model: nn.Module
    value_model: nn.Module | None
    peft_config: object | None
    shared: bool
    note: str


class AdapterSwitch(nn.Module):
    """The shared backbone, seen with one adapter active (and adapters enabled) for the length of a call.

    ``train()``/``eval()`` stop here: the backbone's mode belongs to the policy, which trains it. A trainable
    view also turns its adapter's ``requires_grad`` back on before each call, because peft turns off every
    inactive adapter whenever the trainer leaves ``disable_adapter()`` (TRL's reference pass).
    """

    def __init__(self, backbone: nn.Module, adapter: str, trainable: bool):
        super().__init__()
        self.backbone, self.adapter, self.trainable = backbone, adapter, trainable
        self._lora_layers = [m for m in backbone.modules() if _is_tuner_layer(m) and adapter in _adapters(m)]
        self._own = [p for n, p in backbone.named_parameters() if f".{adapter}." in n]

    def train(self, mode: bool = True):
        self.training = mode
        return self

    @contextlib.contextmanager
    def active(self):
        before = [(m._active_adapter, m._disable_adapters) for m in self._lora_layers]
        for m in self._lora_layers:  # set directly: peft's set_adapter would also change requires_grad
            m._active_adapter, m._disable_adapters = [self.adapter], False
        try:
            yield
        finally:
            for m, (active, disabled) in zip(self._lora_layers, before, strict=True):
                m._active_adapter, m._disable_adapters = active, disabled

    def forward(self, *args, **kwargs):
        if self.trainable and torch.is_grad_enabled():
            for p in self._own:
                p.requires_grad_(True)
        with self.active():
            return self.backbone(*args, **kwargs)


def _is_tuner_layer(module) -> bool:
    from peft.tuners.tuners_utils import BaseTunerLayer

    return isinstance(module, BaseTunerLayer)


def _adapters(layer) -> set[str]:
    return set(getattr(layer, "lora_A", {}).keys())


def reward_adapter_dir(reward_model_path: str) -> Path | None:
    """The reward stage's adapter directory behind ``reward_model_path`` (the run directory or its ``merged/``)."""
    path = Path(reward_model_path)
    for candidate in (path, path.parent if path.name == "merged" else None):
        if candidate is not None and (candidate / "adapter_config.json").is_file():
            return candidate
    return None


def _same_model(a: str, b: str) -> bool:
    if Path(a).exists() and Path(b).exists():
        return Path(a).resolve() == Path(b).resolve()
    return a == b


def why_not_shared(script_args, training_args, model_args) -> tuple[Path | None, str]:
    """(reward adapter directory, "") when the base can be shared, else (None, the reason)."""
    if not script_args.share_base:
        return None, "share_base is false"
    if not model_args.use_peft:
        return None, "the policy is fully fine-tuned (use_peft is false)"
    reentrant = (getattr(training_args, "gradient_checkpointing_kwargs", None) or {}).get("use_reentrant")
    if training_args.gradient_checkpointing and reentrant and script_args.algorithm == "ppo":
        return (
            None,
            "reentrant gradient checkpointing would recompute the value pass with the policy's adapter",
        )
    reward_path = getattr(training_args, "reward_model_path", None)
    if script_args.value_model_path and script_args.value_model_path != reward_path:
        return None, f"value_model_path '{script_args.value_model_path}' is not the reward model"
    adapter = reward_adapter_dir(reward_path)
    if adapter is None:
        return (
            None,
            f"reward_model_path '{reward_path}' is not a reward-stage LoRA run (no adapter_config.json)",
        )
    base = json.loads((adapter / "adapter_config.json").read_text()).get("base_model_name_or_path") or ""
    policy, gguf = split_gguf(model_args.model_name_or_path, script_args.gguf_file)
    if gguf:
        return None, "the policy is loaded from a GGUF file (the reward stage trained on a saved model)"
    if not _same_model(base, policy):
        return (
            None,
            f"the reward adapter was trained on '{base}', the policy is '{model_args.model_name_or_path}'",
        )
    return adapter, ""


def load_rl_models(script_args, training_args, model_args, tokenizer) -> RLModels:
    """The policy, reward model and (PPO) value model for the trainer: on one shared base where that applies."""
    from trl import get_peft_config

    peft_config = get_peft_config(model_args)
    policy = load_causal_lm(
        model_args.model_name_or_path,
        dtype=model_args.dtype,
        gguf_file=script_args.gguf_file,
        trust_remote_code=training_args.trust_remote_code,
        revision=model_args.model_revision,
        attn_implementation=model_args.attn_implementation,
    )
    policy.generation_config.eos_token_id = tokenizer.eos_token_id
    policy.generation_config.pad_token_id = tokenizer.pad_token_id
    with_value = script_args.algorithm == "ppo"
    adapter, reason = why_not_shared(script_args, training_args, model_args)
    if adapter is not None:
        peft_model, reward, value = share_base(
            policy, peft_config, adapter, tokenizer.pad_token_id, with_value
        )
        if with_value and training_args.gradient_checkpointing:  # RLOO/GRPO: their trainers turn it on
            checkpoint_per_adapter(peft_model, training_args.gradient_checkpointing_kwargs)
        roles = "policy, reference, value and reward" if with_value else "policy, reference and reward"
        note = f"shared base: {roles} are adapters on one frozen copy of {model_args.model_name_or_path}"
        return RLModels(peft_model, reward, value, None, True, note)

    def load_classifier(path):
        return load_reward_model(
            path, dtype=model_args.dtype, trust_remote_code=training_args.trust_remote_code,
            pad_token_id=tokenizer.pad_token_id,
        )  # fmt: skip

    reward_path = training_args.reward_model_path
    reward = load_classifier(reward_path).eval()
    value = load_classifier(script_args.value_model_path or reward_path) if with_value else None
    return RLModels(policy, reward, value, peft_config, False, f"separate models ({reason})")


def read_reward_adapter(adapter_dir: Path):
    """The reward adapter's LoRA config (as a causal-LM adapter without the head), its LoRA weights, its head."""
    from peft import LoraConfig
    from safetensors.torch import load_file

    fields = json.loads((adapter_dir / "adapter_config.json").read_text())
    if fields.get("peft_type") != "LORA":
        raise ConfigError(f"{adapter_dir}/adapter_config.json: peft_type must be LORA for share_base")
    config = LoraConfig.from_pretrained(str(adapter_dir))
    config.task_type, config.modules_to_save, config.inference_mode = "CAUSAL_LM", None, False
    weights = load_file(adapter_dir / "adapter_model.safetensors")
    head = {k.rsplit(".", 1)[-1]: v for k, v in weights.items() if k.startswith("base_model.model.score.")}
    if "weight" not in head:
        raise ConfigError(f"{adapter_dir}: the adapter holds no score head (modules_to_save: [score])")
    lora = {k: v for k, v in weights.items() if "lora_" in k}
    return config, lora, head


def share_base(policy, peft_config, adapter_dir: Path, pad_token_id: int, with_value: bool = True):
    """Wrap ``policy`` with the trained "default" adapter plus the reward (and value) adapters from the reward run.

    Returns ``(peft_model, reward_view, value_view or None)``; only the policy adapter, the value adapter and
    the value head require gradients.
    """
    from peft import get_peft_model, set_peft_model_state_dict

    peft_model = get_peft_model(policy, peft_config)
    config, lora, head = read_reward_adapter(adapter_dir)
    dtype = next(policy.parameters()).dtype
    views = {}
    for name in (REWARD, VALUE) if with_value else (REWARD,):
        peft_model.add_adapter(name, copy.deepcopy(config))
        result = set_peft_model_state_dict(peft_model, lora, adapter_name=name)
        missing = [k for k in result.missing_keys if f".{name}." in k and "lora_" in k]
        if missing:
            raise ConfigError(
                f"{adapter_dir}: the reward adapter does not fit the policy (missing {missing[0]})"
            )
        trainable = name == VALUE
        views[name] = classifier_view(peft_model, name, head, pad_token_id, dtype, trainable)
    for (
        param_name,
        param,
    ) in peft_model.named_parameters():  # add_adapter leaves only the active one trainable
        param.requires_grad_(f".{POLICY}." in param_name or (with_value and f".{VALUE}." in param_name))
    return peft_model, views[REWARD], views.get(VALUE)


def classifier_view(peft_model, adapter: str, head: dict, pad_token_id: int, dtype, trainable: bool):
    """An ``AutoModelForSequenceClassification`` whose backbone is ``peft_model``'s base seen through ``adapter``.

    Its own weights are a copy of ``head`` (the score head); everything else is the shared base.
    """
    lm = peft_model.get_base_model()
    config = copy.deepcopy(lm.config)
    config.num_labels, config.pad_token_id = 1, pad_token_id
    with torch.device("meta"):
        view = AutoModelForSequenceClassification.from_config(config)
    switch = AdapterSwitch(getattr(lm, lm.base_model_prefix), adapter, trainable)
    setattr(view, view.base_model_prefix, switch)
    score = nn.Linear(head["weight"].shape[1], head["weight"].shape[0], bias="bias" in head, dtype=dtype)
    score.load_state_dict({k: v.to(dtype) for k, v in head.items()})
    score.to(next(lm.parameters()).device).requires_grad_(trainable)
    view.score = score
    if any(t.is_meta for t in list(view.parameters()) + list(view.buffers())):
        raise ConfigError(f"share_base: {type(view).__name__} keeps weights outside `score` and the backbone")
    return view.train(trainable) if trainable else view.eval()


def checkpoint_per_adapter(peft_model, checkpointing_kwargs: dict | None = None) -> None:
    """Activation checkpointing on the shared base, each layer recomputed with the adapter its forward ran with.

    TRL's PPOTrainer never turns checkpointing on itself (its ``train`` replaces the ``Trainer.train`` that
    does), so the stage does it here. Policy and value passes run through the same decoder layers with different
    adapters active; the backward pass recomputes both after both forwards, so the recomputation must switch
    back to the adapter state each layer saw (``context_fn``, which needs non-reentrant checkpointing). TRL
    switches checkpointing off around each generation and back on without arguments; the base model's
    ``gradient_checkpointing_enable`` is replaced so that this, too, restores these settings. Keys of
    ``checkpointing_kwargs`` are ``torch.utils.checkpoint.checkpoint``'s, plus ``every_n_layers`` and
    ``offload`` as ``Trainer`` reads them.
    """
    layers = [m for m in peft_model.modules() if _is_tuner_layer(m)]

    @contextlib.contextmanager
    def adapters_as(state):
        before = [(m._active_adapter, m._disable_adapters) for m in layers]
        for m, (active, disabled) in zip(layers, state, strict=True):
            m._active_adapter, m._disable_adapters = active, disabled
        try:
            yield
        finally:
            for m, (active, disabled) in zip(layers, before, strict=True):
                m._active_adapter, m._disable_adapters = active, disabled

    def context_fn():  # called in the forward pass of each checkpointed layer
        state = [(m._active_adapter, m._disable_adapters) for m in layers]
        return contextlib.nullcontext(), adapters_as(state)

    kwargs = dict(checkpointing_kwargs or {})
    every_n_layers, offload = kwargs.pop("every_n_layers", 1), kwargs.pop("offload", False)
    kwargs.update(use_reentrant=False, context_fn=context_fn)
    base = peft_model.get_base_model()

    def enable(*_, **__):  # TRL turns checkpointing off around generation and back on with default settings
        type(base)._activation_checkpointing_enable(base, kwargs, every_n_layers, offload)

    # transformers routes activation_checkpointing_enable through an instance's gradient_checkpointing_enable
    base.gradient_checkpointing_enable = enable
    base.activation_checkpointing_enable()


def count_policy_parameters(model) -> tuple[int, int]:
    """(trainable, total) parameters of the policy alone: the other roles' adapters on a shared base left out."""
    others = tuple(f".{name}." for name in (VALUE, REWARD, "ref"))
    params = [p for n, p in model.named_parameters() if not any(o in n for o in others)]
    return sum(p.numel() for p in params if p.requires_grad), sum(p.numel() for p in params)


@contextlib.contextmanager
def policy_adapter_only(model):
    """While saving, ``model.save_pretrained`` writes only the policy's adapter (no ``value/``, ``reward/`` folders).

    The trainer calls ``save_pretrained`` itself, without ``selected_adapters``; every adapter stays listed in
    ``peft_config``, because peft filters the other adapters' weights out by those names.
    """
    configs = getattr(model, "peft_config", None)
    if not isinstance(configs, dict) or set(configs) == {POLICY}:
        yield
        return
    model.save_pretrained = functools.partial(type(model).save_pretrained, model, selected_adapters=[POLICY])
    try:
        yield
    finally:
        del model.save_pretrained
