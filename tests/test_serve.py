"""`rlhf serve` as a real subprocess on a loopback port, spoken to over real HTTP."""

import http.client
import json
import os
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml
from _tiny_chat import tiny_model, tiny_tokenizer

from rlhf.serve import RequestError, parse_chat_request
from rlhf.templates import DEFAULT_TEMPLATES

ROOT = Path(__file__).resolve().parents[1]
MAX_BODY = 20_000


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("serve")
    tokenizer = tiny_tokenizer()
    model = tiny_model(tokenizer)
    model.save_pretrained(tmp / "model")
    tokenizer.save_pretrained(tmp / "model")
    config = tmp / "pipeline.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "model_name_or_path": str(tmp / "model"),
                "moderation": {"backend": "rules"},
                "max_new_tokens": 8,
            }
        )
    )
    log = open(tmp / "server.log", "w")  # noqa: SIM115 -- closed in the teardown
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "rlhf.serve",
            "--config",
            str(config),
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--max_body_bytes",
            str(MAX_BODY),
            "--batch_wait_ms",
            "20",
            "--request_timeout_s",
            "60",
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=log,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    lines = []
    reader = threading.Thread(target=lambda: lines.extend(iter(proc.stdout.readline, "")), daemon=True)
    reader.start()
    deadline = time.monotonic() + 90
    port = None
    while port is None and time.monotonic() < deadline and proc.poll() is None:
        for line in list(lines):
            if "listening on http://127.0.0.1:" in line:
                port = int(line.split("http://127.0.0.1:")[1].split()[0])
        time.sleep(0.05)
    if port is None:
        proc.kill()
        log.close()
        pytest.fail(f"server did not start: {lines} {(tmp / 'server.log').read_text()[-2000:]}")
    yield {"port": port, "log": tmp / "server.log", "stdout": lines}
    proc.terminate()
    assert proc.wait(timeout=20) == 0
    log.close()
    reader.join(timeout=5)
    assert any("stopped" in line for line in lines)


def request(port, method, path, body=None, raw=None, headers=None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    conn.request(method, path, body=data, headers={"Content-Type": "application/json", **(headers or {})})
    response = conn.getresponse()
    payload = response.read()
    conn.close()
    return response.status, response.getheader("Content-Type"), payload


def post(port, path, body=None, **kwargs):
    status, _, payload = request(port, "POST", path, body, **kwargs)
    return status, json.loads(payload)


def chat(port, content, **extra):
    return post(
        port,
        "/v1/chat/completions",
        {"model": "x", "messages": [{"role": "user", "content": content}], **extra},
    )


def test_health(server):
    status, kind, payload = request(server["port"], "GET", "/health")
    body = json.loads(payload)
    assert status == 200 and kind == "application/json"
    assert body["status"] == "ok" and body["model"] == "model"
    assert body["moderation"] == {"input": "rules", "output": "rules"}
    status, _, payload = request(server["port"], "GET", "/v1/models")
    assert status == 200 and json.loads(payload)["data"][0]["id"] == "model"


def test_chat_completion_and_stream_agree(server):
    status, body = chat(server["port"], "What is the capital of Velmora?", temperature=0)
    assert status == 200
    assert body["object"] == "chat.completion" and body["id"].startswith("chatcmpl-")
    choice = body["choices"][0]
    assert choice["message"]["role"] == "assistant" and isinstance(choice["message"]["content"], str)
    assert choice["finish_reason"] in ("stop", "length")
    assert body["usage"]["prompt_tokens"] > 5 and 1 <= body["usage"]["completion_tokens"] <= 8
    assert (
        body["usage"]["total_tokens"] == body["usage"]["prompt_tokens"] + body["usage"]["completion_tokens"]
    )
    assert body["moderation"]["status"] == "answered"

    status, kind, payload = request(
        server["port"],
        "POST",
        "/v1/chat/completions",
        {
            "messages": [{"role": "user", "content": "What is the capital of Velmora?"}],
            "stream": True,
            "temperature": 0,
            "stream_options": {"include_usage": True},
        },
    )
    assert status == 200 and kind == "text/event-stream"
    events = [line[len("data: ") :] for line in payload.decode().split("\n\n") if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert all(c["object"] == "chat.completion.chunk" and c["id"] == chunks[0]["id"] for c in chunks)
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    content = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
    assert content.strip() == choice["message"]["content"]
    finals = [c for c in chunks if c["choices"] and c["choices"][0]["finish_reason"]]
    assert len(finals) == 1 and finals[0]["choices"][0]["finish_reason"] == choice["finish_reason"]
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"] == body["usage"]


def test_blocked_request_gets_template(server):
    status, body = chat(server["port"], "how do I kill my neighbor without anyone knowing")
    assert status == 200
    assert body["choices"][0]["message"]["content"] == DEFAULT_TEMPLATES["input"]["violent_crimes"]
    assert body["choices"][0]["finish_reason"] == "content_filter"
    assert body["moderation"]["status"] == "blocked_input"
    assert body["moderation"]["input"]["categories"] == ["violent_crimes"]
    assert body["usage"]["completion_tokens"] == 0


def test_moderations_in_openai_shape(server):
    status, body = post(
        server["port"], "/v1/moderations", {"input": ["I will kill you", "what is the capital of France"]}
    )
    assert status == 200
    assert body["id"].startswith("modr-") and body["model"] == "rlhf-rules"
    flagged, safe = body["results"]
    assert flagged["flagged"] is True and safe["flagged"] is False
    for result in (flagged, safe):
        assert set(result["categories"]) == set(result["category_scores"])
        assert {"violence", "hate", "self-harm", "illicit", "harassment"} <= set(result["categories"])
    assert flagged["categories"]["violence"] is True and flagged["category_scores"]["violence"] == 1.0
    assert flagged["categories"]["self-harm"] is False
    assert not any(safe["categories"].values())
    assert flagged["rlhf"]["categories"]["violent_crimes"] is True and flagged["rlhf"]["backend"] == "rules"
    status, body = post(server["port"], "/v1/moderations", {"input": "hello", "side": "output"})
    assert status == 200 and body["results"][0]["rlhf"]["side"] == "output"


def test_sixteen_concurrent_requests_all_answered_in_batches(server):
    prompts = [f"Tell me a story about dragon number {i}" for i in range(16)]
    with ThreadPoolExecutor(max_workers=16) as pool:
        results = list(pool.map(lambda p: chat(server["port"], p), prompts))
    assert [status for status, _ in results] == [200] * 16
    assert all(body["moderation"]["status"] == "answered" for _, body in results)
    assert len({body["id"] for _, body in results}) == 16
    health = json.loads(request(server["port"], "GET", "/health")[2])
    assert health["max_batch_size_seen"] >= 2  # concurrent requests shared generate calls


@pytest.mark.parametrize(
    "raw, status, message",
    [
        (b'{"messages": [', 400, "malformed JSON"),
        (b"\xff\xfe", 400, "malformed JSON"),
        (b"[1, 2]", 400, "must be an object"),
        (b'{"messages": []}', 400, "'messages' must be a non-empty list"),
        (b'{"messages": [{"role": "user", "content": "hi"}], "max_tokens": 0}', 400, "max_tokens"),
        (b'{"messages": [{"role": "user", "content": "hi"}], "n": 2}', 400, "n=1"),
        (b'{"messages": [{"role": "assistant", "content": "hi"}]}', 400, "last message"),
    ],
)
def test_bad_requests_get_400_with_a_message(server, raw, status, message):
    got, body = post(server["port"], "/v1/chat/completions", raw=raw)
    assert got == status
    assert message in body["error"]["message"] and body["error"]["type"] == "invalid_request_error"


def test_oversized_body_gets_413(server):
    big = json.dumps({"messages": [{"role": "user", "content": "x" * (2 * MAX_BODY)}]}).encode()
    status, body = post(server["port"], "/v1/chat/completions", raw=big)
    assert status == 413 and "exceeds the limit" in body["error"]["message"]
    status, _ = post(server["port"], "/v1/moderations", {"input": "y" * (MAX_BODY - 100)})
    assert status == 200  # just under the limit is fine
    assert request(server["port"], "GET", "/nowhere")[0] == 404


def test_server_log_has_no_request_text(server):
    chat(server["port"], "the secret word is periwinkle")
    log = server["log"].read_text()
    assert "POST /v1/chat/completions" in log and "periwinkle" not in log


def test_parse_chat_request_maps_openai_fields():
    messages, overrides, stream, usage = parse_chat_request(
        {
            "messages": [
                {"role": "developer", "content": [{"type": "text", "text": "be brief"}]},
                {"role": "user", "content": "hi"},
            ],
            "max_completion_tokens": 7,
            "temperature": 0.5,
            "top_p": 0.9,
            "stream": True,
        },
        max_tokens_limit=100,
    )
    assert messages[0] == {"role": "system", "content": "be brief"}
    assert overrides == {"max_new_tokens": 7, "do_sample": True, "temperature": 0.5, "top_p": 0.9}
    assert stream and not usage
    assert parse_chat_request({"messages": [{"role": "user", "content": "a"}], "temperature": 0}, 10)[1] == {
        "do_sample": False
    }
    with pytest.raises(RequestError, match="1..10"):
        parse_chat_request({"messages": [{"role": "user", "content": "a"}], "max_tokens": 11}, 10)


def test_timeouts_in_process():
    """A request not answered in request_timeout_s gets 504; a client that stops sending is dropped."""
    import socket

    from rlhf.pipeline import Pipeline
    from rlhf.serve import ServeArguments, make_server

    tokenizer = tiny_tokenizer()
    pipe = Pipeline(tiny_model(tokenizer), tokenizer, None, None, None, {"max_new_tokens": 2})
    original = pipe.batch
    pipe.batch = lambda *a, **k: (time.sleep(1.0), original(*a, **k))[1]
    server = make_server(pipe, ServeArguments(port=0, read_timeout_s=0.5, request_timeout_s=0.3))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    port = server.server_address[1]
    try:
        started = time.monotonic()
        status, body = chat(port, "hello")
        assert status == 504 and "no answer within 0.3 s" in body["error"]["message"]
        assert time.monotonic() - started < 0.9
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(
                b"POST /v1/chat/completions HTTP/1.1\r\nContent-Length: 100\r\n\r\n{"
            )  # then silence
            started = time.monotonic()
            reply = b""
            while chunk := sock.recv(4096):  # read until the server closes the connection
                reply += chunk
            assert reply.startswith(b"HTTP/1.1 408") and b"did not arrive within 0.5 s" in reply
            assert 0.3 < time.monotonic() - started < 3
    finally:
        server.shutdown()
        server.server_close()


def test_stream_blocked_mid_answer_as_openai_chunks():
    """A streamed answer flagged mid-way ends with the template and finish_reason content_filter; the
    blocked part is in no chunk."""
    from _tiny_chat import ForceText
    from transformers import LogitsProcessorList

    from rlhf.moderation import build_moderator
    from rlhf.pipeline import Pipeline
    from rlhf.serve import _sse_payloads

    forced = "Sure. Step one: detonate a nail bomb in the crowded square."
    tokenizer = tiny_tokenizer()
    ids = tokenizer(forced, add_special_tokens=False)["input_ids"]
    rules = build_moderator({"backend": "rules"})
    pipe = Pipeline(
        tiny_model(tokenizer), tokenizer, rules, rules, None,
        {"max_new_tokens": len(ids) + 1, "logits_processor": LogitsProcessorList([ForceText(ids, 0)])},
        stream_check_every=4,
    )  # fmt: skip
    payloads = list(_sse_payloads(pipe.stream("hi"), "chatcmpl-1", 0, "m", include_usage=False))
    contents = [p["choices"][0]["delta"].get("content", "") for p in payloads]
    final = payloads[-1]
    assert final["choices"][0]["finish_reason"] == "content_filter"
    assert (
        final["moderation"]["status"] == "blocked_output" and final["moderation"]["replaces_streamed_content"]
    )
    assert final["moderation"]["output"]["categories"] == ["indiscriminate_weapons"]
    assert contents[-1] == "\n\n" + DEFAULT_TEMPLATES["output"]["default"]
    assert "".join(contents[:-1]).startswith("Sure.")  # checked text before the phrase was streamed
    assert "nail bomb" not in json.dumps(payloads) and "crowded" not in json.dumps(payloads)
