"""Writing: input validation, atomic replacement, symlinks, SIGKILL at any moment."""

from __future__ import annotations

import os
import pickle
import signal
import stat
import subprocess
import sys
import textwrap
import time
import zipfile

import numpy as np
import pytest
import torch
from nrep_helpers import exercise, small_inputs

from neurep.errors import FormatError
from neurep.formats import _writer, open_nrep, write_nrep

# -- what the writer accepts -------------------------------------------------------------------


def _write(path, **changes):
    metadata, arrays, tensors = small_inputs()
    arguments = {"metadata": metadata, "arrays": arrays, "tensors": tensors, **changes}
    return write_nrep(path, **arguments)


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (lambda m: m.pop("modality"), "'modality' is a required property"),
        (lambda m: m.update(extra_key=1), "Additional properties"),
        (lambda m: m["quality"].update(psnr=float("inf")), "use null instead"),
        (lambda m: m["fit"].update(lr=float("nan")), "use null instead"),
        (lambda m: m["fit"].update(obj=object()), "not JSON-compatible"),
        (lambda m: m["embedding"].update(shape=[9]), "embedding says"),
        (lambda m: m["embedding"].update(array="frames"), "arrays has"),
        (lambda m: m["weights"].update(precision="fp8"), "weights/precision"),
        (lambda m: m["decoder"].update(name="has space"), "decoder/name"),
    ],
)
def test_metadata_that_breaks_the_schema_is_refused_and_nothing_is_written(tmp_path, edit, match):
    metadata, arrays, tensors = small_inputs()
    edit(metadata)
    path = tmp_path / "x.nrep"
    with pytest.raises(FormatError, match=match) as info:
        write_nrep(path, metadata=metadata, arrays=arrays, tensors=tensors)
    assert str(info.value).startswith(str(path))
    assert list(tmp_path.iterdir()) == []


def test_numpy_values_in_metadata_are_stored_as_plain_json(tmp_path):
    metadata, _, _ = small_inputs()
    metadata["fit"].update(steps=np.int64(3), loss=np.float32(0.5), shape=np.array([2, 3]))
    metadata["modality"]["configuration"]["size"] = (8, 8)
    _write(tmp_path / "x.nrep", metadata=metadata)
    fit = open_nrep(tmp_path / "x.nrep").metadata["fit"]
    assert fit["steps"] == 3 and fit["loss"] == 0.5 and fit["shape"] == [2, 3]


@pytest.mark.parametrize(
    ("changes", "error", "match"),
    [
        ({"arrays": {"embedding": np.zeros(3, dtype=np.complex64)}}, FormatError, "complex64"),
        ({"arrays": {"bad/name": np.zeros(3)}}, FormatError, "array name"),
        ({"arrays": {"embedding": [1, 2]}}, TypeError, "numpy array"),
        ({"tensors": {"w": torch.zeros(2, dtype=torch.complex64)}}, FormatError, "complex64"),
        ({"tensors": {"__metadata__": torch.zeros(2)}}, FormatError, "not allowed"),
        ({"tensors": {"w": np.zeros(2)}}, TypeError, "torch.Tensor"),
        ({"tensors": {"w": torch.zeros(3, 3).to_sparse()}}, FormatError, "sparse"),
        ({"array_chunks": {"embedding": (1, 2)}}, FormatError, "chunk shape"),
        ({"array_chunks": {"embedding": (0, 2, 2, 2)}}, FormatError, "chunk shape"),
        ({"array_chunks": {"other": (1,)}}, FormatError, "not given"),
        ({"metadata": [1]}, TypeError, "metadata must be a dict"),
    ],
)
def test_arrays_and_tensors_that_cannot_be_stored_are_refused(tmp_path, changes, error, match):
    with pytest.raises(error, match=match):
        _write(tmp_path / "x.nrep", **changes)
    assert list(tmp_path.iterdir()) == []


def test_shared_and_gpu_like_tensors_are_copied_not_refused(tmp_path):
    base = torch.arange(10.0)
    tensors = {"a": base, "b": base[2:5], "c": base.view(2, 5).t()}
    _write(tmp_path / "x.nrep", tensors=tensors)
    loaded = open_nrep(tmp_path / "x.nrep").read_tensors()
    for name, tensor in tensors.items():
        assert torch.equal(loaded[name], tensor)


def test_reading_never_unpickles(tmp_path, monkeypatch):
    _write(tmp_path / "x.nrep")

    def forbidden(*args, **kwargs):
        raise AssertionError("pickle used")

    monkeypatch.setattr(pickle, "loads", forbidden)
    monkeypatch.setattr(pickle, "load", forbidden)
    monkeypatch.setattr(pickle, "Unpickler", forbidden)
    monkeypatch.setattr(torch, "load", forbidden)
    exercise(str(tmp_path / "x.nrep"))
    assert b"\x80\x04\x95" not in (tmp_path / "x.nrep").read_bytes()  # no pickle protocol 4


# -- atomicity ---------------------------------------------------------------------------------


def _old_file(tmp_path):
    path = tmp_path / "x.nrep"
    metadata, arrays, tensors = small_inputs()
    metadata["fit"]["marker"] = "old"
    write_nrep(path, metadata=metadata, arrays=arrays, tensors=tensors)
    return path, path.read_bytes()


@pytest.mark.parametrize("failure", [OSError("disk full"), KeyboardInterrupt()])
def test_a_failure_while_writing_leaves_the_old_file_and_no_temporary(
    tmp_path, monkeypatch, failure
):
    path, old = _old_file(tmp_path)

    def fail_half_way(file, members):
        file.write(b"PK\x03\x04 partial")
        raise failure

    monkeypatch.setattr(_writer, "_write_zip", fail_half_way)
    with pytest.raises(type(failure)):
        _write(path)
    assert path.read_bytes() == old
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.nrep"]


def test_a_file_that_would_not_read_back_is_never_published(tmp_path, monkeypatch):
    path, old = _old_file(tmp_path)
    monkeypatch.setattr(_writer, "_write_zip", lambda file, members: file.write(b"garbage"))
    with pytest.raises(FormatError, match="refusing to write a file neurep cannot read back"):
        _write(path)
    assert path.read_bytes() == old
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.nrep"]


def test_a_symlink_at_the_target_is_replaced_not_followed(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    victim = outside / "victim.nrep"
    victim.write_bytes(b"precious")
    inside = tmp_path / "inside"
    inside.mkdir()
    link = inside / "x.nrep"
    link.symlink_to(victim)
    _write(link)
    assert victim.read_bytes() == b"precious"
    assert not link.is_symlink() and link.is_file()
    assert open_nrep(link).metadata["format"] == "neurep"
    assert sorted(p.name for p in outside.iterdir()) == ["victim.nrep"]
    dangling = inside / "y.nrep"
    dangling.symlink_to(outside / "does-not-exist.nrep")
    _write(dangling)
    assert not (outside / "does-not-exist.nrep").exists() and dangling.is_file()


def test_a_directory_target_is_refused(tmp_path):
    (tmp_path / "d.nrep").mkdir()
    with pytest.raises(IsADirectoryError):
        _write(tmp_path / "d.nrep")


def test_permissions_of_an_existing_file_are_kept_and_new_files_follow_the_umask(tmp_path):
    path, _ = _old_file(tmp_path)
    path.chmod(0o640)
    _write(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    previous = os.umask(0o027)
    try:
        _write(tmp_path / "new.nrep")
    finally:
        os.umask(previous)
    assert stat.S_IMODE((tmp_path / "new.nrep").stat().st_mode) == 0o640


_WRITER_SCRIPT = textwrap.dedent(
    """
    import os, sys, time
    import torch
    torch.set_num_threads(1)  # no thread pool, so forking below is safe
    sys.path.insert(0, sys.argv[2])
    from nrep_helpers import small_inputs
    from neurep.formats import write_nrep
    metadata, arrays, _ = small_inputs()
    metadata["fit"]["marker"] = "new"
    tensors = {"big": torch.arange(6_000_000, dtype=torch.float32)}
    started = time.perf_counter()
    write_nrep(sys.argv[3], metadata=metadata, arrays=arrays, tensors=tensors)  # warm up
    print(time.perf_counter() - started, flush=True)
    for _ in sys.stdin:  # one writer process per request, killed by the test
        pid = os.fork()
        if pid == 0:
            try:
                while True:
                    write_nrep(sys.argv[1], metadata=metadata, arrays=arrays, tensors=tensors)
            finally:
                os._exit(1)
        print(pid, flush=True)
        os.waitpid(pid, 0)
        print("reaped", flush=True)
    """
)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork and SIGKILL")
def test_sigkill_at_any_moment_leaves_the_old_or_the_new_complete_file(tmp_path):
    path, old = _old_file(tmp_path)
    helpers = os.path.dirname(__file__)
    warm = tmp_path.parent / f"{tmp_path.name}-warm.nrep"
    server = subprocess.Popen(
        [sys.executable, "-c", _WRITER_SCRIPT, str(path), helpers, str(warm)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    seen = set()
    try:
        one_write = float(server.stdout.readline())
        for fraction in (0.1, 0.3, 0.5, 0.7, 0.9, 1.2, 1.6, 2.5):  # of one write's duration
            server.stdin.write("go\n")
            server.stdin.flush()
            writer = int(server.stdout.readline())
            time.sleep(fraction * one_write)
            os.kill(writer, signal.SIGKILL)
            assert server.stdout.readline().strip() == "reaped"
            with open_nrep(path) as reader:
                marker = reader.metadata["fit"]["marker"]
                tensors = reader.read_tensors()  # complete: checksum and header verified
            assert marker in {"old", "new"}
            if marker == "new":
                assert tensors["big"].shape == (6_000_000,)
            else:
                assert path.read_bytes() == old
            seen.add(marker)
            strays = [p for p in tmp_path.iterdir() if p.name != "x.nrep"]
            assert all(p.name.startswith(".x.nrep.") and p.name.endswith(".tmp") for p in strays)
    finally:
        server.kill()
        server.wait()
    # stray temporaries (if any) never disturb later writes or reads
    _write(path)
    exercise(str(path))
    assert zipfile.ZipFile(path).testzip() is None
    assert seen  # usually both; a kill mid-write also leaves a temporary behind
