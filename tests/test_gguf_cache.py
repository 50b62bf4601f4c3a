"""rlhf.gguf_cache: an entry is built once per file version, never half-written, and the cache can be off."""

import os

from rlhf import gguf_cache


def make_file(tmp_path, text="weights"):
    path = tmp_path / "model.Q4_1.gguf"
    path.write_text(text)
    return path


def writer(calls: list):
    def build(folder):
        calls.append(folder)
        folder.mkdir()
        (folder / "config.json").write_text("{}")

    return build


def test_a_miss_builds_once_and_a_hit_reads_the_same_entry(tmp_path, monkeypatch):
    monkeypatch.setenv("RLHF_GGUF_CACHE", str(tmp_path / "cache"))
    gguf, calls = make_file(tmp_path), []
    entry = gguf_cache.cached(gguf, "model-float32", writer(calls))
    assert entry is not None and (entry / "config.json").is_file() and len(calls) == 1
    assert gguf_cache.cached(gguf, "model-float32", writer(calls)) == entry and len(calls) == 1
    assert [p.name for p in (tmp_path / "cache").iterdir()] == [entry.name]  # no partial folder left
    other = gguf_cache.cached(gguf, "tokenizer", writer(calls))  # another kind, another entry
    assert other != entry and len(calls) == 2


def test_a_changed_file_misses(tmp_path, monkeypatch):
    monkeypatch.setenv("RLHF_GGUF_CACHE", str(tmp_path / "cache"))
    gguf = make_file(tmp_path)
    first = gguf_cache.entry_path(gguf, "tokenizer")
    gguf.write_text("new weights, another size")
    assert gguf_cache.entry_path(gguf, "tokenizer") != first


def test_off_or_unwritable_loads_without_the_cache(tmp_path, monkeypatch, caplog):
    gguf, calls = make_file(tmp_path), []
    monkeypatch.setenv("RLHF_GGUF_CACHE", "off")
    assert gguf_cache.cached(gguf, "tokenizer", writer(calls)) is None and calls == []
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    monkeypatch.setenv("RLHF_GGUF_CACHE", str(blocker / "cache"))
    assert gguf_cache.cached(gguf, "tokenizer", writer(calls)) is None
    assert "could not write" in caplog.text and blocker.read_text() == ""


def test_a_failed_build_leaves_nothing_and_a_racing_process_keeps_its_entry(tmp_path, monkeypatch):
    monkeypatch.setenv("RLHF_GGUF_CACHE", str(tmp_path / "cache"))
    gguf = make_file(tmp_path)

    def fails(folder):
        folder.mkdir()
        raise OSError("disk full")

    assert gguf_cache.cached(gguf, "tokenizer", fails) is None
    assert list((tmp_path / "cache").iterdir()) == []

    def loses_the_race(folder):  # another process renames its finished entry into place first
        writer([])(folder)
        theirs = gguf_cache.entry_path(gguf, "tokenizer")
        theirs.mkdir()
        (theirs / "theirs").write_text("")

    entry = gguf_cache.cached(gguf, "tokenizer", loses_the_race)
    assert (entry / "theirs").is_file() and os.listdir(tmp_path / "cache") == [entry.name]
