"""Bookkeeping the SFT, reward and RL stages share: starting a run directory, curves, the model card's data."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rlhf.config import save_config
from rlhf.runs import METRICS_FILE, prepare_output_dir


def start_run(output_dir: str | os.PathLike, overwrite: bool, is_main_process: bool, *configs: Any) -> Path:
    """Create ``output_dir`` (refusing a finished run unless ``overwrite``) and write the resolved config.

    Every process calls it, so all of them stop on a refusal; only the main process writes. An overwritten
    run loses its ``metrics.json`` first: it is not finished again until this run writes its own.
    """
    path = prepare_output_dir(output_dir, overwrite)
    if is_main_process:
        (path / METRICS_FILE).unlink(missing_ok=True)
        save_config(path, *configs)
    return path


def curves(
    log_history: Sequence[dict[str, Any]], names: dict[str, str]
) -> dict[str, list[tuple[float, float]]]:
    """``{label: [(step, value), ...]}`` for each ``{log key: label}`` found in a Trainer's ``log_history``."""
    out: dict[str, list[tuple[float, float]]] = {}
    for key, label in names.items():
        points = [(float(e.get("step", i)), float(e[key])) for i, e in enumerate(log_history) if key in e]
        if points:
            out[label] = points
    return out


def hub_datasets(dataset_name: str) -> list[str]:
    """The model card's ``datasets`` entry: a Hub id, nothing for the built-in task or local files."""
    if dataset_name == "builtin" or os.path.exists(dataset_name):
        return []
    return [dataset_name]


def last_logged(log_history: Sequence[dict[str, Any]], key: str) -> float | None:
    """The last value logged under ``key`` (None if never)."""
    values = [e[key] for e in log_history if key in e]
    return float(values[-1]) if values else None


# What a stage's run directory holds that is not part of the published model: working state, and merged/
# (a full copy of the weights; `rlhf push RUN_DIR --merged` publishes that one instead of the adapter).
HUB_IGNORE = ["merged/*", "checkpoint-*/*", "*.tmp", "training_args.bin", "hub_upload/*"]


def defer_hub_push(training_args) -> bool:
    """Take ``push_to_hub`` away from the TRL trainer and return whether the stage should push at the end.

    A ``Trainer`` with ``push_to_hub`` creates the Hub repository when it is built and pushes on every save,
    each time with its own model card. The stage instead pushes the finished run directory once, after
    ``metrics.json``, with its model card (metrics, samples, config): see `push_run`. Call `restore_hub_push`
    once the trainer is done, so the config written into the model card says what the user asked for.
    """
    asked = bool(training_args.push_to_hub)
    training_args.push_to_hub = False
    return asked


def restore_hub_push(training_args, asked: bool) -> None:
    """Undo `defer_hub_push` on the config object (for the model card's training configuration)."""
    training_args.push_to_hub = asked


def push_run(output_dir: str | os.PathLike, training_args) -> str:
    """Upload a finished run directory to the Hub as ``TrainingArguments`` describe it; returns the repo id.

    The repository is ``hub_model_id`` (default: the output directory's name under the token's user), created
    if needed with ``hub_private_repo``, with ``hub_token`` and ``hub_revision``. Uploaded: the adapter (or full
    model), tokenizer, plots, ``config.yaml``, ``metrics.json``, samples and the model card; not ``merged/``.
    """
    from huggingface_hub import HfApi

    api = HfApi(token=training_args.hub_token)
    name = training_args.hub_model_id or Path(output_dir).absolute().name
    repo_id = api.create_repo(name, private=training_args.hub_private_repo, exist_ok=True).repo_id
    api.upload_folder(
        repo_id=repo_id,
        folder_path=str(output_dir),
        revision=training_args.hub_revision,
        commit_message=f"rlhf: upload {Path(output_dir).name}",
        ignore_patterns=HUB_IGNORE,
    )
    print(f"pushed {output_dir} to https://huggingface.co/{repo_id}")
    return repo_id


def reset_accelerate_state() -> None:
    """Forget this run's accelerate settings so a later stage in the same process can make its own Accelerator.

    ``rlhf quickstart`` runs every stage in one process, and accelerate's state is a process-wide singleton.
    """
    from accelerate.state import AcceleratorState, GradientState

    AcceleratorState._reset_state(reset_partial_state=True)
    GradientState._reset_state()
