"""The `stasis-dnd` command: parses arguments and turns every mistake a user
can make into one clear line on stderr and exit status 1."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from stasis_dnd import __version__
from stasis_dnd.config import ConfigError, describe, load_settings, permission_warnings

DEFAULT_CONFIG = "/etc/stasis-dnd/stasis-dnd.ini"


class UserError(Exception):
    """A problem the user can fix; its message says how. No traceback."""


def _add_config(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        metavar="FILE",
        default=os.environ.get("STASIS_DND_CONFIG", DEFAULT_CONFIG),
        help=f"INI file (default: $STASIS_DND_CONFIG or {DEFAULT_CONFIG})",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="stasis-dnd",
        description='"All operators are busy, press 1 for a callback" for Asterisk ARI.',
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    check = commands.add_parser(
        "check-config", help="validate the configuration without connecting anywhere"
    )
    _add_config(check)
    check.add_argument("--show", action="store_true", help="print the effective settings")

    demo = commands.add_parser(
        "demo", help="simulate calls through the IVR and show what the caller and the CRM get"
    )
    demo.add_argument("--config", metavar="FILE", help="use this INI file's [ivr] and [crm]")
    return parser


def cmd_check_config(args: argparse.Namespace) -> int:
    settings = load_settings(args.config)
    for warning in permission_warnings(args.config):
        print(f"warning: {warning}", file=sys.stderr)
    if args.show:
        print("\n".join(describe(settings)))
    print(f"{args.config}: OK")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from stasis_dnd.demo import run_demo

    return run_demo(args.config)


_COMMANDS = {"check-config": cmd_check_config, "demo": cmd_demo}


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return _COMMANDS[args.command](args)
    except (ConfigError, UserError) as error:
        print(f"stasis-dnd: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
