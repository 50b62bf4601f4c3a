"""Prometheus metrics of one server (its own registry, so several apps can live in one process).

Names and labels only; no metric carries request or answer text.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics

from rlhf.responses import Response

disable_created_metrics()  # no *_created sample per series: half the lines, nothing a dashboard uses

# Seconds: from a rules check (~1 ms) to a long CPU generation (~minutes).
SECONDS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)


class ServerMetrics:
    def __init__(self, max_batch_size: int):
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "rlhf_requests",
            "HTTP requests answered, by route and status code",
            ["route", "status"],
            registry=r,
        )
        self.blocks = Counter(
            "rlhf_blocks",
            "Requests blocked by moderation, by side and category",
            ["side", "category"],
            registry=r,
        )
        self.step_seconds = Histogram(
            "rlhf_step_seconds",
            "Seconds per step of a chat request (queue, input_moderation, generation, output_moderation, total)",
            ["step"],
            buckets=SECONDS,
            registry=r,
        )
        sizes = sorted({1, 2, 4, 8, 16, 32, 64, max_batch_size})
        self.batch_size = Histogram(
            "rlhf_batch_size", "Requests per Pipeline.batch call", buckets=sizes, registry=r
        )
        self.queue_depth = Gauge("rlhf_queue_depth", "Jobs waiting for the model", registry=r)
        self.in_flight = Gauge("rlhf_requests_in_flight", "/v1 requests being served", registry=r)
        self.prompt_tokens = Counter("rlhf_prompt_tokens", "Prompt tokens of answered requests", registry=r)
        self.completion_tokens = Counter("rlhf_completion_tokens", "Tokens generated", registry=r)
        self.cancelled = Counter(
            "rlhf_cancelled", "Requests whose generation was cancelled, by reason", ["reason"], registry=r
        )

    def observe_response(self, response: Response, queue_s: float | None = None) -> None:
        if response.status != "answered":
            side = "input" if response.status == "blocked_input" else "output"
            for category in response.flagged_categories or ["unspecified"]:
                self.blocks.labels(side, category).inc()
        for step in ("input_moderation", "generation", "output_moderation", "total"):
            if step in response.timings:
                self.step_seconds.labels(step).observe(response.timings[step])
        if queue_s is not None:
            self.step_seconds.labels("queue").observe(queue_s)
        self.prompt_tokens.inc(response.prompt_tokens)
        self.completion_tokens.inc(response.completion_tokens)

    def observe_batch(self, size: int, waits: list[float]) -> None:
        self.batch_size.observe(size)
        for wait in waits:
            self.step_seconds.labels("queue").observe(wait)
