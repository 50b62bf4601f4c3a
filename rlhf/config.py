"""YAML recipes plus command-line overrides, parsed into dataclasses.

Every stage is configured the same way: ``--config FILE`` supplies a flat YAML mapping whose keys
are the fields of the stage's dataclasses (ours, TRL's and transformers'), and ``--key value``
flags on the command line override it. Unlike TRL's own ``TrlParser``, an unknown key, a value of
the wrong type or a missing required field stops with one line that names the key and the file.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml
from transformers import HfArgumentParser


class ConfigError(ValueError):
    """A user's mistake (configuration, input data, output directory): the one error type every command turns
    into exit status 2 and a single line naming the file, the field and what was expected."""


class _StrictParser(HfArgumentParser):
    def error(self, message: str):  # argparse would print the whole usage block and exit
        raise ConfigError(message)


def _split_config_flag(argv: list[str]) -> tuple[str | None, list[str]]:
    """Remove ``--config FILE`` (or ``--config=FILE``) from argv and return the file."""
    config_path, rest = None, []
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--config":
            if i + 1 >= len(argv):
                raise ConfigError("--config needs a file path")
            config_path = argv[i + 1]
            i += 2
            continue
        if arg.startswith("--config="):
            config_path = arg.split("=", 1)[1]
        else:
            rest.append(arg)
        i += 1
    return config_path, rest


def load_yaml_config(path: str | os.PathLike) -> dict[str, Any]:
    """Read a recipe file: a flat YAML mapping of field names to values."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML ({str(err).splitlines()[0]})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of field names to values, got {type(data).__name__}")
    return data


def _convert(action: argparse.Action, key: str, value: Any, source: str) -> Any:
    """Apply the parser's own type check to a YAML value, as argparse would to a CLI string."""
    if value is None or action.type is None:
        return value
    values = value if isinstance(value, list) and action.nargs in ("+", "*") else [value]
    converted = []
    for item in values:
        if isinstance(item, dict | list):  # JSON-like fields (e.g. model_init_kwargs) stay as given
            converted.append(item)
            continue
        try:
            item = action.type(
                item if not isinstance(item, bool) or action.type is not str else str(item).lower()
            )
        except (TypeError, ValueError, argparse.ArgumentTypeError):
            expected = getattr(action.type, "__name__", str(action.type))
            if action.choices:
                expected = f"one of {list(action.choices)}"
            raise ConfigError(f"{source}: key '{key}' expects {expected}, got {item!r}") from None
        if action.choices and item not in action.choices:
            raise ConfigError(f"{source}: key '{key}' expects one of {list(action.choices)}, got {item!r}")
        converted.append(item)
    return converted if values is value else converted[0]


def did_you_mean(key: str, known: Sequence[str]) -> str:
    close = difflib.get_close_matches(key, known, n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""


def parse_args(
    dataclass_types: Sequence[type], argv: Sequence[str] | None = None, prog: str | None = None
) -> tuple[Any, ...]:
    """Parse ``--config FILE`` plus CLI overrides into one instance of each dataclass type.

    Raises:
        ConfigError: unknown key (in the file or on the command line), wrong type, missing required
            field, or a value the dataclass itself rejects. The message is a single line.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    config_path, cli_args = _split_config_flag(argv)
    parser = _StrictParser(list(dataclass_types), prog=prog)
    # a bool field defaulting to True has two actions, `--key` and `--no_key`; the first one converts
    actions: dict[str, argparse.Action] = {}
    for action in parser._actions:
        if action.dest != "help":
            actions.setdefault(action.dest, action)
    source = str(config_path) if config_path else "command line"

    if config_path:
        config = load_yaml_config(config_path)
        for key, value in (config.pop("env", None) or {}).items():  # same convention as TrlParser
            os.environ[str(key)] = str(value)
        for key, value in config.items():
            if key not in actions:
                raise ConfigError(
                    f"{config_path}: unknown key '{key}'{did_you_mean(key, list(actions))}; "
                    f"see `{prog or 'the stage'} --help` for the valid keys"
                )
            default = _convert(actions[key], key, value, config_path)
            for action in parser._actions:  # every action of the field, or argparse keeps the other default
                if action.dest == key:
                    action.default, action.required = default, False

    try:
        namespace, unknown = parser.parse_known_args(cli_args)
    except ConfigError as err:
        raise ConfigError(f"{err} (config: {source})") from None
    if unknown:
        flag = next((u for u in unknown if u.startswith("-")), unknown[0])
        name = flag.lstrip("-").split("=", 1)[0]
        raise ConfigError(
            f"unknown option '{flag}'{did_you_mean(name, list(actions))} (config: {source}); "
            f"see `{prog or 'the stage'} --help`"
        )

    outputs = []
    for dtype in dataclass_types:
        names = [f.name for f in dataclasses.fields(dtype) if f.init]
        kwargs = {name: getattr(namespace, name) for name in names if hasattr(namespace, name)}
        try:
            outputs.append(dtype(**kwargs))
        except (ValueError, TypeError) as err:
            first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise ConfigError(f"{source}: invalid {dtype.__name__}: {first_line}") from None
    return tuple(outputs)


def run_cli(main, dataclass_types: Sequence[type], prog: str, argv: Sequence[str] | None = None):
    """Parse the configuration and call ``main(*configs)``.

    A ConfigError (bad configuration or bad input, raised while parsing or by ``main`` before it changes
    anything) exits with status 2 and one line on stderr instead of a traceback.
    """
    try:
        return main(*parse_args(dataclass_types, argv, prog=prog))
    except ConfigError as err:
        print(f"{prog}: error: {err}", file=sys.stderr)
        raise SystemExit(2) from None


# Settings never written into a run directory or a model card: credentials.
SECRETS = ("hub_token",)


def config_to_dict(*configs: Any) -> dict[str, Any]:
    """Flatten dataclass configs into one YAML-safe mapping that ``--config`` accepts back (secrets as null)."""
    flat: dict[str, Any] = {}
    for config in configs:
        values = config.to_dict() if hasattr(config, "to_dict") else dataclasses.asdict(config)
        init_fields = {f.name for f in dataclasses.fields(config) if f.init}
        for key, value in values.items():
            if key in init_fields:
                # TrainingArguments.to_dict masks every `*_token` field, settings such as `eos_token` and PPO's
                # `stop_token` too: read those back from the config itself
                value = getattr(config, key) if key.endswith("_token") else value
                flat[key] = None if key in SECRETS else _yaml_safe(value)
    return flat


def _yaml_safe(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _yaml_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set):
        return [_yaml_safe(v) for v in value]
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    if hasattr(value, "value"):  # enums
        return _yaml_safe(value.value)
    return str(value)


def save_config(output_dir: str | os.PathLike, *configs: Any, filename: str = "config.yaml") -> Path:
    """Write the resolved configuration of a run next to its outputs; returns the file's path."""
    path = Path(output_dir) / filename
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config_to_dict(*configs), sort_keys=False))
    return path
