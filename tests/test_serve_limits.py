"""The server in this process (uvicorn in a thread) over pipelines a test controls: what each stream mode
sends of a blocked answer, generation stopped by a disconnect or a timeout (counted in generate steps),
and the queue and concurrency limits."""

import json
import socket
import threading
import time

import openai
import pytest
from _serve_util import dechunk, health_ok, metric, post_json, serving
from _tiny_chat import ForceText, tiny_model, tiny_tokenizer
from transformers import LogitsProcessor, LogitsProcessorList

from rlhf.config import ConfigError
from rlhf.moderation import build_moderator
from rlhf.pipeline import Pipeline
from rlhf.serve import ChatCompletionRequest, RequestError, ServeArguments, load_api_keys
from rlhf.templates import DEFAULT_TEMPLATES

FORCED = "Sure. Step one: detonate a nail bomb in the crowded square."


def blocked_late_pipeline() -> Pipeline:
    """Answers every request with FORCED: harmless for its first words, blocked by the rules later."""
    tokenizer = tiny_tokenizer()
    ids = tokenizer(FORCED, add_special_tokens=False)["input_ids"]
    rules = build_moderator({"backend": "rules"})
    return Pipeline(
        tiny_model(tokenizer), tokenizer, rules, rules, None,
        {"max_new_tokens": len(ids) + 1, "logits_processor": LogitsProcessorList([ForceText(ids, 0)])},
        stream_check_every=4,
    )  # fmt: skip


class SlowSteps(LogitsProcessor):
    """Counts generate steps, takes ``seconds`` each, and never lets the answer end early (no EOS)."""

    def __init__(self, eos_id: int, seconds: float):
        self.eos_id, self.seconds, self.steps = eos_id, seconds, 0

    def __call__(self, input_ids, scores):
        self.steps += 1
        time.sleep(self.seconds)
        scores[:, self.eos_id] = float("-inf")
        return scores


def slow_pipeline(seconds: float = 0.03) -> tuple[Pipeline, SlowSteps]:
    tokenizer = tiny_tokenizer()
    counter = SlowSteps(tokenizer.eos_token_id, seconds)
    pipe = Pipeline(
        tiny_model(tokenizer), tokenizer, None, None, None,
        {"max_new_tokens": 400, "logits_processor": LogitsProcessorList([counter])},
        stream_check_every=2,
    )  # fmt: skip
    return pipe, counter


def api(port: int) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="none", max_retries=0, timeout=60)


def test_safe_mode_sends_no_text_of_a_blocked_answer():
    pipe = blocked_late_pipeline()
    with serving(pipe, stream_mode="safe") as (port, _):
        body = json.dumps({"messages": [{"role": "user", "content": "hi"}], "stream": True}).encode()
        with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
            head = f"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\nConnection: close"
            sock.sendall(head.encode() + b"\r\n\r\n" + body)
            raw = b""
            while chunk := sock.recv(65536):
                raw += chunk
        raw = dechunk(raw.partition(b"\r\n\r\n")[2])
        # every byte the client received: none of the answer, not even its harmless start
        for part in (b"Sure", b"Step", b"nail", b"bomb", b"crowded"):
            assert part not in raw
        assert b'"finish_reason": "content_filter"' in raw and raw.rstrip().endswith(b"data: [DONE]")
        chunks = list(
            api(port).chat.completions.create(
                model="m", messages=[{"role": "user", "content": "hi"}], stream=True
            )
        )
        content = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert content == DEFAULT_TEMPLATES["output"]["default"]
        final = chunks[-1]
        assert final.choices[0].finish_reason == "content_filter"
        assert final.model_extra["rlhf"]["moderation"]["output"]["categories"] == ["indiscriminate_weapons"]
        assert "replaces_streamed_content" not in final.model_extra["rlhf"]["moderation"]
        assert metric(port, "rlhf_blocks_total", 'category="indiscriminate_weapons",side="output"') == 2


def test_checked_mode_sends_checked_text_before_a_late_block():
    """What the README says of stream_mode checked: pieces that passed their check are sent; the blocked
    part never is; the template follows and the final chunk says it replaces the streamed text."""
    pipe = blocked_late_pipeline()
    with serving(pipe, stream_mode="checked") as (port, _):
        chunks = list(
            api(port).chat.completions.create(
                model="m", messages=[{"role": "user", "content": "hi"}], stream=True
            )
        )
    contents = [c.choices[0].delta.content or "" for c in chunks if c.choices]
    text = "".join(contents)
    assert text.startswith("Sure.")  # checked text before the phrase was sent
    assert "nail bomb" not in text and "crowded" not in text
    assert text.endswith("\n\n" + DEFAULT_TEMPLATES["output"]["default"])
    final = chunks[-1]
    assert final.choices[0].finish_reason == "content_filter"
    assert final.model_extra["rlhf"]["moderation"]["replaces_streamed_content"] is True


def _steps_after(counter: SlowSteps, moment_steps: int, settle_s: float = 1.0) -> int:
    time.sleep(settle_s)  # 1 s = ~30 steps of 30 ms had generation gone on
    return counter.steps - moment_steps


@pytest.mark.parametrize("stream_mode, stream", [("checked", True), ("safe", True), ("safe", False)])
def test_client_leaving_stops_generation(stream_mode, stream):
    pipe, counter = slow_pipeline()
    with serving(pipe, stream_mode=stream_mode) as (port, state):
        body = json.dumps(
            {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 400, "stream": stream}
        )
        sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        head = f"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}"
        sock.sendall(head.encode() + b"\r\n\r\n" + body.encode())
        if stream_mode == "checked":  # mid-stream: after the first piece of the answer arrived
            received = b""
            while b'"delta": {"content": "' not in received:
                received += sock.recv(65536)
        else:  # nothing is sent before the answer is whole: leave while it is generated
            deadline = time.monotonic() + 10
            while counter.steps < 10 and time.monotonic() < deadline:
                time.sleep(0.01)
        at_close = counter.steps
        sock.close()
        after = _steps_after(counter, at_close)
        assert 1 <= at_close < 100  # generation was under way when the client left
        assert after <= 5, f"generation went on for {after} steps after the client left"
        assert counter.steps < 400
        assert metric(port, "rlhf_cancelled_total", 'reason="disconnect"') == 1
        assert state.batcher.running == []
        assert health_ok(port)


def test_timeout_stops_generation():
    pipe, counter = slow_pipeline()
    with serving(pipe, request_timeout_s=0.5) as (port, _):
        started = time.monotonic()
        status, headers, body = post_json(
            port, "/v1/chat/completions", {"messages": [{"role": "user", "content": "x"}]}
        )
        at_reply = counter.steps
        assert status == 504 and "no answer within 0.5 s" in json.loads(body)["error"]["message"]
        assert time.monotonic() - started < 2.0
        assert _steps_after(counter, at_reply) <= 5 and counter.steps < 100
        assert metric(port, "rlhf_cancelled_total", 'reason="timeout"') == 1
        assert health_ok(port)


def test_full_queue_gets_429_and_concurrency_cap_503_with_retry_after():
    pipe, counter = slow_pipeline(0.02)
    payload = {"messages": [{"role": "user", "content": "x"}], "max_tokens": 40}
    with serving(pipe, max_batch_size=1, max_queue_size=1, max_concurrent_requests=3) as (port, _):
        results = []

        def ask():
            results.append(post_json(port, "/v1/chat/completions", payload))

        threads = [threading.Thread(target=ask) for _ in range(2)]
        for t in threads:  # the first takes the model, the second waits in the queue (now full)
            t.start()
            time.sleep(0.2)
        status, headers, body = post_json(port, "/v1/chat/completions", payload)
        assert status == 429 and headers["retry-after"] == "1"
        assert json.loads(body)["error"]["type"] == "rate_limit_error"
        for t in threads:
            t.join(30)
        assert sorted(r[0] for r in results) == [200, 200]

    with serving(pipe, max_concurrent_requests=1) as (port, _):
        thread = threading.Thread(target=lambda: post_json(port, "/v1/chat/completions", payload))
        thread.start()
        time.sleep(0.2)
        status, headers, _ = post_json(port, "/v1/chat/completions", payload)
        assert status == 503 and headers["retry-after"] == "1"
        assert health_ok(port)  # /health is not a /v1 request: never refused
        thread.join(30)


def test_request_model_maps_openai_fields_and_names_wrong_ones():
    request = ChatCompletionRequest.model_validate(
        {
            "messages": [
                {"role": "developer", "content": [{"type": "text", "text": "be brief"}]},
                {"role": "user", "content": "hi"},
            ],
            "max_completion_tokens": 7,
            "temperature": 0.5,
            "top_p": 0.9,
            "stream": True,
            "logprobs": None,  # fields this server does not use are ignored
        }
    )
    assert request.conversation()[0] == {"role": "system", "content": "be brief"}
    assert request.overrides(100) == {
        "max_new_tokens": 7,
        "do_sample": True,
        "temperature": 0.5,
        "top_p": 0.9,
    }
    assert ChatCompletionRequest.model_validate(
        {"messages": [{"role": "user", "content": "a"}], "temperature": 0}
    ).overrides(10) == {"do_sample": False}
    with pytest.raises(RequestError, match="1..10") as err:
        ChatCompletionRequest.model_validate(
            {"messages": [{"role": "user", "content": "a"}], "max_tokens": 11}
        ).overrides(10)
    assert err.value.param == "max_tokens"
    with pytest.raises(RequestError, match="last message"):
        ChatCompletionRequest.model_validate(
            {"messages": [{"role": "assistant", "content": "a"}]}
        ).conversation()


def test_api_keys_from_argument_environment_and_file(tmp_path):
    keys = tmp_path / "keys.txt"
    keys.write_text("# comment\n\nsk-a\n  sk-b  \n")
    args = ServeArguments(api_key="sk-arg", api_key_file=str(keys))
    assert load_api_keys(args, {"RLHF_API_KEY": "sk-env"}) == ["sk-arg", "sk-env", "sk-a", "sk-b"]
    assert load_api_keys(ServeArguments(), {}) == []
    (tmp_path / "empty.txt").write_text("# nothing\n")
    with pytest.raises(ConfigError, match="api_key_file=.*holds no key"):
        load_api_keys(ServeArguments(api_key_file=str(tmp_path / "empty.txt")), {})
    with pytest.raises(ConfigError, match="api_key_file=.*cannot be read"):
        load_api_keys(ServeArguments(api_key_file=str(tmp_path / "missing.txt")), {})


def test_remote_bind_without_a_key_is_refused_in_one_line(capsys, monkeypatch):
    from helpers import cli_error

    from rlhf.serve import cli

    monkeypatch.delenv("RLHF_API_KEY", raising=False)
    line = cli_error(cli, ["--host", "0.0.0.0"], capsys)
    assert "host='0.0.0.0'" in line and "no API key" in line


def test_bearer_keys_in_process():
    pipe, _ = slow_pipeline(0.0)
    with serving(pipe, api_keys=["sk-1", "sk-2"]) as (port, _):
        payload = {"messages": [{"role": "user", "content": "x"}], "max_tokens": 2}
        assert post_json(port, "/v1/chat/completions", payload)[0] == 401
        assert post_json(port, "/v1/chat/completions", payload, "\r\nAuthorization: Bearer sk-3")[0] == 401
        assert post_json(port, "/v1/chat/completions", payload, "\r\nAuthorization: Basic sk-2")[0] == 401
        assert post_json(port, "/v1/chat/completions", payload, "\r\nAuthorization: Bearer sk-2")[0] == 200


def test_pipeline_cancel_flags_stop_only_their_rows():
    """The hook the server uses: a set flag stops its row of a batch at the next token; the others go on."""
    pipe, counter = slow_pipeline(0.0)
    stop, go = threading.Event(), threading.Event()
    stop.set()
    cut, full = pipe.batch(["first", "second"], cancel=[stop, go], max_new_tokens=20)
    # a stopped row is padded to the batch's length (completion_tokens counts the padding): its text is
    # what one token decodes to
    assert len(cut.text) <= 6 and len(full.text) >= 20 and full.completion_tokens == 20
    assert counter.steps == 20  # generate went on for the row that was not cancelled
    [alone] = pipe.batch(["third"], cancel=[stop], max_new_tokens=20)
    assert alone.completion_tokens == 1 and counter.steps == 21  # every row cancelled: generate ends
    with pytest.raises(ValueError, match="cancel has 1 flags for 2 requests"):
        pipe.batch(["a", "b"], cancel=[stop])
    chunks = list(pipe.stream("fourth", cancel=stop, max_new_tokens=20))
    assert chunks[-1].response.completion_tokens <= 1


def test_readme_serving_section_matches_the_defaults():
    """The README's limits table and stream_mode default are the code's (a doc that drifts gets caught)."""
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = readme[readme.index("### Serving") : readme.index("## Notebooks")]
    defaults = ServeArguments()
    rows = [line.split("|")[1:3] for line in section.splitlines() if line.startswith("| `")]
    checked = 0
    for name, default in rows:
        name = name.strip().strip("`")
        number = default.strip().split()[0].replace(",", "")
        if hasattr(defaults, name) and number.isdigit():
            assert getattr(defaults, name) == int(number), name
            checked += 1
    assert checked == 6
    assert f"`{defaults.stream_mode}` (the default)" in section
