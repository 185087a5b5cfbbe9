"""What every command shares: argument parsing that returns instead of exiting, and one-line
error reporting for user mistakes (no traceback)."""

from __future__ import annotations

import argparse
import math
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from neurep.errors import NeurepError

PROG = "neurep"
EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class CommandError(Exception):
    """A user mistake the command line itself detects (missing file, wrong extension)."""


def parse_args(
    parser: argparse.ArgumentParser, argv: Sequence[str] | None
) -> argparse.Namespace | int:
    """Parse ``argv``; on ``--help`` or a usage error return argparse's exit code instead."""
    try:
        return parser.parse_args(None if argv is None else list(argv))
    except SystemExit as stop:  # argparse has printed the help or the usage error
        return stop.code if isinstance(stop.code, int) else EXIT_USAGE


def run_command(command: Callable[[argparse.Namespace], int], args: argparse.Namespace) -> int:
    """Run ``command(args)``; report user mistakes as ``neurep: error: ...`` on stderr."""
    try:
        return command(args)
    except (CommandError, NeurepError, OSError) as error:
        print(f"{PROG}: error: {describe_error(error)}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


def describe_error(error: BaseException) -> str:
    """A one-line description of ``error`` (OSErrors as ``file: reason``)."""
    if isinstance(error, OSError) and not isinstance(error, NeurepError) and error.strerror:
        where = f"{error.filename}: " if error.filename else ""
        return f"{where}{error.strerror[0].lower()}{error.strerror[1:]}"
    text = str(error) or type(error).__name__
    return " ".join(text.split())  # one line, whatever the message held


def existing_file(path_text: str, what: str = "input") -> Path:
    """``path_text`` as a Path, or CommandError if it is not an existing file."""
    path = Path(path_text)
    if not path.exists():
        raise CommandError(f"{path}: no such file")
    if not path.is_file():
        raise CommandError(f"{path}: the {what} must be a file, not a directory")
    return path


def names_a_folder(path_text: str) -> bool:
    """Whether ``path_text`` ends in a path separator (``frames/``): pathlib drops it."""
    separators = (os.sep, os.altsep) if os.altsep else (os.sep,)
    return path_text.endswith(separators)


def output_path(path_text: str, suffixes: Sequence[str], what: str) -> Path:
    """``path_text`` as a Path whose suffix is one of ``suffixes`` and whose folder exists."""
    path = Path(path_text)
    if path.suffix.lower() not in suffixes:
        choices = ", ".join(suffixes)
        raise CommandError(f"{path}: the {what} must end in {choices}")
    if not path.parent.is_dir():
        raise CommandError(f"{path.parent}: no such directory for the {what}")
    return path


def positive_int(text: str) -> int:
    """argparse type: an integer above zero."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text} is not positive")
    return value


def frame_range(text: str) -> tuple[int, int | None]:
    """argparse type: ``A:B`` source frames (either side may be empty; stop excluded)."""
    from neurep.modalities.video import parse_frame_range

    try:
        return parse_frame_range(text)
    except NeurepError as error:
        raise argparse.ArgumentTypeError(describe_error(error)) from None


def frame_size(text: str) -> tuple[int, int]:
    """argparse type: ``WxH`` (``640x360``) as ``(width, height)``."""
    from neurep.modalities.video import parse_size

    try:
        size = parse_size(text)
    except NeurepError as error:
        raise argparse.ArgumentTypeError(describe_error(error)) from None
    assert size is not None  # parse_size gives None only for None
    return size


def json_safe(value: Any) -> Any:
    """``value`` with non-finite floats replaced by None, so strict JSON parsers accept it."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: json_safe(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(item) for item in value]
    return value
