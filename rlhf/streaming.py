"""Streaming an answer that output moderation checks before any of it is shown.

:class:`ModeratedStreamer` is the ``streamer`` of a ``model.generate`` call: it collects the generated tokens
and, every ``check_every`` new tokens, moderates the answer so far (the unreleased tokens plus an overlap of
released ones); text is released only once a check passed it, and a check that flags stops generation.
`rlhf.pipeline.Pipeline.stream` uses it and checks the whole answer once more at the end.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from rlhf.moderation.base import ModerationResult


class ModeratedStreamer:
    """Receives tokens from ``model.generate`` (in the generation thread) and releases text only after output
    moderation passed it; :meth:`run` starts generation in a thread and yields the released text.

    Args:
        conversation: the request; each check moderates it with the answer so far as the last message.
        moderate: checks one such conversation on side "output"; returns a result or None (no moderator).
        decode: token ids -> text.
        check_every: check (and release) every this many new tokens.
        overlap: already released tokens checked again with each window (a phrase split across two
            windows is seen whole).
    """

    def __init__(
        self,
        conversation: list[dict[str, str]],
        moderate: Callable[[list[dict[str, str]]], ModerationResult | None],
        decode: Callable[[list[int]], str],
        check_every: int,
        overlap: int,
    ):
        self.conversation, self.moderate, self.decode = conversation, moderate, decode
        self.check_every, self.overlap = max(1, check_every), max(0, overlap)
        self.events: queue.Queue = queue.Queue()
        self.stop = threading.Event()  # set when a check flags, or when the consumer stops early
        self.prompt_seen = False
        self.tokens: list[int] = []
        self.released_tokens = 0
        self.released_chars = 0
        self.flagged: ModerationResult | None = None
        self.moderation_s = 0.0

    def run(self, generate_fn: Callable[[], Any]) -> Iterator[str]:
        """Run ``generate_fn`` (a ``model.generate`` call with this streamer) in a thread; yield released text.
        An error in generation is raised here; generation stops when the caller stops iterating."""

        def target() -> None:
            try:
                generate_fn()
                self.events.put(("done", None))
            except BaseException as err:  # handed to the consumer, which re-raises it
                self.events.put(("error", err))

        thread = threading.Thread(target=target, name="rlhf-pipeline-generate", daemon=True)
        thread.start()
        try:
            while True:
                kind, payload = self.events.get()
                if kind == "error":
                    raise payload
                if kind == "done":
                    return
                yield payload
        finally:
            self.stop.set()  # also ends generation when the caller stops iterating early
            thread.join()

    def put(self, value) -> None:
        if not self.prompt_seen:  # generate() first hands over the prompt
            self.prompt_seen = True
            return
        if self.stop.is_set():
            return
        self.tokens.extend(int(t) for t in value.reshape(-1).tolist())
        if len(self.tokens) - self.released_tokens >= self.check_every:
            self.check_and_release()

    def end(self) -> None:
        pass  # the caller checks the whole answer, then releases the rest with take_pending()

    def text(self) -> str:
        return self.decode(self.tokens)

    def check_and_release(self) -> None:
        """Moderate the held-back tokens plus an overlap of released ones; release them or stop."""
        start = max(0, self.released_tokens - self.overlap)
        window = self.decode(self.tokens[start:])
        if not window.strip():  # only whitespace so far: nothing to check or show yet
            return
        item = [*self.conversation, {"role": "assistant", "content": window}]
        began = time.perf_counter()
        result = self.moderate(item)
        self.moderation_s += time.perf_counter() - began
        if result is not None and result.flagged:
            self.flagged = result
            self.stop.set()
            return
        pending = self.take_pending(self.text())
        if pending:
            self.events.put(("text", pending))

    def take_pending(self, full_text: str) -> str:
        """The part of ``full_text`` not released yet (minus an unfinished UTF-8 character), marked released."""
        full_text = full_text.lstrip()
        pending = full_text[self.released_chars :].rstrip("\ufffd")
        self.released_tokens = len(self.tokens)
        self.released_chars += len(pending)
        return pending
