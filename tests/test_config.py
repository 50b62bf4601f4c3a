"""The YAML + CLI configuration layer: strict keys, types, one-line errors, resolved config."""

import subprocess
import sys
from dataclasses import dataclass, field

import pytest
import yaml
from transformers import TrainingArguments

from rlhf.config import ConfigError, config_to_dict, parse_args, run_cli, save_config


@dataclass
class ToyArguments:
    """Toy stage arguments.

    Args:
        steps (`int`): number of steps.
        name (`str`): a name.
    """

    steps: int = field(default=10, metadata={"help": "Number of steps."})
    name: str = field(default="run", metadata={"help": "A name."})
    rate: float = field(default=0.1, metadata={"help": "A rate."})
    use_thing: bool = field(default=False, metadata={"help": "A switch."})
    modules: list[str] = field(default_factory=lambda: ["q", "v"], metadata={"help": "Target modules."})
    mode: str = field(default="a", metadata={"help": "Mode.", "choices": ["a", "b"]})


@dataclass
class RequiredArguments:
    dataset_name: str = field(metadata={"help": "Required dataset."})


def write_yaml(tmp_path, data, name="recipe.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data))
    return path


def test_yaml_sets_defaults_and_cli_overrides(tmp_path):
    path = write_yaml(
        tmp_path, {"steps": 5, "name": "from-yaml", "use_thing": True, "modules": ["a", "b", "c"]}
    )
    (args,) = parse_args([ToyArguments], ["--config", str(path), "--steps", "7"])
    assert args.steps == 7  # CLI wins
    assert args.name == "from-yaml"
    assert args.use_thing is True
    assert args.modules == ["a", "b", "c"]
    assert args.rate == 0.1  # untouched default


def test_yaml_values_are_type_checked_and_converted(tmp_path):
    (args,) = parse_args(
        [ToyArguments], ["--config", str(write_yaml(tmp_path, {"rate": "1e-3", "steps": "3"}))]
    )
    assert args.rate == pytest.approx(1e-3) and args.steps == 3
    with pytest.raises(ConfigError, match=r"recipe\.yaml: key 'steps' expects int, got 'many'"):
        parse_args([ToyArguments], ["--config", str(write_yaml(tmp_path, {"steps": "many"}))])
    with pytest.raises(ConfigError, match=r"key 'mode' expects one of \['a', 'b'\], got 'c'"):
        parse_args([ToyArguments], ["--config", str(write_yaml(tmp_path, {"mode": "c"}))])


@pytest.mark.parametrize(
    "data, message",
    [
        ({"stepz": 3}, r"recipe\.yaml: unknown key 'stepz' \(did you mean 'steps'\?\)"),
        ({"learning_rat": 3}, r"recipe\.yaml: unknown key 'learning_rat'"),
    ],
)
def test_unknown_yaml_key_names_key_and_file(tmp_path, data, message):
    with pytest.raises(ConfigError, match=message):
        parse_args([ToyArguments], ["--config", str(write_yaml(tmp_path, data))])


def test_unknown_cli_flag_names_flag_and_config_file(tmp_path):
    path = write_yaml(tmp_path, {"steps": 3})
    with pytest.raises(ConfigError, match=r"unknown option '--no_such_key'.*config: .*recipe\.yaml"):
        parse_args([ToyArguments], ["--config", str(path), "--no_such_key", "1"])


def test_missing_required_field_and_bad_files(tmp_path):
    with pytest.raises(ConfigError, match="dataset_name"):
        parse_args([RequiredArguments], [])
    (args,) = parse_args([RequiredArguments], ["--config", str(write_yaml(tmp_path, {"dataset_name": "x"}))])
    assert args.dataset_name == "x"
    with pytest.raises(ConfigError, match="config file not found"):
        parse_args([ToyArguments], ["--config", str(tmp_path / "nope.yaml")])
    bad = tmp_path / "list.yaml"
    bad.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match=r"list\.yaml: expected a mapping"):
        parse_args([ToyArguments], ["--config", str(bad)])


def test_transformers_options_pass_through_and_validate(tmp_path):
    path = write_yaml(tmp_path, {"output_dir": str(tmp_path / "out"), "learning_rate": 3e-4, "steps": 2})
    toy, training = parse_args([ToyArguments, TrainingArguments], ["--config", str(path), "--max_steps", "9"])
    assert training.learning_rate == pytest.approx(3e-4) and training.max_steps == 9 and toy.steps == 2
    # TrainingArguments' own validation error is reported in one line naming the file
    bad = write_yaml(
        tmp_path,
        {
            "output_dir": "o",
            "load_best_model_at_end": True,
            "eval_strategy": "steps",
            "save_strategy": "epoch",
        },
    )
    with pytest.raises(ConfigError) as err:
        parse_args([TrainingArguments], ["--config", str(bad)])
    assert "recipe.yaml" in str(err.value) and "\n" not in str(err.value)


def test_resolved_config_round_trips(tmp_path):
    path = write_yaml(tmp_path, {"steps": 4, "modules": ["x"], "output_dir": str(tmp_path / "o")})
    configs = parse_args([ToyArguments, TrainingArguments], ["--config", str(path)])
    saved = save_config(tmp_path / "run", *configs)
    again = parse_args([ToyArguments, TrainingArguments], ["--config", str(saved)])
    assert config_to_dict(*again) == config_to_dict(*configs)
    assert yaml.safe_load(saved.read_text())["steps"] == 4


def test_run_cli_exits_2_with_one_line(tmp_path, capsys):
    path = write_yaml(tmp_path, {"stepz": 1})
    with pytest.raises(SystemExit) as exit_info:
        run_cli(lambda args: None, [ToyArguments], "rlhf toy", ["--config", str(path)])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert (
        err.count("\n") == 0
        and err.startswith("rlhf toy: error:")
        and "stepz" in err
        and "recipe.yaml" in err
    )


def test_rlhf_command_lists_stages_and_rejects_unknown():
    out = subprocess.run([sys.executable, "-m", "rlhf.cli", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "usage: rlhf <command>" in out.stdout
    bad = subprocess.run([sys.executable, "-m", "rlhf.cli", "fly"], capture_output=True, text=True)
    assert bad.returncode == 2 and "unknown command 'fly'" in bad.stderr
