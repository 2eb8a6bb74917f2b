"""The persistent XLA cache (`keras_bdgm.xla_cache`): only entries keras_bdgm signed reach
TensorFlow, so a corrupt or foreign entry costs a compilation, never a failed step.

The folder logic runs in this process on files made here, checked against hashlib; the
set-up (`configure`, which must run before TensorFlow loads) runs in a child Python that
loads the module file alone, without TensorFlow. tests/test_xla.py trains through the
cache in fresh processes.
"""

import hashlib
import json
import os
import subprocess
import sys

import pytest

from keras_bdgm import xla_cache

MODULE_FILE = xla_cache.__file__


def _entry(folder, name, data):
    path = os.path.join(folder, name + xla_cache.ENTRY_SUFFIX)
    with open(path, "wb") as f:
        f.write(data)
    return path


def _sign_by_hand(path):
    with open(path + xla_cache.SIGNATURE_SUFFIX, "w", encoding="ascii") as f:
        f.write(hashlib.sha256(open(path, "rb").read()).hexdigest() + "\n")


def test_prune_keeps_signed_entries_and_deletes_corrupt_foreign_and_orphans(tmp_path):
    folder = str(tmp_path)
    good = _entry(folder, "good", b"compiled program" * 100)
    _sign_by_hand(good)
    corrupt = _entry(folder, "corrupt", b"whole entry" * 100)
    _sign_by_hand(corrupt)
    with open(corrupt, "r+b") as f:  # truncated after it was signed (a crash mid-copy, a full disk)
        f.truncate(50)
    foreign = _entry(folder, "foreign", b"an entry nobody signed")
    orphan = os.path.join(folder, "gone" + xla_cache.ENTRY_SUFFIX + xla_cache.SIGNATURE_SUFFIX)
    open(orphan, "w").write("0" * 64)
    other = tmp_path / "notes.txt"
    other.write_text("not an entry")

    removed = xla_cache.prune(folder)

    assert sorted(removed) == ["corrupt.pb", "foreign.pb"]
    assert sorted(os.listdir(folder)) == ["good.pb", "good.pb.sha256", "notes.txt"]
    assert open(good, "rb").read() == b"compiled program" * 100


def test_sign_signs_only_unsigned_entries_written_since(tmp_path):
    folder = str(tmp_path)
    old = _entry(folder, "old", b"from before")
    os.utime(old, (1000.0, 1000.0))
    new = _entry(folder, "new", b"written now")
    signed_before = _entry(folder, "signed", b"signed already")
    _sign_by_hand(signed_before)
    assert xla_cache.sign(folder, since=2000.0) == ["new.pb"]
    assert open(new + ".sha256").read().strip() == hashlib.sha256(b"written now").hexdigest()
    assert not os.path.exists(old + ".sha256")
    assert xla_cache.prune(folder) == ["old.pb"]  # unsigned: the next process deletes it


def _configure_in_child(env, base=None):
    """configure() in a Python without TensorFlow: (folder, note, TF_XLA_FLAGS)."""
    code = (
        "import importlib.util, json, os, sys\n"
        f"spec = importlib.util.spec_from_file_location('xla_cache', {MODULE_FILE!r})\n"
        "m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m)\n"
        f"folder = m.configure({base!r})\n"
        "assert 'tensorflow' not in sys.modules\n"
        "print(json.dumps([folder, m.note(), os.environ.get('TF_XLA_FLAGS')]))\n"
    )
    full_env = {k: v for k, v in os.environ.items() if k not in ("TF_XLA_FLAGS", xla_cache.ENV)}
    full_env.update(env)
    out = subprocess.run([sys.executable, "-c", code], env=full_env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def test_configure_passes_a_checked_versioned_folder_to_tensorflow(tmp_path):
    base = tmp_path / "cache"
    folder, note, flags = _configure_in_child({xla_cache.ENV: str(base)})
    assert os.path.dirname(folder) == str(base) and os.path.basename(folder).startswith("tf-")
    assert flags == f"--tf_xla_persistent_cache_directory={folder}" and note.startswith("on")
    bad = _entry(folder, "bad", b"unsigned")
    folder2, note2, _ = _configure_in_child({xla_cache.ENV: str(base)})
    assert folder2 == folder and not os.path.exists(bad) and "1 unsigned entries removed" in note2


def test_configure_keeps_the_users_flags_and_can_be_turned_off(tmp_path):
    mine = "--tf_xla_persistent_cache_directory=/somewhere/else"
    folder, note, flags = _configure_in_child({"TF_XLA_FLAGS": mine, xla_cache.ENV: str(tmp_path)})
    assert folder is None and flags == mine and "not managed" in note
    folder, note, flags = _configure_in_child({xla_cache.ENV: "off"})
    assert folder is None and flags is None and note.startswith("off")


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root writes into read-only folders")
def test_an_unwritable_cache_folder_turns_the_cache_off(tmp_path):
    base = tmp_path / "ro"
    base.mkdir()
    base.chmod(0o500)
    try:
        folder, note, flags = _configure_in_child({xla_cache.ENV: str(base)})
    finally:
        base.chmod(0o700)
    assert folder is None and flags is None and note.startswith("off: cannot use")


def test_an_unwritable_cache_folder_turns_the_cache_off_even_for_root(tmp_path):
    blocker = tmp_path / "a_file"  # a file where the folder should be: makedirs fails for anyone
    blocker.write_text("")
    folder, note, flags = _configure_in_child({xla_cache.ENV: str(blocker)})
    assert folder is None and flags is None and note.startswith("off: cannot use")
