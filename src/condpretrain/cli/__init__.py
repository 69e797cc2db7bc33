"""``condpretrain`` command line: subcommands only; the work happens in the API.

Each command group lives in its own module with a ``register(subparsers)`` function.
Known problems (:class:`CondPretrainError`), and the machine's (a full or read-only
disk), become one line on stderr and exit 2.
"""

from __future__ import annotations

import errno
import sys
from collections.abc import Sequence

from condpretrain.cli import downstream, experiment, plan, select, train
from condpretrain.cli.flags import OneLineParser
from condpretrain.errors import CondPretrainError
from condpretrain.log import configure_cli_logging
from condpretrain.version import __version__

COMMAND_GROUPS = (select, train, experiment, plan, downstream)
# OSErrors that say what is wrong with the machine, not with the tool: one line each.
ENVIRONMENT_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES,
                                errno.EPERM, errno.EFBIG, errno.EIO, errno.ENAMETOOLONG})


def build_parser() -> OneLineParser:
    parser = OneLineParser(
        prog="condpretrain",
        description="Conditional pre-training: score a source pool for a target, select, "
                    "pre-train, fine-tune, report.",
    )
    parser.add_argument("--version", action="version", version=f"condpretrain {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for group in COMMAND_GROUPS:
        group.register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    configure_cli_logging(args.verbose)
    try:
        return int(args.handler(args) or 0)
    except CondPretrainError as exc:
        _error_line(f"condpretrain {args.command}: error: {_printable(str(exc))}")
        return 2
    except OSError as exc:  # the machine's fault (disk full, read-only...), not a bug
        if exc.errno not in ENVIRONMENT_ERRNOS:
            raise
        where = f": {exc.filename}" if exc.filename else ""
        _error_line(f"condpretrain {args.command}: error: {_printable(f'{exc.strerror}{where}')}")
        return 2
    except KeyboardInterrupt:
        _error_line(f"condpretrain {args.command}: interrupted")
        return 130


def _error_line(line: str) -> None:
    """One write for the line and its newline: the ranks of a torchrun job share stderr,
    and ``print``'s two writes let their lines interleave."""
    sys.stderr.write(line + "\n")
    sys.stderr.flush()


def _printable(text: str) -> str:
    """``text`` safe for one terminal line: control characters (escape codes in a file
    name, newlines, undecodable bytes) shown escaped, never sent raw."""
    return "".join(c if c.isprintable() else ascii(c)[1:-1] for c in text)


if __name__ == "__main__":
    sys.exit(main())
