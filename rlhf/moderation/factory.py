"""Build a moderator from a ``moderation:`` mapping, a YAML file holding one, or a parsed config.

    from rlhf.moderation import build_moderator, load_moderation_config
    moderator = build_moderator({"backend": "rules"})
    moderator = build_moderator(load_moderation_config("configs/quickstart/moderation.yaml"))

The backends that need torch (classifier, guard) are imported only when one is built.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from rlhf.moderation.base import ModerationConfigError, Moderator
from rlhf.moderation.config import ModerationConfig, parse_moderation_config


def build_moderator(config: ModerationConfig | Mapping[str, Any] | str | os.PathLike) -> Moderator:
    """The moderator ``config`` names (see :mod:`rlhf.moderation.config` for the mapping's keys).

    Raises ModerationConfigError (a ConfigError) naming the file and the key on a wrong mapping, and when a
    backend cannot be built from it (a model that does not load, a bad rule).
    """
    config = parse_moderation_config(config)
    try:
        if config.backend == "rules":
            from rlhf.moderation.rules import RulesModerator

            return RulesModerator.from_config(config.rules, base_dir=config.base_dir)
        if config.backend == "classifier":
            from rlhf.moderation.classifier import ClassifierModerator

            return ClassifierModerator.from_config(
                config.classifier, base_dir=config.base_dir, taxonomy=config.taxonomy
            )
        if config.backend == "guard":
            from rlhf.moderation.guard import GuardModerator

            return GuardModerator.from_config(
                config.guard, base_dir=config.base_dir, taxonomy=config.taxonomy
            )
        from rlhf.moderation.cascade import CascadeModerator

        return CascadeModerator.from_config(config)
    except ModerationConfigError as err:
        if config.source and not str(err).startswith(config.source):
            raise ModerationConfigError(f"{config.source}: moderation.{err}") from None
        raise
