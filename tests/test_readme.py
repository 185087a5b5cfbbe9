"""The README's examples run as written (in a temporary folder); its fit signature is real."""

from __future__ import annotations

import ast
import inspect
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
    from neurep.modalities._video_io import write_video

    clip = np.stack([np.roll(photo, 2 * t, axis=1) for t in range(12)])  # (12, 24, 32, 3)
    write_video(clip, "clip.mp4", "24/1")
    import trimesh

    chair = trimesh.creation.box((0.6, 1.0, 0.5))
    chair.export("chair.obj")
    for argv in examples:
        assert main(argv) == 0, f"neurep {' '.join(argv)} failed"
    decoded = np.asarray(Image.open("photo.decoded.png"))
    assert decoded.shape == photo.shape and decoded.dtype == photo.dtype
    import av

    with av.open("out.mp4") as container:
        frames = [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]
    assert len(frames) == 6 and frames[0].shape == (180, 320, 3)
    mesh = trimesh.load("chair.decoded.obj")
    assert len(mesh.faces) > 0  # marching cubes of the decoded occupancy, in world units
    assert abs(mesh.bounds - chair.bounds).max() <= 2 * 1.0 / (16 - 3)


def _readme_fit_signature() -> list[tuple[str, str, str]]:
    """(name, kind, repr of the default) for each parameter of the README's ``neurep.fit``.

    The signature is the one ```text block of the Python API section that starts with
    ``neurep.fit(``; it is parsed (never run) as the parameter list of a ``def``.
    """
    section = README.read_text().split("## Python API", 1)[1].split("\n## ", 1)[0]
    blocks = [
        block.strip()
        for block in re.findall(r"```text\n(.*?)```", section, flags=re.S)
        if block.lstrip().startswith("neurep.fit(")
    ]
    assert len(blocks) == 1, "the README's Python API section needs one ```text neurep.fit(...)"
    function = ast.parse(f"def fit{blocks[0].removeprefix('neurep.fit')}: pass").body[0]
    args = function.args
    empty = repr(inspect.Parameter.empty)

    def default(node: ast.expr | None) -> str:
        return empty if node is None else repr(ast.literal_eval(node))

    positional = [
        *((a, "POSITIONAL_ONLY") for a in args.posonlyargs),
        *((a, "POSITIONAL_OR_KEYWORD") for a in args.args),
    ]
    defaults = [None] * (len(positional) - len(args.defaults)) + list(args.defaults)
    params = [(a.arg, kind, default(d)) for (a, kind), d in zip(positional, defaults, strict=True)]
    if args.vararg:
        params.append((args.vararg.arg, "VAR_POSITIONAL", empty))
    params += [
        (a.arg, "KEYWORD_ONLY", default(d))
        for a, d in zip(args.kwonlyargs, args.kw_defaults, strict=True)
    ]
    if args.kwarg:
        params.append((args.kwarg.arg, "VAR_KEYWORD", empty))
    return params


def test_readme_fit_signature_is_the_real_one():
    import neurep.api

    real = [
        (p.name, p.kind.name, repr(p.default))
        for p in inspect.signature(neurep.api.fit).parameters.values()
    ]
    assert _readme_fit_signature() == real
