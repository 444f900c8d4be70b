"""Outputs never destroy what vlavad did not write, and folders are complete or absent."""

from __future__ import annotations

import json
import os
import shutil
import threading

import pytest

from vlavad.core.errors import OutputError
from vlavad.core.fileio import atomic_write_text, check_output_folder, staged_folder, written_by_vlavad


def model_folder(path):
    """What staged_folder needs to accept a folder as a model: its marker."""
    (path / "model.json").write_text(json.dumps({"format": "vlavad-model/1"}))


def test_new_empty_and_own_folders_are_accepted(tmp_path):
    assert check_output_folder(tmp_path / "new" / "deeper", "model")
    (tmp_path / "empty").mkdir()
    assert check_output_folder(tmp_path / "empty", "model")
    with staged_folder(tmp_path / "mine", "model") as staging:
        model_folder(staging)
    assert check_output_folder(tmp_path / "mine", "model")


@pytest.mark.parametrize("case", ["user folder", "file", "under a file", "a run is not a model", "cwd"])
def test_anything_else_is_refused_and_left_untouched(tmp_path, case, monkeypatch):
    thesis = tmp_path / "home" / "thesis.tex"
    thesis.parent.mkdir()
    thesis.write_text("three years of work")
    target = {
        "user folder": thesis.parent,
        "file": thesis,
        "under a file": thesis / "model",
        "a run is not a model": tmp_path / "run",
        "cwd": tmp_path / "home",
    }[case]
    if case == "a run is not a model":
        target.mkdir()
        (target / "results.json").write_text(json.dumps({"format": "vlavad-run/1"}))
    with pytest.raises(OutputError) as error:
        check_output_folder(target, "model")
    assert "\n" not in str(error.value)
    assert thesis.read_text() == "three years of work"


def test_unwritable_folder_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(os, "access", lambda path, mode: False)  # as for a folder this user may not write (root may write anywhere)
    with pytest.raises(OutputError, match="permission denied"):
        check_output_folder(tmp_path / "model", "model")


def test_a_failed_build_leaves_nothing_and_keeps_the_old_folder(tmp_path):
    with staged_folder(tmp_path / "model", "model") as staging:
        model_folder(staging)
        (staging / "weights").write_text("old")
    with pytest.raises(KeyboardInterrupt):
        with staged_folder(tmp_path / "model", "model") as staging:
            model_folder(staging)
            raise KeyboardInterrupt
    assert (tmp_path / "model" / "weights").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_a_folder_without_its_marker_is_never_put_in_place(tmp_path):
    with pytest.raises(RuntimeError, match="marker"):
        with staged_folder(tmp_path / "model", "model") as staging:
            (staging / "weights").write_text("no model.json")
    assert not (tmp_path / "model").exists()


def test_a_user_folder_that_appeared_meanwhile_is_not_replaced(tmp_path):
    with pytest.raises(OutputError):
        with staged_folder(tmp_path / "model", "model") as staging:
            model_folder(staging)
            (tmp_path / "model").mkdir()
            (tmp_path / "model" / "notes.txt").write_text("mine")
    assert (tmp_path / "model" / "notes.txt").read_text() == "mine"


def test_racing_replacements_never_collide(tmp_path):
    errors = []

    def save(i):
        try:
            with staged_folder(tmp_path / "model", "model") as staging:
                model_folder(staging)
                (staging / "who").write_text(str(i))
        except Exception as exc:  # any collision is a failure of the test
            errors.append(exc)

    for _ in range(5):
        threads = [threading.Thread(target=save, args=(i,)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert errors == []
    assert written_by_vlavad(tmp_path / "model", "model")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]  # no leftovers


def test_atomic_text_keeps_the_usual_permissions(tmp_path):
    path = tmp_path / "a.json"
    atomic_write_text(path, "{}")
    assert path.stat().st_mode & 0o644 == 0o644


def test_file_versions_tell_same_size_swaps_apart_and_hashes_follow_them(tmp_path, monkeypatch):
    import hashlib
    import time

    from vlavad.core import fileio
    from vlavad.core.fileio import file_sha256, file_version

    monkeypatch.setattr(fileio, "_SETTLED_NS", 0)
    path = tmp_path / "weights.bin"
    path.write_bytes(b"a" * 100)
    time.sleep(0.05)
    first = file_version(path)
    assert file_sha256(path) == hashlib.sha256(b"a" * 100).hexdigest() and file_version(path) == first
    stat = path.stat()
    time.sleep(0.05)
    path.write_bytes(b"b" * 100)
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # size and mtime as before: only the ctime tells
    assert file_version(path) != first and file_sha256(path) == hashlib.sha256(b"b" * 100).hexdigest()
    replacement = tmp_path / "other.bin"
    replacement.write_bytes(b"c" * 100)
    os.utime(replacement, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    os.replace(replacement, path)  # renamed over it: a new inode
    assert file_sha256(path) == hashlib.sha256(b"c" * 100).hexdigest()


def test_a_file_changed_within_the_last_seconds_is_hashed_every_time(tmp_path):
    import hashlib

    from vlavad.core.fileio import file_sha256

    path = tmp_path / "weights.bin"
    path.write_bytes(b"a" * 100)
    assert file_sha256(path) == hashlib.sha256(b"a" * 100).hexdigest()
    stat = path.stat()
    path.write_bytes(b"b" * 100)  # within the same timestamp tick, possibly: the ctime may not change
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert file_sha256(path) == hashlib.sha256(b"b" * 100).hexdigest()


def test_a_deeply_nested_marker_file_is_not_vlavads(tmp_path):
    folder = tmp_path / "theirs"
    folder.mkdir()
    (folder / "model.json").write_text("[" * 100_000 + "]" * 100_000)
    assert not written_by_vlavad(folder, "model")
    with pytest.raises(OutputError, match="not a vlavad model"):
        check_output_folder(folder, "model")


def test_a_file_is_never_written_into_a_folder_that_was_deleted(tmp_path):
    """A folder deleted while it is filled (a cleaner took it) makes the next write fail: re-made
    with part of its files, it would pass for complete."""
    from vlavad.core.fileio import atomic_write_json

    folder = tmp_path / "result"
    folder.mkdir()
    shutil.rmtree(folder)
    with pytest.raises(FileNotFoundError):
        atomic_write_json(folder / "app.json", {"id": 1})
    assert not folder.exists()


def test_a_folder_being_built_is_locked_until_it_is_in_place(tmp_path):
    from vlavad.core.fileio import is_staging, remove_if_abandoned

    with staged_folder(tmp_path / "model", "model") as staging:
        assert is_staging(staging.name)
        assert not remove_if_abandoned(staging) and staging.is_dir()  # its writer is alive
        model_folder(staging)
        # A model saved inside another folder being built (the app's result) locks nothing twice.
        with staged_folder(staging / "inner", "model") as inner:
            model_folder(inner)
    assert written_by_vlavad(tmp_path / "model", "model") and written_by_vlavad(tmp_path / "model" / "inner", "model")
    abandoned = tmp_path / ".model.0123456789ab.part"  # as a killed writer leaves it
    abandoned.mkdir()
    assert remove_if_abandoned(abandoned) and not abandoned.exists()
