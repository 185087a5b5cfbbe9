"""``neurep`` dispatch, help, version and usage errors (no fitting needed)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from neurep._version import __version__
from neurep.cli import decode, fit, info
from neurep.cli.main import COMMANDS, main


def test_version_is_printed(capsys):
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"neurep {__version__}"


def test_no_command_prints_usage_and_fails(capsys):
    assert main([]) == 2
    assert "commands:" in capsys.readouterr().err


def test_help_lists_every_command(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for name in ("fit", "decode", "info"):
        assert f"  {name}" in out


def test_unknown_command_is_one_error_line(capsys):
    assert main(["compress", "x.png"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("neurep: error: unknown command 'compress'")
    assert err.count("\n") == 1


@pytest.mark.parametrize("command", ["fit", "decode", "info"])
def test_each_command_has_its_own_help_and_returns_zero(command, capsys):
    assert main([command, "--help"]) == 0
    assert f"usage: neurep {command}" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("module", "argv"),
    [
        (fit, ["in.png"]),  # -o missing
        (fit, ["in.png", "-o", "out.nrep", "--steps", "0"]),
        (fit, ["in.png", "-o", "out.nrep", "--steps", "many"]),
        (decode, ["in.nrep"]),
        (info, []),
    ],
)
def test_usage_errors_return_two_without_raising(module, argv, capsys):
    assert module.main(argv) == 2
    assert "error:" in capsys.readouterr().err


def test_dispatch_reaches_the_command_module(tmp_path, capsys):
    missing = tmp_path / "absent.nrep"
    assert main(["info", str(missing)]) == info.main([str(missing)]) == 1
    assert set(COMMANDS) == {"fit", "decode", "info", "convert", "pack", "unpack"}


def test_python_dash_m_neurep_runs_the_same_main():
    result = subprocess.run(
        [sys.executable, "-m", "neurep", "--version"], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0
    assert result.stdout.strip() == f"neurep {__version__}"
