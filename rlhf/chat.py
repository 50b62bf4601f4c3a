"""A terminal chat over the moderated pipeline.

    rlhf chat --config configs/quickstart/pipeline.yaml

Type a message and press Enter; the answer streams as it passes output moderation. When moderation
blocks your message or the model's answer, a line says so (which side, which categories, which
backend) and the template response follows; blocked turns are left out of the conversation history.
Commands: ``/reset`` (start a new conversation), ``/exit`` (or end of input, Ctrl-D), ``/help``.
Reads standard input line by line, so ``printf 'hello\\n/exit\\n' | rlhf chat ...`` works too.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import TextIO

from rlhf.config import run_cli
from rlhf.pipeline import Pipeline
from rlhf.pipeline_config import PipelineConfig
from rlhf.responses import PipelineError, Response

HELP = "commands: /reset (new conversation), /exit (quit), /help"


@dataclass
class ChatArguments:
    """
    Arguments of `rlhf chat` (the pipeline itself is configured by `PipelineConfig`'s keys).

    Args:
        stream (`bool`, *optional*, defaults to `True`):
            Print the answer as it is released (after output moderation), not all at the end.
        show_timings (`bool`, *optional*, defaults to `False`):
            After each answer, print the seconds each step took.
    """

    stream: bool = field(default=True, metadata={"help": "Print the answer as it is released."})
    show_timings: bool = field(default=False, metadata={"help": "Print each step's seconds after an answer."})


def block_notice(pipe: Pipeline, response: Response) -> str:
    """One line saying which side was blocked, for which categories, by which backend (never the text)."""
    result = response.blocking_result
    names = pipe.templates.category_names
    categories = ", ".join(names.get(c, c) for c in response.flagged_categories) or "unspecified"
    what = "your message (input)" if response.status == "blocked_input" else "the answer (output)"
    backend = f" by {result.backend}" if result is not None else ""
    return f"[blocked {what}{backend}: {categories}]"


def chat_loop(
    pipe: Pipeline,
    stdin: TextIO | None = None,
    stdout: TextIO | None = None,
    stream: bool = True,
    show_timings: bool = False,
) -> dict[str, int]:
    """Run the chat until ``/exit`` or end of input; returns counts of turns per status.

    Reads one message per line from ``stdin`` and writes prompts, answers and block notices to ``stdout``.
    """
    stdin = stdin or sys.stdin
    stdout = stdout or sys.stdout
    write = stdout.write
    counts = {"turns": 0, "answered": 0, "blocked_input": 0, "blocked_output": 0}
    history: list[dict[str, str]] = []
    moderators = (
        f"input: {getattr(pipe.input_moderator, 'name', 'none')}, "
        f"output: {getattr(pipe.output_moderator, 'name', 'none')}"
    )
    write(f"Chatting with {pipe.name} through moderation ({moderators}). {HELP}\n")
    while True:
        write("you> ")
        stdout.flush()
        try:
            line = stdin.readline()
        except KeyboardInterrupt:
            line = ""
        if not line:  # end of input
            write("\n")
            break
        text = line.strip()
        if not text:
            continue
        if text.startswith("/"):
            command = text.split()[0].lower()
            if command in ("/exit", "/quit"):
                break
            if command == "/reset":
                history.clear()
                write("(new conversation)\n")
            elif command == "/help":
                write(HELP + "\n")
            else:
                write(f"unknown command {command}; {HELP}\n")
            continue

        messages = [*history, {"role": "user", "content": text}]
        write("assistant> ")
        try:
            response = _answer(pipe, messages, stdout, stream)
        except PipelineError as err:
            write(f"\n[error: {err}]\n")
            continue
        except KeyboardInterrupt:
            write("\n[interrupted]\n")
            continue
        write("\n")
        if show_timings:
            write("(" + ", ".join(f"{k} {v:.3f}s" for k, v in response.timings.items()) + ")\n")
        counts["turns"] += 1
        counts[response.status] += 1
        if response.status == "answered":
            history += [messages[-1], {"role": "assistant", "content": response.text}]
    stdout.flush()
    return counts


def _answer(pipe: Pipeline, messages, stdout: TextIO, stream: bool) -> Response:
    """Show one answer (streamed or whole) with a block notice where needed; returns the Response."""
    if not stream:
        response = pipe(messages)
        if response.blocked:
            stdout.write(block_notice(pipe, response) + "\n")
        stdout.write(response.text)
        return response
    shown = False
    for chunk in pipe.stream(messages):
        if chunk.final and chunk.blocked:
            if shown:
                stdout.write("\n")
            stdout.write(block_notice(pipe, chunk.response) + "\n" + chunk.text)
        elif chunk.text:
            stdout.write(chunk.text)
            shown = True
        stdout.flush()
        if chunk.final:
            return chunk.response
    raise RuntimeError("the pipeline's stream ended without a final chunk")


def main(pipeline_config: PipelineConfig, args: ChatArguments) -> dict:
    pipe = Pipeline.from_config(
        pipeline_config
    )  # a configuration mistake: a ConfigError, one line and exit 2
    return chat_loop(pipe, stream=args.stream, show_timings=args.show_timings)


def cli(argv=None):
    return run_cli(main, (PipelineConfig, ChatArguments), "rlhf chat", argv)


if __name__ == "__main__":
    cli()
