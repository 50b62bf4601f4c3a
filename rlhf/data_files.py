"""Local data files read with 🤗 datasets, with one-line errors: the one reader every stage's data goes through.

    builder, files = local_data_files(Path("data/builtin/sft"))     # a file, or a folder of <split>.<ext> files
    data = read_data_files(builder, files, "data/builtin/sft")        # DatasetDict, one split per file

A file the builder cannot parse (a broken JSON line, a ragged CSV) raises a ConfigError naming the file and
the parser's own words ("JSON parse error: Invalid value. in row 1"), not ``datasets``' traceback; its log
line about the same failure is held back, so the user sees the error once. Callers pass their own
ConfigError subclass as ``error``.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Mapping
from pathlib import Path

from rlhf.config import ConfigError

# Suffix -> datasets builder. Plain text only where documents are wanted (corpora): see ``with_text``.
FILE_BUILDERS = {".json": "json", ".jsonl": "json", ".parquet": "parquet", ".csv": "csv"}
TEXT_BUILDERS = {**FILE_BUILDERS, ".txt": "text"}


def local_data_files(
    path: Path, with_text: bool = False, error: type[ConfigError] = ConfigError
) -> tuple[str, dict[str, str]]:
    """The ``datasets`` builder and ``{split: file}`` for a local file (its rows are the ``train`` split) or a
    folder of ``<split>.<ext>`` files of one format. ``with_text``: ``.txt`` files count too.

    Raises ``error`` for an unsupported file type, a folder without data files, or split files of mixed formats.
    """
    builders = TEXT_BUILDERS if with_text else FILE_BUILDERS
    if path.is_file():
        builder = builders.get(path.suffix.lower())
        if builder is None:
            raise error(
                f"dataset '{path}': unsupported file type '{path.suffix}' (use one of {sorted(builders)})"
            )
        return builder, {"train": str(path)}
    files = sorted(p for p in path.iterdir() if p.suffix.lower() in builders)
    if not files:
        raise error(f"dataset '{path}': the folder holds no {sorted(builders)} files")
    kinds = {builders[p.suffix.lower()] for p in files}
    if len(kinds) != 1:
        raise error(f"dataset '{path}': split files must share one format (found {sorted(kinds)})")
    return kinds.pop(), {p.stem: str(p) for p in files}


def read_data_files(
    builder: str,
    data_files: Mapping[str, str] | str,
    source: str,
    error: type[ConfigError] = ConfigError,
    **kwargs,
):
    """``datasets.load_dataset(builder, data_files=...)`` (a ``DatasetDict``, or a ``Dataset`` when ``kwargs``
    name a ``split``). Raises ``error`` naming ``source`` and what the parser said when a file does not parse."""
    from datasets import load_dataset

    try:
        with _parser_logs_held_back():
            return load_dataset(
                builder,
                data_files=dict(data_files) if isinstance(data_files, Mapping) else data_files,
                **kwargs,
            )
    except Exception as err:  # datasets wraps the parser's error (ArrowInvalid, pandas' ParserError, ...)
        cause = err.__cause__ or err
        words = str(cause).strip().splitlines()[0] if str(cause).strip() else type(cause).__name__
        raise error(f"dataset '{source}': cannot read it as {builder}: {words}") from None


@contextlib.contextmanager
def _parser_logs_held_back() -> Iterator[None]:
    """``datasets``' file builders log a failed parse at ERROR before raising; the raised error is reported."""
    log = logging.getLogger("datasets.packaged_modules")
    level = log.level
    log.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        log.setLevel(level)
