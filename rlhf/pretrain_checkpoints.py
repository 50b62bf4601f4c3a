"""Pretraining checkpoints: ``checkpoint-<step>`` directories written atomically, found again to resume.

A checkpoint holds what ``accelerator.save_state`` writes (model, optimizer, scheduler, every process's RNG)
plus :class:`TrainState` (``trainer_state.json``: step, data position, loss history), so a resumed run
continues exactly where the saved one stopped.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from accelerate import Accelerator

from rlhf.config import ConfigError

if TYPE_CHECKING:
    from rlhf.pretrain_args import PretrainArguments

STATE_FILE = "trainer_state.json"  # our part of a checkpoint: step, data position, loss history


@dataclass
class TrainState:
    """What the loop needs besides model/optimizer/scheduler/RNG to continue exactly."""

    step: int = 0  # optimizer steps done
    micro_step: int = 0  # global micro-batches consumed: the data position
    tokens_seen: int = 0  # training tokens processed, all processes together
    train_time_s: float = 0.0  # seconds spent in training steps (evaluation and checkpointing excluded)
    global_batch: int = 0  # blocks per global micro-batch; a resume must use the same
    fact_accuracy_untrained: float | None = None
    train_loss: list = field(default_factory=list)  # [(step, loss)]
    eval_loss: list = field(default_factory=list)  # [(step, loss)]

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(self.__dict__, indent=1))

    @classmethod
    def load(cls, path: Path) -> TrainState:
        return cls(**json.loads(path.read_text()))


def _checkpoints(output_dir: Path) -> list[Path]:
    """Complete checkpoints in ``output_dir``, oldest first (a killed save leaves only a ``.tmp`` dir)."""
    found = [p for p in output_dir.glob("checkpoint-*") if p.is_dir() and p.name.split("-")[-1].isdigit()]
    return sorted(found, key=lambda p: int(p.name.split("-")[-1]))


def resolve_checkpoint(resume_from_checkpoint: str | None, output_dir: Path) -> Path | None:
    """The checkpoint directory to resume from: ``"latest"`` -> the newest in ``output_dir`` (or None)."""
    if resume_from_checkpoint is None:
        return None
    if resume_from_checkpoint == "latest":
        found = _checkpoints(output_dir)
        return found[-1] if found else None
    path = Path(resume_from_checkpoint)
    if not (path / STATE_FILE).is_file():
        raise ConfigError(f"resume_from_checkpoint '{path}' is not a complete checkpoint (no {STATE_FILE})")
    return path


def save_checkpoint(
    accelerator: Accelerator, output_dir: Path, state: TrainState, total_limit: int | None
) -> Path:
    """Write ``checkpoint-<step>`` atomically: saved under a ``.tmp`` name, renamed when complete."""
    final = output_dir / f"checkpoint-{state.step}"
    tmp = output_dir / f"checkpoint-{state.step}.tmp"
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
    accelerator.wait_for_everyone()
    # every process writes its RNG state there, and the main one may come last
    tmp.mkdir(parents=True, exist_ok=True)
    accelerator.save_state(str(tmp))  # model, optimizer, registered scheduler, every process's RNG
    # save_state has no barrier: renaming before the others are done would leave their RNG state behind
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        state.save(tmp / STATE_FILE)
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
        for old in _checkpoints(output_dir)[: -total_limit if total_limit else 0]:
            shutil.rmtree(old)
    accelerator.wait_for_everyone()
    return final


def guard_unfinished_checkpoints(args: PretrainArguments, output_dir: Path, delete: bool) -> None:
    """Starting fresh over an unfinished run's checkpoints would mix two runs: refuse, or clear them."""
    old = _checkpoints(output_dir) + sorted(output_dir.glob("checkpoint-*.tmp"))
    if not old or args.resume_from_checkpoint is not None:
        return
    if not args.overwrite_output_dir:
        raise ConfigError(
            f"output_dir '{output_dir}' holds checkpoints of an unfinished run ({old[-1].name}); "
            "pass --resume_from_checkpoint latest to continue it, or --overwrite_output_dir true to start over"
        )
    for path in old if delete else []:
        shutil.rmtree(path)
