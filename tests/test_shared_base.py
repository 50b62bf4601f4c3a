"""One frozen base for policy, reference, value and reward (rlhf.shared_base), on a tiny model.

The reward run here is what the reward stage writes: a SEQ_CLS LoRA adapter with the ``score`` head
(``modules_to_save``) in the run directory, and the merged classifier in ``merged/``.
"""

import json
from pathlib import Path

import pytest
import torch
import yaml
from helpers import save_tiny_base, tiny_tokenizer, toy_prompt_rows, write_toy_splits
from peft import LoraConfig, PeftModel, get_peft_model
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, set_seed
from trl.experimental.utils import get_reward

from rlhf import ppo, shared_base
from rlhf.config import parse_args
from rlhf.dataset_formats import prompt_ids
from rlhf.models import load_reward_model, save_merged
from rlhf.scoring import score_sequences
from rlhf.stages import reset_accelerate_state


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """A tiny policy, a reward-stage run on it (adapter + head with non-zero weights, and merged/), prompts."""
    root = tmp_path_factory.mktemp("shared")
    save_tiny_base(root / "policy")
    tokenizer = tiny_tokenizer()
    set_seed(0)
    classifier = load_reward_model(str(root / "policy"), pad_token_id=tokenizer.pad_token_id)
    config = LoraConfig(task_type="SEQ_CLS", r=4, lora_alpha=8, target_modules="all-linear")
    config.modules_to_save = ["score"]
    reward = get_peft_model(classifier, config)
    with torch.no_grad():  # a trained-looking adapter: B = 0 would make the adapter invisible
        for name, param in reward.named_parameters():
            if "lora_B" in name:
                param.normal_(std=0.2)
    reward.save_pretrained(root / "reward")
    save_merged(reward, tokenizer, root / "reward" / "merged")
    write_toy_splits(root / "prompts", toy_prompt_rows(), n_test=4)
    return root


def sequences(tokenizer, n=4):
    rows = toy_prompt_rows()[:n]
    return [
        prompt_ids(tokenizer, r["prompt"]) + [40 + i, 41, tokenizer.eos_token_id] for i, r in enumerate(rows)
    ]


def args_for(workdir, algorithm="ppo", **overrides):
    keys = {
        "ppo": {"response_length": 8, "total_episodes": 16, "per_device_train_batch_size": 8},
        "rloo": {"max_completion_length": 8, "max_steps": 2, "per_device_train_batch_size": 8},
        "grpo": {"max_completion_length": 8, "max_steps": 2, "per_device_train_batch_size": 8},
    }[algorithm]
    config = {
        "algorithm": algorithm,
        "model_name_or_path": str(workdir / "policy"),
        "reward_model_path": str(workdir / "reward" / "merged"),
        "dataset_name": str(workdir / "prompts"),
        "use_peft": True,
        "lora_r": 8,
        "lora_alpha": 16,
        "lora_dropout": 0.0,
        "lora_target_modules": ["all-linear"],
        "learning_rate": 0.01,
        "logging_steps": 1,
        "save_strategy": "no",
        "report_to": "none",
        "gradient_checkpointing": False,
        "eval_prompts": 4,
        "bootstrap_resamples": 200,
        "disable_tqdm": True,
        **keys,
        **overrides,
    }
    if algorithm != "ppo":
        config.update(num_generations=4, beta=0.05)
    else:
        config.update(stop_token="eos", num_sample_generations=0, kl_coef=0.05)
    return config


def parsed(workdir, tmp_path, algorithm="ppo", **overrides):
    config = args_for(workdir, algorithm, output_dir=str(tmp_path / algorithm), **overrides)
    path = tmp_path / f"{algorithm}.yaml"
    path.write_text(yaml.safe_dump(config))
    types = (ppo.RLScriptArguments, ppo.CONFIGS[algorithm], ppo.ModelConfig)
    return path, parse_args(types, ["--config", str(path)])


def test_the_reward_through_the_shared_base_equals_the_merged_reward_model(workdir, tmp_path):
    tokenizer = tiny_tokenizer()
    _, (script_args, training_args, model_args) = parsed(workdir, tmp_path)
    models = shared_base.load_rl_models(script_args, training_args, model_args, tokenizer)
    assert models.shared and "shared base" in models.note and models.peft_config is None
    merged = load_reward_model(str(workdir / "reward" / "merged"), pad_token_id=tokenizer.pad_token_id).eval()
    seqs = sequences(tokenizer)
    pad = tokenizer.pad_token_id
    with torch.no_grad():
        expected = score_sequences(merged, seqs, pad)
        assert score_sequences(models.reward_model, seqs, pad) == pytest.approx(expected, abs=1e-5)
        assert abs(expected[0] - expected[1]) > 1e-3  # the scores tell answers apart: the check has teeth
        # TRL's own reading (backbone via base_model_prefix, then .score), as PPO scores rollouts
        ids = torch.full((len(seqs), max(map(len, seqs))), pad)
        for i, s in enumerate(seqs):
            ids[i, : len(s)] = torch.tensor(s)
        context = min(map(len, seqs)) - 3
        _, trl_scores, _ = get_reward(models.reward_model, ids, pad, context)
        _, trl_expected, _ = get_reward(merged, ids, pad, context)
        assert torch.allclose(trl_scores, trl_expected, atol=1e-5)
        # the value model starts as the reward model: same adapter weights, head copied from the reward head
        assert torch.equal(models.value_model.score.weight, models.reward_model.score.weight)
        assert models.value_model.score.weight is not models.reward_model.score.weight
        assert score_sequences(models.value_model, seqs, pad) == pytest.approx(expected, abs=1e-5)
    # the policy adapter is the active one: the policy's logits are the base model's (fresh LoRA, B = 0)
    base = AutoModelForCausalLM.from_pretrained(workdir / "policy")
    x = torch.tensor([seqs[0]])
    with torch.no_grad():
        assert torch.allclose(models.policy(x).logits, base(x).logits, atol=1e-6)


def test_shared_ppo_trainer_reference_is_the_base_and_value_adapter_trains(workdir, tmp_path):
    from trl.experimental.ppo.ppo_trainer import forward

    tokenizer = tiny_tokenizer()
    tokenizer.padding_side = "left"
    _, (script_args, training_args, model_args) = parsed(workdir, tmp_path)
    data = script_args.load("prompts", seed=0)
    models = shared_base.load_rl_models(script_args, training_args, model_args, tokenizer)
    try:
        trainer = ppo.build_trainer(script_args, training_args, model_args, tokenizer, data, models)
        peft_model = trainer.model.policy
        assert isinstance(peft_model, PeftModel) and trainer.ref_model is None
        assert set(peft_model.peft_config) == {"default", "value", "reward"}
        optimised = {id(p) for group in trainer.optimizer.param_groups for p in group["params"]}
        named = dict(trainer.model.named_parameters())
        for name, param in named.items():
            should_train = ".default." in name or ".value." in name or name == "value_model.score.weight"
            assert (id(param) in optimised) == should_train, name
        with torch.no_grad():  # make the policy adapter differ from the base
            for name, param in peft_model.named_parameters():
                if "lora_B.default" in name:
                    param.normal_(std=0.3)
        x = torch.tensor([sequences(tokenizer, 1)[0]])
        base = AutoModelForCausalLM.from_pretrained(workdir / "policy")
        with torch.no_grad():
            policy_logits = forward(peft_model, x, tokenizer.pad_token_id).logits
            with trainer.null_ref_context():  # TRL's reference pass
                ref_logits = forward(peft_model, x, tokenizer.pad_token_id).logits
            expected = base(x).logits
        assert torch.allclose(ref_logits, expected, atol=1e-6)
        assert not torch.allclose(policy_logits, expected, atol=1e-3)
        # after the reference pass peft leaves only the policy adapter trainable; the value view re-arms its own
        output, values = trainer.model(
            input_ids=x, attention_mask=torch.ones_like(x), output_hidden_states=True
        )
        (values.sum() + output.logits.sum()).backward()
        grads = {n: p.grad for n, p in peft_model.named_parameters() if "lora_B" in n}
        assert any(g is not None and g.abs().sum() > 0 for n, g in grads.items() if ".value." in n)
        assert any(g is not None and g.abs().sum() > 0 for n, g in grads.items() if ".default." in n)
        assert all(g is None for n, g in grads.items() if ".reward." in n)
    finally:
        reset_accelerate_state()


def policy_and_value_grads(models, x):
    """Gradients of policy + value outputs for one batch, as PPO's update computes them (value pass first)."""
    peft_model = models.policy
    peft_model.zero_grad(set_to_none=True)
    models.value_model.zero_grad(set_to_none=True)
    backbone = models.value_model.model
    with torch.autocast("cpu", enabled=False):
        hidden = backbone(input_ids=x, output_hidden_states=True).hidden_states[-1]
        values = models.value_model.score(hidden)
        logits = peft_model(input_ids=x).logits
    (values.pow(2).sum() + logits.logsumexp(-1).sum()).backward()
    named = list(peft_model.named_parameters()) + list(models.value_model.score.named_parameters())
    return {n: p.grad.clone() for n, p in named if p.grad is not None}


def test_checkpointing_recomputes_each_pass_with_its_own_adapter(workdir, tmp_path):
    """Policy and value passes share decoder layers; the backward recomputation must switch adapters back."""
    tokenizer = tiny_tokenizer()
    same_rank = {"lora_r": 4, "lora_alpha": 8}  # as the reward adapter's
    _, (script_args, training_args, model_args) = parsed(
        workdir, tmp_path, gradient_checkpointing=True, **same_rank
    )
    models = shared_base.load_rl_models(script_args, training_args, model_args, tokenizer)
    assert models.shared and models.policy.get_base_model().is_gradient_checkpointing
    models.policy.train()
    with torch.no_grad():  # a policy adapter unlike the value adapter, so a mix-up shows in the gradients
        for name, param in models.policy.named_parameters():
            if "lora_B.default" in name:
                param.normal_(std=0.3)
    x = torch.tensor([sequences(tokenizer, 1)[0]] * 2)
    models.policy.get_base_model().gradient_checkpointing_disable()  # as TRL does around each generation
    models.policy.get_base_model().gradient_checkpointing_enable()  # and back, without our settings
    checkpointed = policy_and_value_grads(models, x)
    models.policy.get_base_model().gradient_checkpointing_disable()
    plain = policy_and_value_grads(models, x)
    assert set(checkpointed) == set(plain) and any(".value." in n for n in plain)
    for name, grad in plain.items():
        assert torch.allclose(checkpointed[name], grad, atol=1e-6), name
    # plain non-reentrant checkpointing recomputes the value pass with the policy's adapter; with adapters of
    # equal rank nothing complains and the value gradients are silently wrong: the check above has teeth
    base = models.policy.get_base_model()
    type(base).gradient_checkpointing_enable(base)  # transformers' own, not the stage's replacement
    naive = policy_and_value_grads(models, x)
    assert any(not torch.allclose(naive[n], g, atol=1e-4) for n, g in plain.items() if ".value." in n)


def test_falls_back_to_separate_models_and_says_why(workdir, tmp_path):
    tokenizer = tiny_tokenizer()
    _, (script_args, training_args, model_args) = parsed(workdir, tmp_path, share_base=False)
    models = shared_base.load_rl_models(script_args, training_args, model_args, tokenizer)
    assert not models.shared and "share_base is false" in models.note and models.peft_config is not None
    reentrant = {"gradient_checkpointing": True, "gradient_checkpointing_kwargs": {"use_reentrant": True}}
    _, (script_args, training_args, model_args) = parsed(workdir, tmp_path, **reentrant)
    assert "reentrant" in shared_base.why_not_shared(script_args, training_args, model_args)[1]
    _, (script_args, training_args, model_args) = parsed(workdir, tmp_path, "grpo", **reentrant)
    # GRPO recomputes only the policy's pass: reentrant checkpointing is fine there
    assert shared_base.why_not_shared(script_args, training_args, model_args)[1] == ""
    other = tmp_path / "other"
    save_tiny_base(other, seed=1)
    _, (script_args, training_args, model_args) = parsed(workdir, tmp_path, model_name_or_path=str(other))
    assert "was trained on" in shared_base.why_not_shared(script_args, training_args, model_args)[1]
    assert shared_base.reward_adapter_dir(str(other)) is None


@pytest.mark.parametrize(
    ("algorithm", "checkpointing"), [("ppo", False), ("ppo", True), ("rloo", True), ("grpo", False)]
)
def test_rl_stage_on_the_shared_base_saves_as_before(workdir, tmp_path, algorithm, checkpointing):
    path, _ = parsed(workdir, tmp_path, algorithm, gradient_checkpointing=checkpointing)
    reward_before = load_file(workdir / "reward" / "adapter_model.safetensors")
    metrics = ppo.cli(["--config", str(path)])
    out = tmp_path / algorithm
    assert metrics["shared_base"] is True and isinstance(metrics["reward_model_gain"], float)
    lora = 8 * (4 * (32 + 32) + 3 * (32 + 64)) * 2  # r x (in + out): q k v o (32->32), gate up down, 2 layers
    assert metrics["trainable_parameters"] == lora  # the policy's adapter only, not the value adapter
    # only the policy's adapter is saved, at the top level, as with separate models
    assert json.loads((out / "adapter_config.json").read_text())["task_type"] == "CAUSAL_LM"
    assert not any((out / name).exists() for name in ("value", "reward", "ref"))
    adapter = load_file(out / "adapter_model.safetensors")
    assert adapter and all(".value." not in k and ".reward." not in k for k in adapter)
    assert any(v.abs().sum() > 0 for k, v in adapter.items() if "lora_B" in k)  # the policy trained
    assert all(
        torch.equal(v, load_file(workdir / "reward" / "adapter_model.safetensors")[k])
        for k, v in reward_before.items()
    )
    tokenizer = tiny_tokenizer()
    ids = torch.tensor([prompt_ids(tokenizer, toy_prompt_rows()[0]["prompt"])])
    with torch.no_grad():
        merged = AutoModelForCausalLM.from_pretrained(out / "merged")(ids).logits
        reloaded = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(workdir / "policy"), out)
        assert torch.allclose(reloaded(ids).logits, merged, atol=1e-5)
    assert Path(out / "metrics.json").is_file()
