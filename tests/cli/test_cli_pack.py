"""``neurep pack`` / ``neurep unpack`` on a folder of golden .nrep files (no fitting needed):
exit codes, the files written, the summary line, and one-line errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

import neurep
from neurep.cli.main import main
from neurep.data.packs import PackReader

GOLDEN = Path(__file__).parents[1] / "golden" / "files"
ITEMS = ("array_1d_float32.nrep", "image_rgb_uint8.nrep")


def tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


@pytest.fixture
def pack_folder(tmp_path) -> Path:
    """A converted-looking folder: two golden .nrep files (one in a subfolder) and an index."""
    folder = tmp_path / "converted"
    (folder / "sub").mkdir(parents=True)
    shutil.copyfile(GOLDEN / ITEMS[0], folder / ITEMS[0])
    shutil.copyfile(GOLDEN / ITEMS[1], folder / "sub" / ITEMS[1])
    rows = [
        {
            "output": "sub/" + ITEMS[1],
            "source": "sub/image.png",
            "status": "ok",
            "modality": "image",
        },
        {"output": "gone.nrep", "source": "gone.png", "status": "error", "error": "bad input"},
        {"output": ITEMS[0], "source": "signal.npy", "status": "ok", "modality": "array"},
    ]
    (folder / "index.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    return folder


def test_pack_then_unpack_round_trips_and_summarises(pack_folder, tmp_path, capsys):
    output = tmp_path / "data.h5"
    assert main(["pack", str(pack_folder), "-o", str(output), "-q"]) == 0
    assert capsys.readouterr().out == ""  # -q: nothing on stdout
    assert main(["pack", str(pack_folder), "-o", str(output)]) == 0
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert line.startswith(f"packed 2 items (3 files) into {output}")
    with PackReader(output) as reader:
        assert reader.names == ["sub/" + ITEMS[1], ITEMS[0]]  # index order; the error row is out
        got = np.asarray(reader.load("sub/image.png").decode())
        assert np.array_equal(got, np.asarray(neurep.load(GOLDEN / ITEMS[1]).decode()))
    restored = tmp_path / "restored"
    assert main(["unpack", str(output), "-o", str(restored)]) == 0
    assert capsys.readouterr().out.strip().endswith(f"unpacked 3 files (2 items) into {restored}")
    assert tree(restored) == tree(pack_folder)


def test_errors_exit_1_with_one_line(pack_folder, tmp_path, capsys):
    missing = tmp_path / "missing"
    assert main(["pack", str(missing), "-o", str(tmp_path / "p.h5")]) == 1
    assert capsys.readouterr().err.strip() == f"neurep: error: {missing}: no such folder"
    assert main(["pack", str(pack_folder), "-o", str(tmp_path / "p.zip")]) == 1
    assert "must end in .h5, .hdf5" in capsys.readouterr().err
    assert main(["unpack", str(tmp_path / "none.h5"), "-o", str(tmp_path / "o")]) == 1
    assert "no such file" in capsys.readouterr().err
    not_a_pack = pack_folder / ITEMS[0]
    assert main(["unpack", str(not_a_pack), "-o", str(tmp_path / "o"), "-q"]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"neurep: error: {not_a_pack}: not a readable HDF5 pack")
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "o").exists()
    assert not list(tmp_path.glob("*.h5")) and not list(tmp_path.glob(".*"))
    assert main(["pack"]) == 2  # usage error


def test_unpack_into_a_non_empty_folder_needs_force(pack_folder, tmp_path, capsys):
    output = tmp_path / "data.h5"
    assert main(["pack", str(pack_folder), "-o", str(output), "-q"]) == 0
    assert main(["unpack", str(output), "-o", str(pack_folder), "-q"]) == 1
    assert "not empty" in capsys.readouterr().err
    before = tree(pack_folder)
    (pack_folder / "extra.txt").write_text("replaced by --force")
    assert main(["unpack", str(output), "-o", str(pack_folder), "--force", "-q"]) == 0
    assert tree(pack_folder) == before


def test_info_summarises_a_pack_and_describes_its_items(pack_folder, tmp_path, capsys):
    packed = tmp_path / "data.h5"
    assert main(["pack", str(pack_folder), "-o", str(packed), "-q"]) == 0
    capsys.readouterr()
    assert main(["info", str(packed), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["items"] == 2 and summary["modalities"] == {"image": 1, "array": 1}
    assert summary["file_bytes"] == packed.stat().st_size
    assert main(["info", str(packed), "sub/" + ITEMS[1], "--json"]) == 0
    item = json.loads(capsys.readouterr().out)
    assert item["metadata"] == neurep.open(GOLDEN / ITEMS[1]).metadata
    assert item["file_bytes"] == (GOLDEN / ITEMS[1]).stat().st_size
    assert main(["info", str(packed), "1"]) == 0
    assert ITEMS[0] in capsys.readouterr().out.splitlines()[0]


@pytest.mark.parametrize("item", ["nope.nrep", "7"])
def test_info_names_an_unknown_item_in_one_line(pack_folder, tmp_path, capsys, item):
    packed = tmp_path / "data.h5"
    assert main(["pack", str(pack_folder), "-o", str(packed), "-q"]) == 0
    capsys.readouterr()
    assert main(["info", str(packed), item]) == 1
    err = capsys.readouterr().err
    assert err.startswith("neurep: error:") and item.removesuffix(".nrep") in err


def test_info_refuses_an_item_of_a_single_file(capsys):
    assert main(["info", str(GOLDEN / ITEMS[0]), "0"]) == 1
    assert "not a pack" in capsys.readouterr().err
