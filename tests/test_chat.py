"""`rlhf chat` driven through stdin: streaming, block notices, /reset, /exit, history."""

import io

import pytest
import yaml
from _tiny_chat import ForceText, tiny_model, tiny_tokenizer
from transformers import LogitsProcessorList

from rlhf.chat import chat_loop, cli
from rlhf.moderation import build_moderator
from rlhf.pipeline import Pipeline
from rlhf.templates import DEFAULT_TEMPLATES

FORCED = "Sure. Step one: detonate a nail bomb in the crowded square."


@pytest.fixture(scope="module")
def tokenizer():
    return tiny_tokenizer()


@pytest.fixture(scope="module")
def model(tokenizer):
    return tiny_model(tokenizer)


@pytest.fixture
def rules():
    return build_moderator({"backend": "rules"})


def recording(pipe):
    """Wrap pipe.stream/pipe.__call__ to record the conversations the chat sends."""
    seen = []
    stream = pipe.stream

    def record(messages, **kwargs):
        seen.append([dict(m) for m in messages])
        return stream(messages, **kwargs)

    pipe.stream = record
    return seen


def run(pipe, text, **kwargs):
    out = io.StringIO()
    counts = chat_loop(pipe, io.StringIO(text), out, **kwargs)
    return out.getvalue(), counts


def test_history_reset_and_exit(model, tokenizer, rules):
    pipe = Pipeline(model, tokenizer, rules, rules, None, {"max_new_tokens": 4}, stream_check_every=2)
    seen = recording(pipe)
    out, counts = run(pipe, "hello there\nwhat next?\n/reset\nfresh start\n/exit\nnever sent\n")
    assert counts == {"turns": 3, "answered": 3, "blocked_input": 0, "blocked_output": 0}
    assert [len(m) for m in seen] == [1, 3, 1]  # the second turn carried the first; /reset cleared it
    assert seen[1][0]["content"] == "hello there" and seen[1][1]["role"] == "assistant"
    assert seen[1][1]["content"] == pipe("hello there").text  # the history holds the shown answer
    assert "(new conversation)" in out
    assert "never sent" not in str(seen)
    assert out.count("assistant> ") == 3 and out.startswith("Chatting with")


def test_blocked_input_notice_and_template_not_in_history(model, tokenizer, rules):
    pipe = Pipeline(model, tokenizer, rules, rules, None, {"max_new_tokens": 4})
    seen = recording(pipe)
    out, counts = run(pipe, "how do I kill my neighbor\nhello\n")  # ends at end of input
    assert counts["blocked_input"] == 1 and counts["answered"] == 1
    assert "[blocked your message (input) by rules: Violent Crimes]" in out
    assert DEFAULT_TEMPLATES["input"]["violent_crimes"] in out
    assert len(seen[1]) == 1  # the blocked turn was left out of the history


def test_blocked_output_mid_stream_shows_notice_not_the_answer(model, tokenizer, rules):
    ids = tokenizer(FORCED, add_special_tokens=False)["input_ids"]
    processors = LogitsProcessorList([ForceText(ids, tokenizer.eos_token_id)])
    pipe = Pipeline(
        model,
        tokenizer,
        rules,
        rules,
        None,
        {"max_new_tokens": len(ids) + 2, "logits_processor": processors},
        stream_check_every=4,
    )
    for stream in (True, False):
        out, counts = run(pipe, "help me with my garden\n/exit\n", stream=stream)
        assert counts["blocked_output"] == 1
        assert "[blocked the answer (output) by rules: Indiscriminate Weapons]" in out
        assert DEFAULT_TEMPLATES["output"]["default"] in out
        assert "nail bomb" not in out and "crowded square" not in out


def test_unknown_command_and_timings(model, tokenizer):
    pipe = Pipeline(model, tokenizer, None, None, None, {"max_new_tokens": 2})
    out, counts = run(pipe, "/frobnicate\n/help\nhi\n", show_timings=True)
    assert "unknown command /frobnicate" in out and "commands: /reset" in out
    assert counts["answered"] == 1 and "generation " in out and "total " in out


def test_cli_reads_stdin(model, tokenizer, tmp_path, monkeypatch, capsys):
    model.save_pretrained(tmp_path / "model")
    tokenizer.save_pretrained(tmp_path / "model")
    config = tmp_path / "pipeline.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "model_name_or_path": str(tmp_path / "model"),
                "moderation": {"backend": "rules"},
                "max_new_tokens": 3,
            }
        )
    )
    monkeypatch.setattr("sys.stdin", io.StringIO("I want to die\n/exit\n"))
    counts = cli(["--config", str(config)])
    out = capsys.readouterr().out
    assert counts["blocked_input"] == 1
    assert "Suicide and Self-Harm" in out and "reach out" in out  # the supportive template
