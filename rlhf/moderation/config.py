"""The ``moderation:`` mapping of a YAML config, as dataclasses checked like every other config.

    moderation:
      backend: cascade              # rules | classifier | guard | cascade
      taxonomy: null                # a categories YAML (null: rlhf/moderation/categories.yaml)
      on_error: block               # cascade: a stage that raises blocks (fail closed) or allows (fail open)
      uncertain_band: [0.2, 0.8]    # cascade: classifier scores in [low, high) go to the guard
      rules: {}                     # RulesConfig; {} = the default blocklists
      classifier: {model: runs/quickstart/moderation-train}   # ClassifierConfig
      guard: {model: ...}           # GuardConfig

:func:`load_moderation_config` reads the mapping from a file; :func:`parse_moderation_config` turns it into
a :class:`ModerationConfig`. An unknown key, a value of the wrong type or a missing required key raises
ModerationConfigError (a ConfigError: the command exits with status 2 and one line) naming the file, the
key's path (``moderation.classifier.max_length``) and what was expected.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rlhf.moderation.base import SIDES, ModerationConfigError

BACKENDS = ("rules", "classifier", "guard", "cascade")
ON_ERROR = ("block", "allow")
DTYPES = (None, "float32", "bfloat16", "float16")


@dataclass
class RuleCategory:
    """
    The rules of one category (an entry of `rules.categories`).

    Args:
        phrases (`list[str]`): blocklist phrases (grammar: `rlhf.moderation.normalize.phrase_regex`).
        regex (`list[str]`): plain regular expressions over the normalised text.
        allow (`list[str]`): phrases that excuse an overlapping block match of this category.
        sides (`list[str]` or `None`): the sides this category checks, `input` and/or `output`; `None`: as an
            earlier source (the default lists) set them, else both.
    """

    phrases: list[str] = field(default_factory=list)
    regex: list[str] = field(default_factory=list)
    allow: list[str] = field(default_factory=list)
    sides: list[str] | None = None

    def __post_init__(self):
        if self.sides is not None and (not self.sides or not set(self.sides) <= set(SIDES)):
            raise ValueError(f"sides must be a non-empty subset of {list(SIDES)}, got {self.sides}")


@dataclass
class RulesConfig:
    """
    The `rules:` sub-mapping (see `rlhf.moderation.rules`).

    Args:
        default_rules (`bool` or `str`, *optional*, defaults to `True`):
            Start from the package's lists (`default_rules.yaml`); `false`: none; a path: a file of the same
            shape as this mapping (`allow`, `categories`).
        allow (`list[str]`): phrases that excuse an overlapping block match in any category.
        categories (`dict[str, RuleCategory]`): per category id, its phrases, regexes, allow list and sides.
    """

    default_rules: bool | str = True
    allow: list[str] = field(default_factory=list)
    categories: dict[str, RuleCategory] = field(default_factory=dict)


@dataclass
class ClassifierConfig:
    """
    The `classifier:` sub-mapping (see `rlhf.moderation.classifier`).

    Args:
        model (`str`): a sequence-classification model: a local directory (e.g. what `rlhf moderation-train`
            writes) or a Hub id.
        tokenizer (`str` or `None`): its tokenizer; `None`: the model's own.
        label_map (`str`, `dict` or `None`): `None`: the model's labels are category ids; a table name from
            the taxonomy (`openai`, `llama_guard`, ...); or `{label: category | [categories] | null}`.
        thresholds (`float`, `dict` or `None`): one number, or per category and side (`default`, category ids,
            `input`/`output` sub-mappings); `None`: the thresholds `rlhf moderation-train` saved with the model
            (chosen on its validation split), else 0.5.
        max_length (`int`): tokens per window; longer texts are scored window by window.
        stride (`int` or `None`): tokens shared by neighbouring windows; `None`: a quarter of `max_length`.
        batch_size (`int`): windows per forward pass.
        device (`str`): `auto`, `cpu`, `cuda`, `cuda:N` or `mps`.
        problem_type (`str` or `None`): override the model's (`multi_label_classification` or
            `single_label_classification`).
        dtype (`str` or `None`): weights dtype (`float32`, `bfloat16`, `float16`); `None`: as saved.
        normalize (`bool` or `None`): fold case, look-alikes and zero-width characters before tokenizing;
            `None`: as the model was trained.
        taxonomy (`str` or `None`): the categories YAML for `label_map` tables; `None`: the mapping's.
    """

    model: str
    tokenizer: str | None = None
    label_map: str | dict | None = None
    thresholds: float | dict | None = None
    max_length: int = 256
    stride: int | None = None
    batch_size: int = 16
    device: str = "auto"
    problem_type: str | None = None
    dtype: str | None = None
    normalize: bool | None = None
    taxonomy: str | None = None

    def __post_init__(self):
        if self.dtype not in DTYPES:
            raise ValueError(f"key 'dtype' expects one of {list(DTYPES)}, got {self.dtype!r}")
        if self.max_length < 1 or self.batch_size < 1:
            raise ValueError("max_length and batch_size must be at least 1")


@dataclass
class GuardConfig:
    """
    The `guard:` sub-mapping (see `rlhf.moderation.guard`).

    Args:
        model (`str`): a causal LM with a chat template: a local directory or Hub id.
        gguf_file (`str` or `None`): a GGUF file inside `model` to load.
        tokenizer (`str` or `None`): its tokenizer; `None`: the model's own.
        categories (`list[str]` or `None`): the taxonomy ids the policy lists; `None`: all of them.
        threshold (`float` or `dict`): flag when P(unsafe) >= this; per side as `{input: .., output: ..}`.
        safe_token, unsafe_token (`str`): the verdict words; their first tokens must differ.
        max_new_tokens (`int`): tokens generated for the category codes of a flagged item.
        batch_size (`int`): items per forward pass.
        device (`str`): `auto`, `cpu`, `cuda`, `cuda:N` or `mps`.
        dtype (`str` or `None`): weights dtype (`float32`, `bfloat16`, `float16`); `None`: as saved.
        prompt_template (`str` or `None`): the policy prompt; `None`: the built-in Llama-Guard-style one.
        taxonomy (`str` or `None`): the categories YAML; `None`: the mapping's.
    """

    model: str
    gguf_file: str | None = None
    tokenizer: str | None = None
    categories: list[str] | None = None
    threshold: float | dict = 0.5
    safe_token: str = "safe"
    unsafe_token: str = "unsafe"
    max_new_tokens: int = 16
    batch_size: int = 8
    device: str = "auto"
    dtype: str | None = None
    prompt_template: str | None = None
    taxonomy: str | None = None

    def __post_init__(self):
        if self.dtype not in DTYPES:
            raise ValueError(f"key 'dtype' expects one of {list(DTYPES)}, got {self.dtype!r}")


@dataclass
class ModerationConfig:
    """
    A whole `moderation:` mapping: which backend, and the sub-mapping of each backend it uses.

    Args:
        backend (`str`, *optional*, defaults to `"rules"`): `rules`, `classifier`, `guard` or `cascade`
            (rules, then the classifier, the guard only for uncertain scores: each stage whose sub-mapping
            is present).
        taxonomy (`str` or `None`): a categories YAML; `None` or `default`: `rlhf/moderation/categories.yaml`.
        on_error (`str`, *optional*, defaults to `"block"`): cascade: a stage that raises blocks the item
            (`block`, fail closed) or lets it through (`allow`).
        uncertain_band (`list[float]`, *optional*, defaults to `[0.2, 0.8]`): cascade: items with a classifier
            score in `[low, high)` go to the guard.
        rules, classifier, guard: the backends' sub-mappings (`RulesConfig`, `ClassifierConfig`,
            `GuardConfig`).

    Set by :func:`parse_moderation_config`, not keys: ``source`` (the file, for messages) and ``base_dir``
    (relative paths that do not exist from the working directory are looked up there).
    """

    backend: str = "rules"
    taxonomy: str | None = None
    on_error: str = "block"
    uncertain_band: list[float] = field(default_factory=lambda: [0.2, 0.8])
    rules: RulesConfig | None = None
    classifier: ClassifierConfig | None = None
    guard: GuardConfig | None = None
    source: str | None = field(default=None, init=False)
    base_dir: str | None = field(default=None, init=False)

    def __post_init__(self):
        if self.backend not in BACKENDS:
            raise ValueError(f"key 'backend' expects one of {list(BACKENDS)}, got {self.backend!r}")
        if self.on_error not in ON_ERROR:
            raise ValueError(f"key 'on_error' expects one of {list(ON_ERROR)}, got {self.on_error!r}")
        band = self.uncertain_band
        if len(band) != 2 or not 0.0 <= band[0] <= band[1] <= 1.0:
            raise ValueError(f"uncertain_band must be [low, high] within [0, 1], got {band}")
        if self.backend in ("classifier", "guard") and getattr(self, self.backend) is None:
            raise ValueError(f"backend '{self.backend}' needs a '{self.backend}:' mapping")
        if (
            self.backend == "cascade"
            and self.rules is None
            and self.classifier is None
            and self.guard is None
        ):
            raise ValueError("a cascade needs at least one of 'rules', 'classifier', 'guard'")
        if self.backend == "rules" and self.rules is None:
            self.rules = RulesConfig()

    def where(self) -> str:
        """How messages name this mapping: its file, or "moderation" for an inline one."""
        return f"{self.source}: moderation" if self.source else "moderation"

    def resolve_path(self, value: str) -> str:
        """A path from this config: absolute, existing from the working directory, or relative to the file."""
        return resolve_path(value, self.base_dir)


def resolve_path(value: str, base_dir: str | os.PathLike | None) -> str:
    """``value`` if it is absolute or exists from the working directory; else ``base_dir/value`` when that
    exists (a path written relative to its config file); else ``value`` unchanged."""
    if os.path.isabs(value) or os.path.exists(value) or base_dir is None:
        return value
    candidate = os.path.join(base_dir, value)
    return candidate if os.path.exists(candidate) else value


def load_moderation_config(path: str | os.PathLike) -> dict[str, Any]:
    """Read the ``moderation:`` mapping from a YAML file (or the whole file if it has no such key).

    Returns the mapping as written, plus ``_base_dir`` (the file's folder) and ``_source`` (the file), which
    :func:`parse_moderation_config` reads; edit it freely before building a moderator from it.
    """
    import yaml

    path = Path(path)
    if not path.is_file():
        raise ModerationConfigError(f"{path}: moderation config file not found")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ModerationConfigError(f"{path}: not valid YAML ({str(err).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise ModerationConfigError(f"{path}: expected a mapping, got {type(data).__name__}")
    mapping = data.get("moderation", data)
    if not isinstance(mapping, dict):
        raise ModerationConfigError(f"{path}: key 'moderation' must be a mapping")
    mapping = dict(mapping)
    mapping.setdefault("_base_dir", str(path.parent))
    mapping.setdefault("_source", str(path))
    return mapping


def parse_moderation_config(
    config: ModerationConfig | Mapping[str, Any] | str | os.PathLike, source: str | None = None
) -> ModerationConfig:
    """A :class:`ModerationConfig` from a mapping (as written in YAML), a file path, or one already parsed.

    A sub-mapping given as ``null`` (``rules:``) counts as present with its defaults. Raises
    ModerationConfigError naming the file (``source``, or the ``_source`` a loaded mapping carries), the key
    and what was expected.
    """
    if isinstance(config, ModerationConfig):
        return config
    if isinstance(config, str | os.PathLike):
        config = load_moderation_config(config)
    if not isinstance(config, Mapping):
        raise ModerationConfigError(f"moderation config must be a mapping, got {type(config).__name__}")
    mapping = dict(config)
    base_dir, source = mapping.pop("_base_dir", None), mapping.pop("_source", None) or source
    for key in ("rules", "classifier", "guard"):
        if key in mapping and mapping[key] is None:
            mapping[key] = {}
    parsed = parse_section(ModerationConfig, mapping, f"{source}: moderation" if source else "moderation")
    parsed.source, parsed.base_dir = source, base_dir
    return parsed


# --------------------------------------------------------------------------------------------- checking
def parse_section(cls: type, value: Any, where: str):
    """An instance of the dataclass ``cls`` from a YAML mapping: every key a field, every value of the
    field's type (nested dataclasses parsed the same way), required fields present. ``where`` names the
    mapping in messages (``file: moderation.classifier``)."""
    if value is None:
        value = {}
    if not isinstance(value, Mapping):
        raise ModerationConfigError(f"{where}: expected a mapping, got {_show(value)}")
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for key, item in value.items():
        if key not in fields:
            close = difflib.get_close_matches(str(key), list(fields), n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise ModerationConfigError(
                f"{where}: unknown key '{key}'{hint}; expected one of {', '.join(fields)}"
            )
        kwargs[key] = _check(hints[key], item, f"{where}.{key}")
    for name, f in fields.items():
        if (
            name not in kwargs
            and f.default is dataclasses.MISSING
            and f.default_factory is dataclasses.MISSING
        ):
            raise ModerationConfigError(f"{where}: key '{name}' is required")
    try:
        return cls(**kwargs)
    except (ValueError, TypeError) as err:
        raise ModerationConfigError(f"{where}: {str(err).strip().splitlines()[0]}") from None


def _check(hint: Any, value: Any, where: str) -> Any:
    """``value`` checked against the type ``hint`` (ints pass as floats; bools are not numbers)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        options = [a for a in args if a is not type(None)]
        if len(options) == 1:
            return _check(options[0], value, where)
        for option in options:
            try:
                return _check(option, value, where)
            except ModerationConfigError:
                continue
        raise ModerationConfigError(f"{where}: expected {_describe(hint)}, got {_show(value)}")
    if dataclasses.is_dataclass(hint):
        return parse_section(hint, value, where)
    if origin is list:
        if not isinstance(value, list | tuple):
            raise ModerationConfigError(f"{where}: expected {_describe(hint)}, got {_show(value)}")
        return [_check(args[0], v, f"{where}[{i}]") for i, v in enumerate(value)] if args else list(value)
    if origin is dict or hint is dict:
        if not isinstance(value, Mapping):
            raise ModerationConfigError(f"{where}: expected {_describe(hint)}, got {_show(value)}")
        if not args:
            return dict(value)
        return {str(k): _check(args[1], v, f"{where}.{k}") for k, v in value.items()}
    if hint is Any:
        return value
    ok = {
        bool: isinstance(value, bool),
        int: isinstance(value, int) and not isinstance(value, bool),
        float: isinstance(value, int | float) and not isinstance(value, bool),
        str: isinstance(value, str),
    }.get(hint)
    if ok is None:
        raise TypeError(f"no check for type {hint!r}")
    if not ok:
        raise ModerationConfigError(f"{where}: expected {_describe(hint)}, got {_show(value)}")
    return float(value) if hint is float else value


def _describe(hint: Any, plural: bool = False) -> str:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return " or ".join("null" if a is type(None) else _describe(a) for a in args)
    if origin is list:
        return f"a list of {_describe(args[0], plural=True)}" if args else "a list"
    if origin is dict or hint is dict or dataclasses.is_dataclass(hint):
        return "mappings" if plural else "a mapping"
    names = {
        bool: ("true or false", "booleans"),
        int: ("an integer", "integers"),
        float: ("a number", "numbers"),
    }
    names[str] = ("a string", "strings")
    return names[hint][plural] if hint in names else str(hint)


def _show(value: Any) -> str:
    return f"{type(value).__name__} {value!r}"[:80]
