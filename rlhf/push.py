"""Publish a stage's run directory to the Hugging Face Hub.

    rlhf push RUN_DIR --repo-id USER/NAME [--private] [--merged] [--dry-run]

Uploads the LoRA adapter (or, with ``--merged``, the merged full model from ``RUN_DIR/merged``), the
tokenizer, the plots and a model card whose metadata carries the base model, datasets, library, tags,
the stage's metrics and its training config. ``--dry-run`` writes exactly the folder that would be
uploaded and prints where, without touching the network.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

import yaml
from huggingface_hub import ModelCard

from rlhf.config import ConfigError, did_you_mean
from rlhf.runs import hub_datasets, read_metrics, write_model_card

# Files a stage leaves that are working state, not part of a published model; folders (merged/, checkpoints,
# split/, logs) are not published either: `--merged` publishes merged/ in place of the adapter.
_SKIP = {
    "README.md",  # the model card is written into the upload folder
    "trainer_state.json",
    "training_args.bin",
    "optimizer.pt",
    "scheduler.pt",
    "rng_state.pth",
}
# What the run directory adds to a merged model's upload: its records.
_RECORDS = ("config.yaml", "metrics.json", "*.png", "*.jsonl")


class PushError(ConfigError):
    """The run directory cannot be published as asked."""


def _is_model_dir(path: Path) -> bool:
    return (path / "config.json").is_file() or (path / "adapter_config.json").is_file()


def _base_model(model_dir: Path, config: dict) -> str | None:
    adapter = model_dir / "adapter_config.json"
    if adapter.is_file():
        return json.loads(adapter.read_text()).get("base_model_name_or_path")
    return config.get("model_name_or_path")


def _hub_id_or_none(name: str | None) -> str | None:
    """Hub metadata wants a repo id; a local path (a previous stage's run) is not one."""
    if not name or Path(name).exists() or name.startswith((".", "/")) or name.count("/") != 1:
        return None
    return name


def _published(path: Path) -> bool:
    return path.is_file() and path.name not in _SKIP and not path.name.endswith(".tmp")


def build_upload_folder(
    run_dir: str | Path, folder: str | Path, merged: bool = False, base_model: str | None = None
) -> Path:
    """Copy what is published from ``run_dir`` into ``folder`` and write its model card; returns ``folder``.

    Published: the top-level files of the run (the adapter or model, tokenizer, ``config.yaml``,
    ``metrics.json``, plots, samples), or with ``merged`` the files of ``merged/`` plus those records. The card
    is the one the stage wrote (``README.md`` tagged ``rlhf``), with ``base_model`` set when given and ``library_name``
    ``transformers`` for a merged model; a run without one gets a card made from its config and metrics.

    Raises:
        PushError: ``run_dir`` holds no model (or no merged model with ``merged=True``), or ``folder`` is not empty.
    """
    run_dir, folder = Path(run_dir), Path(folder)
    if not run_dir.is_dir():
        raise PushError(f"{run_dir}: no such run directory")
    model_dir = run_dir / "merged" if merged else run_dir
    if merged and not _is_model_dir(model_dir):
        raise PushError(f"{run_dir}: --merged asked for {model_dir}, which holds no merged model")
    if not _is_model_dir(model_dir):
        raise PushError(
            f"{run_dir}: holds neither config.json nor adapter_config.json; is it a finished stage run?"
        )
    if folder.exists() and any(folder.iterdir()):
        raise PushError(f"{folder}: already exists and is not empty; choose another --output_dir")
    folder.mkdir(parents=True, exist_ok=True)

    files = [p for p in sorted(model_dir.iterdir()) if _published(p)]
    if merged:
        files += [p for pattern in _RECORDS for p in sorted(run_dir.glob(pattern)) if _published(p)]
    for item in files:
        shutil.copy2(item, folder / item.name)

    config_path = run_dir / "config.yaml"
    config = yaml.safe_load(config_path.read_text()) if config_path.is_file() else {}
    card = ModelCard.load(run_dir / "README.md") if (run_dir / "README.md").is_file() else None
    if card is not None and "rlhf" in (card.data.tags or []):  # the stage's card, not one peft wrote
        if base_model:
            card.data.base_model = base_model
        if merged:
            card.data.library_name = "transformers"
        card.save(folder / "README.md")
        return folder
    stage = config.get("stage") or _guess_stage(run_dir)
    base = base_model or _base_model(model_dir, config)
    kind = "merged model" if merged or not (model_dir / "adapter_config.json").is_file() else "LoRA adapter"
    write_model_card(
        folder,
        stage=stage,
        description=f"A {kind} from the `{stage}` stage of the rlhf recipe.",
        base_model=_hub_id_or_none(base) or base,
        datasets=hub_datasets(config.get("dataset_name")),
        metrics=read_metrics(run_dir),
        config=config,
        library_name="peft" if kind == "LoRA adapter" else "transformers",
    )
    return folder


def _guess_stage(run_dir: Path) -> str:
    known = ("pretrain", "sft", "reward", "ppo", "rloo", "grpo", "dpo", "moderation")
    return next((s for s in known if s in run_dir.name), run_dir.name)


def push(
    run_dir: str | Path,
    repo_id: str,
    *,
    private: bool | None = None,
    merged: bool = False,
    base_model: str | None = None,
    token: str | None = None,
    revision: str | None = None,
) -> str:
    """Publish ``run_dir`` (see `build_upload_folder`) to the Hub repository ``repo_id``, created if needed;
    returns the repository's id. Used by `rlhf push` and by a stage run with ``push_to_hub: true``."""
    from huggingface_hub import HfApi

    with tempfile.TemporaryDirectory() as tmp:
        folder = build_upload_folder(run_dir, Path(tmp) / "upload", merged=merged, base_model=base_model)
        api = HfApi(token=token)
        repo_id = api.create_repo(repo_id, private=private, exist_ok=True).repo_id
        api.upload_folder(
            repo_id=repo_id,
            folder_path=str(folder),
            revision=revision,
            commit_message=f"rlhf: upload {Path(run_dir).name}",
        )
    print(f"pushed {run_dir} to https://huggingface.co/{repo_id}")
    return repo_id


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # argparse would print its whole usage block before the error
        raise PushError(f"{message} (see `rlhf push --help`)")


def cli(argv=None) -> int:
    parser = _Parser(prog="rlhf push", description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", help="A finished stage's output directory.")
    parser.add_argument("--repo-id", "--repo_id", dest="repo_id", required=True, help="USER/NAME on the Hub.")
    parser.add_argument("--private", action="store_true", help="Create the repository as private.")
    parser.add_argument("--merged", action="store_true", help="Upload RUN_DIR/merged instead of the adapter.")
    parser.add_argument(
        "--dry-run", "--dry_run", dest="dry_run", action="store_true", help="Only write the folder."
    )
    parser.add_argument(
        "--output-dir", "--output_dir", dest="output_dir", help="Where --dry-run writes the folder."
    )
    parser.add_argument(
        "--base-model", "--base_model", dest="base_model", help="Hub id to record as base_model."
    )
    argv = list(sys.argv[1:] if argv is None else argv)
    options = [o for action in parser._actions for o in action.option_strings]
    try:
        for arg in argv:  # a misspelt option is named first (argparse would ask for --repo-id instead)
            if arg.startswith("--") and arg.split("=", 1)[0] not in options:
                raise PushError(
                    f"unknown option '{arg}'{did_you_mean(arg, options)} (see `rlhf push --help`)"
                )
        args = parser.parse_args(argv)
        if args.dry_run:
            folder = Path(args.output_dir) if args.output_dir else Path(args.run_dir) / "hub_upload"
            where = build_upload_folder(args.run_dir, folder, merged=args.merged, base_model=args.base_model)
        else:
            where = push(
                args.run_dir, args.repo_id, private=args.private or None, merged=args.merged,
                base_model=args.base_model,
            )  # fmt: skip
    except PushError as err:
        print(f"rlhf push: error: {err}", file=sys.stderr)
        return 2
    print(f"{'Wrote the upload folder to' if args.dry_run else 'Pushed to'} {where}")
    return 0


if __name__ == "__main__":
    raise SystemExit(cli())
