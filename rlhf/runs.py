"""A stage's output directory and the lifecycle every stage runs through.

A run directory is *finished* once its ``metrics.json`` exists: every stage writes that file
last, so a crash or a kill leaves a directory that is not finished and can be resumed.

Every stage (tokenizer, pretrain, SFT, reward, RL, DPO, moderation-train) runs inside `stage_run`:

    with stage_run("sft", script_args, training_args, model_args) as run:  # refuses a finished run
        ...load the inputs and build the trainer...      # a user error here leaves no config behind
        run.write_config()                                # every derived setting is final now
        ...train, save, evaluate (plots and samples on the main process)...
        if run.is_main_process:
            run.finish(metrics, description="...", tags=[...])  # card, metrics.json last, one Hub push

On leaving the block every process waits for the others and accelerate's state is reset, so the next
stage in the same process (``rlhf quickstart``) builds its own.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from rlhf.config import ConfigError, config_to_dict
from rlhf.host_memory import releasing_freed_memory

logger = logging.getLogger(__name__)

METRICS_FILE = "metrics.json"


class RunDirError(ConfigError):
    """The output directory cannot be used without losing finished work."""


def is_complete(output_dir: str | os.PathLike) -> bool:
    """True when ``output_dir`` holds a finished run (its metrics.json was written)."""
    return (Path(output_dir) / METRICS_FILE).is_file()


def prepare_output_dir(output_dir: str | os.PathLike, overwrite: bool = False, create: bool = True) -> Path:
    """Create ``output_dir`` (unless ``create`` is false), refusing one that already holds a finished run unless
    ``overwrite``."""
    path = Path(output_dir)
    if is_complete(path) and not overwrite:
        raise RunDirError(
            f"output_dir '{path}' already holds a finished run ({path / METRICS_FILE}); "
            "choose another output_dir, or pass --overwrite_output_dir true to replace it"
        )
    if create:
        path.mkdir(parents=True, exist_ok=True)
    return path


def read_metrics(output_dir: str | os.PathLike) -> dict[str, Any]:
    """The metrics a finished run wrote (empty if it has none)."""
    path = Path(output_dir) / METRICS_FILE
    return json.loads(path.read_text()) if path.is_file() else {}


def write_metrics(output_dir: str | os.PathLike, metrics: Mapping[str, Any]) -> Path:
    """Write ``metrics.json`` atomically; this marks the run finished."""
    path = Path(output_dir) / METRICS_FILE
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(_finite(metrics), indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)
    return path


def _finite(value: Any) -> Any:
    """JSON has no NaN/inf: write them as null rather than producing an unreadable file."""
    if isinstance(value, Mapping):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_model_card(
    output_dir: str | os.PathLike,
    *,
    stage: str,
    description: str,
    base_model: str | None = None,
    datasets: Sequence[str] = (),
    metrics: Mapping[str, Any] | None = None,
    config: Mapping[str, Any] | None = None,
    library_name: str = "transformers",
    tags: Sequence[str] = (),
) -> Path:
    """Write a Hub-ready ``README.md`` with metadata (base model, datasets, tags, metrics)."""
    from huggingface_hub import ModelCard, ModelCardData

    metrics = dict(metrics or {})
    data = ModelCardData(
        base_model=base_model if base_model and not os.path.isdir(base_model) else None,
        datasets=list(datasets) or None,
        library_name=library_name,
        tags=["rlhf", stage, *tags],
        model_name=Path(output_dir).name,
    )
    card_metrics = {
        k: v for k, v in metrics.items() if isinstance(v, int | float) and not isinstance(v, bool)
    }
    if card_metrics:
        data.rlhf_metrics = card_metrics  # free-form metadata key, read back by ModelCard.load
    lines = [f"# {Path(output_dir).name}", "", description, ""]
    if base_model:
        lines += [f"Base model: `{base_model}`", ""]
    if card_metrics:
        lines += ["## Metrics", "", "| metric | value |", "| --- | --- |"]
        lines += [f"| {k} | {_fmt(v)} |" for k, v in sorted(card_metrics.items())]
        lines.append("")
    if config:
        import yaml

        lines += [
            "## Training configuration",
            "",
            "```yaml",
            yaml.safe_dump(dict(config), sort_keys=False).strip(),
        ]
        lines += ["```", ""]
    lines += [f"Trained with the `rlhf` recipe, stage `{stage}`.", ""]
    card = ModelCard(f"---\n{data.to_yaml()}\n---\n\n" + "\n".join(lines))
    path = Path(output_dir) / "README.md"
    card.save(path)
    return path


def _fmt(value: float) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


# ----------------------------------------------------------------------------------------------
# the lifecycle


def _setting(configs: Sequence[Any], name: str, default: Any = None) -> Any:
    """The first of ``configs`` that has the field ``name`` decides it (script arguments come first)."""
    return next((getattr(c, name) for c in configs if hasattr(c, name)), default)


def hub_datasets(dataset_name: str | None) -> list[str]:
    """The model card's ``datasets`` entry: a Hub id, nothing for the built-in task or local files."""
    if not dataset_name or dataset_name == "builtin" or os.path.exists(dataset_name):
        return []
    return [dataset_name]


class Run:
    """One run of a stage, made by `stage_run`: where it writes, the configs it writes, and the Hub push it owes.

    Attributes:
        stage: the stage's name (the model card's tag).
        output_dir: the run directory (a finished run in it was refused unless overwriting; created by
            `write_config`).
        configs: the stage's config dataclasses, in the order ``--config`` reads them.
        state: accelerate's ``PartialState`` (``state.main_process_first()``, ``state.print``).
        is_main_process: whether this process writes (under ``accelerate launch``, only one does).
        push_to_hub: what the config asked for; the trainer itself never pushes (see `stage_run`).
    """

    def __init__(self, stage: str, configs: Sequence[Any], state):
        self.stage, self.configs, self.state = stage, tuple(configs), state
        self.is_main_process = state.is_main_process
        self.started = time.perf_counter()
        overwrite = bool(_setting(configs, "overwrite_output_dir", False))
        # created when the run writes its config (or data): a user's mistake before that leaves nothing behind
        self.output_dir = prepare_output_dir(_setting(configs, "output_dir"), overwrite, create=False)
        self.training_args = next((c for c in configs if hasattr(c, "push_to_hub")), None)
        self.push_to_hub = bool(self.training_args and self.training_args.push_to_hub)
        self.config: dict[str, Any] | None = None

    def resolved_config(self) -> dict[str, Any]:
        """The configs as one mapping, with ``push_to_hub`` as asked (the trainer runs with it off)."""
        config = config_to_dict(*self.configs)
        if self.training_args is not None:
            config["push_to_hub"] = self.push_to_hub
        return config

    def write_config(self) -> Path:
        """Write ``config.yaml``: call it once every derived setting is final, before training.

        An overwritten run loses its ``metrics.json`` first: it is not finished until this run writes its own.
        """
        self.config = self.resolved_config()
        path = self.output_dir / "config.yaml"
        if self.is_main_process:
            self.output_dir.mkdir(parents=True, exist_ok=True)
            (self.output_dir / METRICS_FILE).unlink(missing_ok=True)
            path.write_text(yaml.safe_dump(self.config, sort_keys=False))
        return path

    def finish(
        self, metrics: dict[str, Any], *, description: str, tags: Sequence[str] = (), **card: Any
    ) -> dict[str, Any]:
        """Main process, after the stage's plots and samples: the model card, ``metrics.json`` last (the run is
        finished), then one Hub push of the finished directory when the config asked for it. ``metrics`` gets
        ``wall_time_s`` (seconds since the run started) unless the stage measured it.

        ``card`` overrides what the card's metadata takes from the configs: ``base_model``
        (``model_name_or_path``), ``datasets`` (``dataset_name`` when a Hub id), ``library_name`` (``peft``
        when the directory holds an adapter), ``card_metrics`` (all of ``metrics``).
        """
        if self.config is None:
            raise RuntimeError(f"{self.stage}: write_config() must come before finish()")
        metrics.setdefault("wall_time_s", time.perf_counter() - self.started)
        adapter = (self.output_dir / "adapter_config.json").is_file()
        write_model_card(
            self.output_dir,
            stage=self.stage,
            description=description,
            base_model=card.pop("base_model", _setting(self.configs, "model_name_or_path")),
            datasets=card.pop("datasets", hub_datasets(_setting(self.configs, "dataset_name"))),
            metrics=card.pop("card_metrics", metrics),
            config=self.config,
            library_name=card.pop("library_name", "peft" if adapter else "transformers"),
            tags=[*tags, *(["lora"] if adapter and "lora" not in tags else [])],
        )
        write_metrics(self.output_dir, metrics)
        if self.push_to_hub:
            self.push()
        return dict(metrics)

    def push(self) -> str:
        """Upload the run directory as `rlhf push` does, to ``hub_model_id`` (default: the directory's name)."""
        from rlhf.push import push

        args = self.training_args
        return push(
            self.output_dir,
            args.hub_model_id or self.output_dir.absolute().name,
            private=args.hub_private_repo,
            token=args.hub_token,
            revision=args.hub_revision,
        )


@contextlib.contextmanager
def stage_run(stage: str, *configs: Any) -> Iterator[Run]:
    """Run a stage's body as one run of ``configs``'s ``output_dir`` (see the module docstring).

    On entering: refuses a finished run (every process, so all of them stop) and takes ``push_to_hub`` away
    from the trainer, which would create the repository when it is built and push on every save, each time
    with its own card. While the body runs, a thread hands the host memory it frees back to the system every
    ``release_memory_s`` seconds (`rlhf.host_memory`; where set: the RL stage's default). On leaving:
    gives ``push_to_hub`` back, waits for every process (after success) and
    resets accelerate's process-wide state.
    """
    from accelerate import PartialState
    from accelerate.utils import parse_flag_from_env
    from transformers import set_seed

    # as an Accelerator would start it: `accelerate launch` of CPU processes says so only in the environment
    state = PartialState(cpu=parse_flag_from_env("ACCELERATE_USE_CPU"))
    run = Run(stage, configs, state)
    release_s = _setting(configs, "release_memory_s", 0.0)
    if release_s is None or release_s < 0:
        raise ConfigError(f"release_memory_s: expected 0 (never) or a number of seconds, got {release_s}")
    if run.training_args is not None:
        run.training_args.push_to_hub = False
        # the one place stages seed: TRL's trainers draw LoRA weights (and the stages score heads) before
        # they seed, and a stage must start the same alone or after others in one process (the quickstart)
        if getattr(run.training_args, "seed", None) is not None:
            set_seed(run.training_args.seed)
    try:
        with releasing_freed_memory(release_s):
            yield run
        if _distributed():
            state.wait_for_everyone()
    finally:
        if run.training_args is not None:
            run.training_args.push_to_hub = run.push_to_hub
        reset_accelerate_state()


def _distributed() -> bool:
    """A process group is up (a stage that ended its own Accelerator has already closed it)."""
    import torch.distributed

    return torch.distributed.is_available() and torch.distributed.is_initialized()


def reset_accelerate_state() -> None:
    """Forget this run's accelerate settings so a later stage in the same process can make its own Accelerator.

    ``rlhf quickstart`` runs every stage in one process, and accelerate's state is a process-wide singleton.
    """
    from accelerate.state import AcceleratorState, GradientState

    AcceleratorState._reset_state(reset_partial_state=True)
    GradientState._reset_state()
