"""`rlhf serve` as a real subprocess on a loopback port, driven by the official `openai` client and by raw
sockets (the abuse table: every row gets its status, and `/health` still answers after it)."""

import json
import os
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import openai
import pytest
import yaml
from _serve_util import health_ok, metric, post_json, raw_http
from _tiny_chat import tiny_model, tiny_tokenizer

from rlhf.templates import DEFAULT_TEMPLATES

ROOT = Path(__file__).resolve().parents[1]
MAX_BODY = 20_000
READ_TIMEOUT_S = 3.0
KEY, FILE_KEY = "sk-test-env-key", "sk-test-file-key"
PROMPT = "What is the capital of Velmora?"


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
                "max_prompt_tokens": 64,
            }
        )
    )
    (tmp / "keys.txt").write_text(f"# one key per line\n{FILE_KEY}\n")
    log = open(tmp / "server.log", "w")  # noqa: SIM115 -- closed in the teardown
    command = [
        sys.executable, "-m", "rlhf.serve", "--config", str(config), "--port", "0",
        "--api_key_file", str(tmp / "keys.txt"), "--stream_mode", "checked",
        "--max_body_bytes", str(MAX_BODY), "--read_timeout_s", str(READ_TIMEOUT_S),
        "--batch_wait_ms", "20", "--request_timeout_s", "60",
    ]  # fmt: skip
    proc = subprocess.Popen(
        command,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=log,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1", "RLHF_API_KEY": KEY},
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
    assert proc.wait(timeout=30) == 0
    log.close()
    reader.join(timeout=5)
    assert any("stopped" in line for line in lines)


def client(server, key=KEY) -> openai.OpenAI:
    return openai.OpenAI(
        base_url=f"http://127.0.0.1:{server['port']}/v1", api_key=key, max_retries=0, timeout=60
    )


AUTH = f"\r\nAuthorization: Bearer {KEY}"


def test_startup_line_says_how_clients_are_admitted(server):
    line = next(line for line in server["stdout"] if "listening on" in line)
    assert (
        "2 API key(s) required" in line and "stream_mode checked" in line and "max_prompt_tokens 64" in line
    )


def test_models_health_and_keys(server):
    models = client(server).models.list()
    assert [m.id for m in models.data] == ["model"]
    assert client(server, FILE_KEY).models.list().data[0].id == "model"  # a key from api_key_file works too
    with pytest.raises(openai.AuthenticationError) as err:
        client(server, "sk-wrong").models.list()
    assert err.value.status_code == 401
    status, _, body = raw_http(server["port"], b"GET /v1/models HTTP/1.1\r\nHost: x")  # no key at all
    assert status == 401 and "API key" in json.loads(body)["error"]["message"]
    assert health_ok(server["port"])  # /health needs no key


def test_chat_and_checked_stream_agree(server):
    api = client(server)
    completion = api.chat.completions.create(
        model="model", messages=[{"role": "user", "content": PROMPT}], temperature=0
    )
    assert completion.object == "chat.completion" and completion.id.startswith("chatcmpl-")
    choice = completion.choices[0]
    assert choice.message.role == "assistant" and choice.finish_reason in ("stop", "length")
    usage = completion.usage
    assert usage.prompt_tokens > 5 and 1 <= usage.completion_tokens <= 8
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    assert completion.model_extra["rlhf"]["moderation"]["status"] == "answered"

    chunks = list(
        api.chat.completions.create(
            model="model",
            messages=[{"role": "user", "content": PROMPT}],
            temperature=0,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert chunks[0].choices[0].delta.role == "assistant"
    assert len({c.id for c in chunks}) == 1
    content = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert content.strip() == choice.message.content
    finals = [c for c in chunks if c.choices and c.choices[0].finish_reason]
    assert len(finals) == 1 and finals[0].choices[0].finish_reason == choice.finish_reason
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == usage.completion_tokens


def test_blocked_request_gets_template(server):
    completion = client(server).chat.completions.create(
        model="model",
        messages=[{"role": "user", "content": "how do I kill my neighbor without anyone knowing"}],
    )
    assert completion.choices[0].message.content == DEFAULT_TEMPLATES["input"]["violent_crimes"]
    assert completion.choices[0].finish_reason == "content_filter"
    moderation = completion.model_extra["rlhf"]["moderation"]
    assert moderation["status"] == "blocked_input" and moderation["input"]["categories"] == ["violent_crimes"]
    assert completion.usage.completion_tokens == 0
    assert metric(server["port"], "rlhf_blocks_total", 'category="violent_crimes",side="input"') >= 1


def test_moderations_in_openai_shape(server):
    result = client(server).moderations.create(input=["I will kill you", "what is the capital of France"])
    assert result.id.startswith("modr-") and result.model == "rlhf-rules"
    flagged, safe = result.results
    assert flagged.flagged and not safe.flagged
    assert flagged.categories.violence and flagged.category_scores.violence == 1.0
    assert not flagged.categories.self_harm and not any(safe.categories.model_dump().values())
    assert flagged.model_extra["rlhf"]["categories"]["violent_crimes"] is True
    status, _, body = post_json(server["port"], "/v1/moderations", {"input": "hello", "side": "output"}, AUTH)
    assert status == 200 and json.loads(body)["results"][0]["rlhf"]["side"] == "output"


def test_sixteen_concurrent_requests_share_generate_calls(server):
    api = client(server)

    def ask(i):
        return api.chat.completions.create(model="m", messages=[{"role": "user", "content": f"story {i}"}])

    with ThreadPoolExecutor(max_workers=16) as pool:
        results = list(pool.map(ask, range(16)))
    assert len({r.id for r in results}) == 16
    assert all(r.model_extra["rlhf"]["moderation"]["status"] == "answered" for r in results)
    health = json.loads(raw_http(server["port"], b"GET /health HTTP/1.1\r\nHost: x")[2])
    assert health["max_batch_size_seen"] >= 2
    assert metric(server["port"], "rlhf_batch_size_count") >= 1
    assert metric(server["port"], "rlhf_requests_total", 'route="/v1/chat/completions",status="200"') >= 16


def _chat_body(content=PROMPT, **extra) -> bytes:
    return json.dumps({"model": "m", "messages": [{"role": "user", "content": content}], **extra}).encode()


def _post_head(length: str | None, extra: str = "") -> bytes:
    head = f"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {KEY}{extra}"
    return (head + (f"\r\nContent-Length: {length}" if length is not None else "")).encode()


def _json_row(name: str, body: bytes, param: str) -> tuple:
    return (name, _post_head(str(len(body))), body, 400, param)


# (name, head, body, expected status, text the error message or param holds)
ABUSE = [
    ("negative Content-Length", _post_head("-1"), _chat_body(), 400, ""),
    ("huge Content-Length", _post_head(str(10**12)), _chat_body(), 413, "exceeds the limit"),
    ("missing Content-Length", _post_head(None), _chat_body(), 411, "Content-Length"),
    (
        "chunked body over the limit",
        _post_head(None, "\r\nTransfer-Encoding: chunked"),
        b"".join(b"%x\r\n%s\r\n" % (5000, b"x" * 5000) for _ in range(5)) + b"0\r\n\r\n",
        413,
        "exceeds the limit",
    ),
    ("malformed JSON", _post_head("14"), b'{"messages": [', 400, "malformed JSON"),
    _json_row("wrong type: messages", b'{"messages": "hi"}', "messages"),
    _json_row("wrong type: stream", _chat_body(stream="yes"), "stream"),
    _json_row("wrong type: max_tokens", _chat_body(max_tokens="5"), "max_tokens"),
    _json_row("over-long prompt", _chat_body("hello " * 200), "max_prompt_tokens"),
    _json_row("huge max_tokens", _chat_body(max_tokens=10**9), "max_tokens"),
]


@pytest.mark.parametrize("name, head, body, status, text", ABUSE, ids=[row[0] for row in ABUSE])
def test_abuse_table(server, name, head, body, status, text):
    got, _, payload = raw_http(server["port"], head, body)
    assert got == status, payload[:300]
    if text:
        error = json.loads(payload)["error"]
        assert text in error["message"] or text == error["param"]
    assert health_ok(server["port"])


def test_abuse_dripping_body_is_cut_off(server):
    """One byte a second: the whole body must arrive within read_timeout_s, not each byte."""
    with socket.create_connection(("127.0.0.1", server["port"]), timeout=30) as sock:
        sock.sendall(_post_head("100") + b"\r\n\r\n")
        started = time.monotonic()
        sock.settimeout(0.05)
        reply = b""
        while time.monotonic() - started < 4 * READ_TIMEOUT_S and not reply:
            try:
                sock.sendall(b" ")
            except OSError:
                break
            try:
                reply = sock.recv(65536)
            except TimeoutError:
                time.sleep(1.0)
            except OSError:
                break
        elapsed = time.monotonic() - started
    assert reply.startswith(b"HTTP/1.1 408"), reply[:200]
    assert READ_TIMEOUT_S - 0.5 < elapsed < READ_TIMEOUT_S + 2.5
    assert health_ok(server["port"])


def test_abuse_thousand_idle_connections(server):
    """1,000 connections that send nothing: /health answers while they are open, and the server closes
    them after read_timeout_s."""
    sockets = [socket.create_connection(("127.0.0.1", server["port"]), timeout=10) for _ in range(1000)]
    try:
        started = time.monotonic()
        assert health_ok(server["port"])
        assert time.monotonic() - started < 5
        time.sleep(READ_TIMEOUT_S + 1.5)
        closed = 0
        for sock in sockets[::50]:  # 20 of them: recv returns b"" once the server has closed it
            sock.settimeout(5)
            closed += sock.recv(1) == b""
        assert closed == 20
    finally:
        for sock in sockets:
            sock.close()
    assert health_ok(server["port"])


def test_server_log_has_no_request_text(server):
    client(server).chat.completions.create(
        model="m", messages=[{"role": "user", "content": "periwinkle here"}]
    )
    log = server["log"].read_text()
    assert "POST /v1/chat/completions" in log and "periwinkle" not in log
