"""The `moderation:` mapping is parsed into dataclasses: every mistake names the file, the key and what was
expected, and every moderation config the repository ships parses."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from rlhf.config import ConfigError
from rlhf.moderation import (
    ModerationConfigError,
    build_moderator,
    load_moderation_config,
    parse_moderation_config,
)
from rlhf.moderation.config import ClassifierConfig, ModerationConfig, RulesConfig

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    ("mapping", "words"),
    [
        ({"backnd": "rules"}, ["moderation:", "unknown key 'backnd'", "did you mean 'backend'"]),
        ({"backend": "regex"}, ["key 'backend' expects one of", "'regex'"]),
        ({"backend": "rules", "on_error": "retry"}, ["on_error", "'retry'"]),
        ({"backend": "cascade", "rules": {}, "uncertain_band": [0.9, 0.1]}, ["uncertain_band"]),
        (
            {"backend": "cascade", "rules": {}, "uncertain_band": "wide"},
            ["uncertain_band", "a list of numbers"],
        ),
        ({"backend": "cascade"}, ["at least one of"]),
        ({"backend": "classifier"}, ["needs a 'classifier:' mapping"]),
        ({"backend": "classifier", "classifier": {}}, ["moderation.classifier", "key 'model' is required"]),
        (
            {"backend": "classifier", "classifier": {"model": "m", "treshold": 0.3}},
            ["moderation.classifier", "unknown key 'treshold'", "did you mean 'thresholds'"],
        ),
        (
            {"backend": "classifier", "classifier": {"model": "m", "max_length": "long"}},
            ["moderation.classifier.max_length", "expected an integer", "'long'"],
        ),
        (
            {"backend": "classifier", "classifier": {"model": "m", "batch_size": True}},
            ["moderation.classifier.batch_size", "expected an integer"],
        ),
        (
            {"backend": "classifier", "classifier": {"model": "m", "dtype": "fp8"}},
            ["moderation.classifier", "dtype", "'fp8'"],
        ),
        ({"backend": "guard", "guard": {"model": "m", "threshold": "high"}}, ["moderation.guard.threshold"]),
        (
            {"backend": "rules", "rules": {"allow": "kill time"}},
            ["moderation.rules.allow", "expected a list of strings"],
        ),
        (
            {"backend": "rules", "rules": {"categories": {"hate": {"phrase": ["x"]}}}},
            ["moderation.rules.categories.hate", "unknown key 'phrase'", "did you mean 'phrases'"],
        ),
        (
            {"backend": "rules", "rules": {"categories": {"hate": {"phrases": [1]}}}},
            ["moderation.rules.categories.hate.phrases[0]", "expected a string"],
        ),
        ({"backend": "rules", "rules": {"categories": {"hate": {"sides": ["both"]}}}}, ["sides", "both"]),
        ({"backend": "rules", "rules": ["x"]}, ["moderation.rules", "expected a mapping"]),
    ],
)
def test_a_malformed_mapping_names_the_file_and_the_key(tmp_path, mapping, words):
    path = tmp_path / "moderation.yaml"
    path.write_text(yaml.safe_dump({"moderation": mapping}))
    with pytest.raises(ModerationConfigError) as info:
        parse_moderation_config(load_moderation_config(path))
    message = str(info.value)
    assert isinstance(info.value, ConfigError)  # the one user-error type: exit 2, one line
    assert message.startswith(f"{path}: moderation") and "\n" not in message, message
    assert all(word in message for word in words), message


def test_backend_errors_name_the_file_too(tmp_path):
    path = tmp_path / "moderation.yaml"
    path.write_text(yaml.safe_dump({"moderation": {"rules": {"categories": {"hate": {"regex": ["(open"]}}}}}))
    with pytest.raises(
        ModerationConfigError, match=rf"^{path}: moderation\.rules: category 'hate': bad regex"
    ):
        build_moderator(path)
    path.write_text(
        yaml.safe_dump({"moderation": {"backend": "classifier", "classifier": {"model": "no/such/dir"}}})
    )
    with pytest.raises(ModerationConfigError, match=rf"^{path}: moderation\.classifier: cannot load model"):
        build_moderator(path)


def test_parsed_values_and_defaults():
    config = parse_moderation_config(
        {"backend": "cascade", "rules": None, "classifier": {"model": "m", "thresholds": 1}, "_base_dir": "d"}
    )
    assert isinstance(config, ModerationConfig) and config.base_dir == "d" and config.source is None
    assert config.rules == RulesConfig()  # `rules:` left empty means the default lists
    assert config.classifier == ClassifierConfig(model="m", thresholds=1.0)
    assert isinstance(config.classifier.thresholds, float) and config.uncertain_band == [0.2, 0.8]
    assert config.guard is None
    assert parse_moderation_config({}).rules == RulesConfig()  # backend rules by default


def test_a_config_file_missing_or_not_yaml(tmp_path):
    with pytest.raises(ModerationConfigError, match="nope.yaml: moderation config file not found"):
        build_moderator(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("moderation: [unclosed\n")
    with pytest.raises(ModerationConfigError, match="bad.yaml: not valid YAML"):
        build_moderator(bad)


def test_every_shipped_moderation_config_parses():
    files = [*ROOT.glob("configs/*/moderation.yaml")]
    assert len(files) >= 2
    for path in files:
        assert parse_moderation_config(load_moderation_config(path)).backend in ("rules", "cascade")
    default_rules = yaml.safe_load((ROOT / "rlhf" / "moderation" / "default_rules.yaml").read_text())
    parsed = parse_moderation_config({"rules": {**default_rules, "default_rules": False}})
    assert len(parsed.rules.categories) >= 6 and parsed.rules.allow
