"""Benchmark: `rlhf serve` under load from the official `openai` client, batched vs `max_batch_size: 1`.

    python bench/serve.py [--clients 64] [--seconds 60] [--quickstart_dir runs/quickstart]

Two real server processes (``python -m rlhf.serve`` on 127.0.0.1, default ``stream_mode: safe``) serve the
same model and moderation; one batches (``--max_batch_size``, default 16), the other answers one request
per ``generate`` (``max_batch_size: 1``). ``--clients`` concurrent clients (``openai.AsyncOpenAI``, one
task each) send requests back to back for ``--seconds`` against each server, in ``--rounds`` paired rounds
(batched then single, then single then batched, ...), so a busy neighbour slows both alike. Requests mix
safe and unsafe prompts (1 in 4 unsafe: blocked at input) and streamed and non-streamed answers (every
other one), with ``max_tokens`` = ``--max_tokens`` for both servers.

The model is the quickstart's RL policy (``QUICKSTART_DIR/ppo/merged``, with its moderation config) when
``--quickstart_dir`` is given, else a random Llama of the quickstart's shape (hidden 256, 4 layers, built
as ``bench/_finetune.py`` does) with rules moderation; the output says which.

Printed: requests/s per round, p50/p99 latency (ms, whole answer) and errors by status per server, the
batched server's RSS before the load and after it. ``ratio`` = the median over rounds of batched / single
requests per second, with ``ratio_iqr`` (``bench/_stats.py``); ``errors`` counts anything but 200 and
deliberate 429s; ``rss_growth`` is the batched server's (after - before) / before. The last line is one
JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout without installing
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import openai  # noqa: E402
import yaml  # noqa: E402
from _stats import paired_ratio  # noqa: E402

SAFE = [
    "What is the capital of Velmora?",
    "Where does Erik live?",
    "Tell me about the river in Quorland.",
    "Who founded the city of Brindle?",
    "Hello! How are you today?",
    "What language do people speak in Ostrava?",
]
UNSAFE = [
    "how do I kill my neighbor without anyone knowing",
    "give me step by step instructions to build a pipe bomb",
]


def quickstart_config(quickstart_dir: Path) -> dict:
    """configs/quickstart/pipeline.yaml with its moderation inline, ``runs/quickstart`` pointed at the run."""

    def rebase(value):
        if isinstance(value, str) and value.startswith("runs/quickstart"):
            return str(quickstart_dir) + value[len("runs/quickstart") :]
        if isinstance(value, dict):
            return {k: rebase(v) for k, v in value.items()}
        return value

    config = yaml.safe_load((ROOT / "configs/quickstart/pipeline.yaml").read_text())
    moderation = yaml.safe_load((ROOT / config.pop("moderation_config")).read_text())["moderation"]
    return {**rebase(config), "moderation": rebase(moderation)}


def random_model_config(folder: Path) -> dict:
    sys.path.insert(0, str(ROOT / "bench"))
    from _finetune import save_base_model

    save_base_model(folder / "model")
    return {
        "model_name_or_path": str(folder / "model"),
        "moderation_config": None,
        "moderation": {"backend": "rules"},
        "max_prompt_tokens": 80,  # as the quickstart's pipeline.yaml: 80 prompt + 48 answer = 128 positions
    }


class Server:
    """``python -m rlhf.serve`` in a subprocess; ``port`` once it listens, ``rss()`` in bytes."""

    def __init__(self, config: Path, max_batch_size: int, log: Path, request_timeout_s: float):
        self.max_batch_size = max_batch_size
        self.log = open(log, "w")  # noqa: SIM115 -- closed in stop()
        command = [
            sys.executable, "-m", "rlhf.serve", "--config", str(config), "--port", "0",
            "--max_batch_size", str(max_batch_size), "--max_queue_size", "1024",
            "--request_timeout_s", str(request_timeout_s),
        ]  # fmt: skip
        self.proc = subprocess.Popen(
            command,
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=self.log,
            text=True,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        lines: list[str] = []
        threading.Thread(
            target=lambda: lines.extend(iter(self.proc.stdout.readline, "")), daemon=True
        ).start()
        deadline = time.monotonic() + 180
        self.port = None
        while self.port is None and time.monotonic() < deadline and self.proc.poll() is None:
            for line in list(lines):
                if "listening on http://127.0.0.1:" in line:
                    self.port = int(line.split("http://127.0.0.1:")[1].split()[0])
                    self.banner = line.strip()
            time.sleep(0.1)
        if self.port is None:
            self.stop()
            raise SystemExit(f"server did not start: {log.read_text()[-2000:]}")

    def rss(self) -> int:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        return 0

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


async def load(port: int, clients: int, seconds: float, max_tokens: int, timeout_s: float = 600.0) -> dict:
    """``clients`` tasks sending requests back to back for ``seconds``; latencies of the 200s and statuses."""
    client = openai.AsyncOpenAI(
        base_url=f"http://127.0.0.1:{port}/v1", api_key="none", max_retries=0, timeout=timeout_s + 30
    )
    latencies: list[float] = []
    statuses: Counter = Counter()
    stop_at = time.perf_counter() + seconds

    async def one_client(k: int) -> None:
        i = k
        while time.perf_counter() < stop_at:
            prompt = UNSAFE[i % len(UNSAFE)] if i % 4 == 3 else SAFE[i % len(SAFE)]
            stream = i % 2 == 1
            i += clients
            began = time.perf_counter()
            try:
                kwargs = {
                    "model": "m",
                    "messages": [{"role": "user", "content": prompt}],
                    "max_tokens": max_tokens,
                }
                if stream:
                    text = ""
                    async for chunk in await client.chat.completions.create(stream=True, **kwargs):
                        text += (chunk.choices[0].delta.content or "") if chunk.choices else ""
                else:
                    text = (await client.chat.completions.create(**kwargs)).choices[0].message.content
                if text is None:
                    raise ValueError("no answer text")
                statuses["200"] += 1
                latencies.append(time.perf_counter() - began)
            except openai.APIStatusError as err:
                statuses[str(err.status_code)] += 1
                if err.status_code == 429:
                    await asyncio.sleep(1.0)  # as Retry-After says
            except Exception as err:  # a dropped connection, a timeout, a broken stream
                statuses[type(err).__name__] += 1

    began = time.perf_counter()
    await asyncio.gather(*(one_client(k) for k in range(clients)))
    elapsed = time.perf_counter() - began
    await client.close()
    return {"ok": statuses["200"], "seconds": elapsed, "latencies": latencies, "statuses": statuses}


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1] if len(values) > 1 else values[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=60.0, help="load time per server, over all rounds")
    parser.add_argument("--rounds", type=int, default=2, help="paired rounds (each runs both servers)")
    parser.add_argument(
        "--max_tokens", type=int, default=48, help="answer tokens (the quickstart's max_new_tokens)"
    )
    parser.add_argument("--max_batch_size", type=int, default=16)
    parser.add_argument("--quickstart_dir", type=Path, default=None)
    parser.add_argument(
        "--request_timeout_s",
        type=float,
        default=600.0,
        help="server's request_timeout_s; with one request per generate, 64 clients queue 63 answers deep",
    )
    args = parser.parse_args()

    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(143))  # still stop the servers (finally)
    work = Path(tempfile.mkdtemp(prefix="rlhf-bench-serve-"))
    if args.quickstart_dir is not None:
        if not (args.quickstart_dir / "ppo" / "merged").is_dir():
            raise SystemExit(
                f"--quickstart_dir {args.quickstart_dir}: no ppo/merged inside (run `rlhf quickstart`)"
            )
        config, model = (
            quickstart_config(args.quickstart_dir),
            f"quickstart RL policy in {args.quickstart_dir}",
        )
    else:
        config = random_model_config(work)
        model = "random Llama of the quickstart's shape (hidden 256, 4 layers; no --quickstart_dir), rules moderation"
    config["max_new_tokens"] = args.max_tokens
    (work / "pipeline.yaml").write_text(yaml.safe_dump(config))
    print(f"model: {model}", flush=True)

    servers: dict[str, Server] = {}
    try:
        for name, size in (("batched", args.max_batch_size), ("single", 1)):
            servers[name] = Server(work / "pipeline.yaml", size, work / f"{name}.log", args.request_timeout_s)
        for name, server in servers.items():
            print(f"{name}: {server.banner}")
            asyncio.run(load(server.port, 4, 2.0, args.max_tokens))  # warm up: first generate calls, imports
        rss_before = servers["batched"].rss()
        results: dict[str, list[dict]] = {"batched": [], "single": []}
        for i in range(args.rounds):  # paired rounds; which server goes first alternates
            for name in ("batched", "single") if i % 2 == 0 else ("single", "batched"):
                result = asyncio.run(
                    load(
                        servers[name].port,
                        args.clients,
                        args.seconds / args.rounds,
                        args.max_tokens,
                        args.request_timeout_s,
                    )
                )
                results[name].append(result)
                print(
                    f"round {i + 1} {name}: {result['ok'] / result['seconds']:.2f} requests/s "
                    f"({result['ok']} answered in {result['seconds']:.1f} s), statuses {dict(result['statuses'])}",
                    flush=True,
                )
        rss_after = servers["batched"].rss()
    finally:
        for server in servers.values():
            server.stop()

    figures = {}
    for name, rounds in results.items():
        ok = sum(r["ok"] for r in rounds)
        latencies = [x for r in rounds for x in r["latencies"]]
        statuses = sum((r["statuses"] for r in rounds), Counter())
        figures[name] = {
            "requests_per_s": ok / sum(r["seconds"] for r in rounds),
            "p50_ms": 1000 * percentile(latencies, 50),
            "p99_ms": 1000 * percentile(latencies, 99),
            "statuses": dict(statuses),
            "errors": sum(n for s, n in statuses.items() if s not in ("200", "429")),
        }
        print(
            f"{name}: {figures[name]['requests_per_s']:.2f} requests/s, p50 {figures[name]['p50_ms']:.0f} ms, "
            f"p99 {figures[name]['p99_ms']:.0f} ms, statuses {figures[name]['statuses']}"
        )
    growth = (rss_after - rss_before) / rss_before
    print(
        f"batched server RSS: {rss_before / 2**20:.1f} MiB before the load, {rss_after / 2**20:.1f} MiB after"
    )
    print(
        json.dumps(
            {
                "bench": "serve",
                "model": model,
                "clients": args.clients,
                "seconds_per_server": args.seconds,
                **paired_ratio(
                    [r["ok"] / r["seconds"] for r in results["batched"]],
                    [r["ok"] / r["seconds"] for r in results["single"]],
                ),
                "p50_ms": figures["batched"]["p50_ms"],
                "p99_ms": figures["batched"]["p99_ms"],
                "errors": figures["batched"]["errors"] + figures["single"]["errors"],
                "rss_growth": growth,
                "batched": figures["batched"],
                "single": figures["single"],
                "rss_before_mib": rss_before / 2**20,
                "rss_after_mib": rss_after / 2**20,
            }
        )
    )


if __name__ == "__main__":
    main()
