"""``neurep``: the console script; dispatches ``neurep COMMAND ...`` to the command's ``main``."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence

from neurep._version import __version__
from neurep.cli._common import EXIT_USAGE, PROG

COMMANDS = {
    "fit": (
        "neurep.cli.fit",
        "fit a neural datum to a file (image, video, mesh, ...) and save it as .nrep",
    ),
    "decode": (
        "neurep.cli.decode",
        "decode a .nrep file to an image, video, frames, mesh, point cloud or .npy",
    ),
    "info": ("neurep.cli.info", "summarise a .nrep file from its metadata"),
    "convert": ("neurep.cli.convert", "fit every item of a folder, glob, list or HDF5 file"),
    "pack": ("neurep.cli.pack", "write a converted folder into one HDF5 file"),
    "unpack": ("neurep.cli.unpack", "restore a packed folder byte for byte"),
}


def usage() -> str:
    lines = [f"usage: {PROG} COMMAND [ARGS] (or {PROG} COMMAND --help)", "", "commands:"]
    lines += [f"  {name:<8} {summary}" for name, (_, summary) in COMMANDS.items()]
    lines += ["", "options:", "  -h, --help  show this message", "  --version   show the version"]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``neurep`` with ``argv`` (default: ``sys.argv[1:]``); return the exit status."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(usage(), file=sys.stdout if args else sys.stderr)
        return 0 if args else EXIT_USAGE
    if args[0] == "--version":
        print(f"{PROG} {__version__}")
        return 0
    command = COMMANDS.get(args[0])
    if command is None:
        print(
            f"{PROG}: error: unknown command {args[0]!r} (choose from {', '.join(COMMANDS)})",
            file=sys.stderr,
        )
        return EXIT_USAGE
    module = importlib.import_module(command[0])
    return module.main(args[1:])


if __name__ == "__main__":
    sys.exit(main())
