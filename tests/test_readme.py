"""The README's Python examples run as written (in a temporary folder)."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def _api_examples() -> list[str]:
    section = README.read_text().split("## Python API", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, flags=re.S)


def test_readme_python_api_examples_run(tmp_path, monkeypatch):
    examples = _api_examples()
    assert examples, "the README lost its Python API example"
    monkeypatch.chdir(tmp_path)
    for code in examples:
        exec(compile(code, str(README), "exec"), {})
    assert (tmp_path / "image.nrep").exists() and (tmp_path / "signal.nrep").exists()


def _cli_examples() -> list[list[str]]:
    """The ``neurep ...`` lines of the README's command-line block, as argv lists."""
    section = README.read_text().split("## Command line", 1)[1].split("\n## ", 1)[0]
    block = re.findall(r"```bash\n(.*?)```", section, flags=re.S)[0]
    lines = [line.split("#", 1)[0].split() for line in block.splitlines()]
    return [words[1:] for words in lines if words and words[0] == "neurep"]


def test_readme_command_line_examples_run(tmp_path, monkeypatch):
    import numpy as np
    from PIL import Image

    from neurep.cli.main import main

    examples = _cli_examples()
    assert len(examples) >= 3, "the README lost its command-line examples"
    monkeypatch.chdir(tmp_path)
    y, x = np.mgrid[0:24, 0:32]
    photo = np.stack([x * 8, y * 10, (x + y) * 4], axis=-1).astype(np.uint8)
    Image.fromarray(photo).save("photo.png")
    for argv in examples:
        assert main(argv) == 0, f"neurep {' '.join(argv)} failed"
    decoded = np.asarray(Image.open("photo.decoded.png"))
    assert decoded.shape == photo.shape and decoded.dtype == photo.dtype
