"""The `stasis-dnd` command: parses arguments and turns every mistake a user
can make into one clear line on stderr and exit status 1 (2 for a wrong
command line, as argparse does)."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from stasis_dnd import __version__
from stasis_dnd.cli.options import add_config
from stasis_dnd.config import ConfigError, describe, load_settings, permission_warnings
from stasis_dnd.settings import DEFAULT_PROFILE, Settings

if TYPE_CHECKING:
    from stasis_dnd.runtime.holder import LockSession

LOG_LEVELS = ("debug", "info", "warning", "error")


class UserError(Exception):
    """A problem the user can fix; its message says how. No traceback."""


def _workers(text: str) -> int:
    """--workers: a whole number of at least 1 (with none, every call would wait forever)."""
    try:
        count = int(text)
    except ValueError:
        count = 0
    if count < 1:
        raise argparse.ArgumentTypeError(
            f"must be a whole number of at least 1 (the threads that carry out calls' "
            f"ARI requests; the default is 16), got {text!r}"
        )
    return count


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
    add_config(check)
    check.add_argument("--show", action="store_true", help="print the effective settings")

    run = commands.add_parser("run", help="serve callers: connect to ARI and run the IVR")
    add_config(run)
    run.add_argument(
        "--log-level",
        default=os.environ.get("STASIS_DND_LOG_LEVEL", "info"),
        choices=LOG_LEVELS,
        help="how much to log (default: info; $STASIS_DND_LOG_LEVEL)",
    )
    run.add_argument(
        "--workers",
        type=_workers,
        default=16,
        help="threads carrying out calls' ARI requests (default: 16)",
    )

    from stasis_dnd.cli.outbox import add_outbox_commands

    add_outbox_commands(commands)

    check_cmd = commands.add_parser(
        "check",
        help="check ARI, that every configured prompt exists there, and the CRM login",
        description=(
            "Connect to ARI and ask for every configured prompt, then log in at the CRM "
            "without filing a request. Exit status: 0 all well, 1 configuration, 3 ARI, "
            "4 a prompt missing, 5 the CRM."
        ),
    )
    add_config(check_cmd)

    sounds = commands.add_parser(
        "install-sounds",
        help="copy the shipped prompts (custom/IVR_DND_*, en and ru) into Asterisk's sounds",
        description=(
            "Copy the prompts shipped with stasis-dnd into DEST/<lang>/custom/. DEST is "
            "Asterisk's sounds folder: its data directory + /sounds (asterisk -rx 'core show "
            "settings'), e.g. /usr/share/asterisk/sounds (Debian), /var/lib/asterisk/sounds "
            "(FreePBX). Language folders that are symlinks (Debian: sounds/en -> "
            "en_US_f_Allison) are followed."
        ),
    )
    sounds.add_argument("dest", metavar="DEST", help="Asterisk's sounds folder")
    sounds.add_argument(
        "--dry-run", action="store_true", help="list the files that would be written"
    )
    sounds.add_argument(
        "--force", action="store_true", help="overwrite files that exist with other content"
    )
    sounds.add_argument(
        "--root",
        metavar="ROOT",
        help="DEST is inside a chroot or image at ROOT: follow its symlinks inside ROOT",
    )

    unit = commands.add_parser(
        "install-unit",
        help="write the systemd units for this (pip) install into /etc/systemd/system",
        description=(
            "Write stasis-dnd.service and stasis-dnd@.service with ExecStart pointing at "
            "the stasis-dnd of this Python environment (e.g. /opt/stasis-dnd/bin/stasis-dnd); "
            "the Debian package installs its own."
        ),
    )
    unit.add_argument("--dest", metavar="DIR", default="/etc/systemd/system", help="where to")

    demo = commands.add_parser(
        "demo", help="simulate calls through the IVR and show what the caller and the CRM get"
    )
    demo.add_argument("--config", metavar="FILE", help="use this INI file's [ivr] and [crm]")
    return parser


def cmd_check_config(args: argparse.Namespace) -> int:
    from stasis_dnd.callbacks.crm import check_settings

    settings = load_settings(args.config)
    for profile in settings.all_profiles():
        try:
            check_settings(profile.crm)  # what `run` would refuse, said without connecting
        except ValueError as error:
            raise UserError(f"{args.config}: {_in_profile(profile.name, error)}") from None
    for warning in permission_warnings(args.config):
        print(f"warning: {warning}", file=sys.stderr)
    if args.show:
        print("\n".join(describe(settings)))
    print(f"{args.config}: OK")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from stasis_dnd.testing.demo import run_demo

    return run_demo(args.config)


def cmd_run(args: argparse.Namespace) -> int:
    from stasis_dnd.callbacks.intake import CallbackService
    from stasis_dnd.callbacks.outbox import OutboxError
    from stasis_dnd.logs import setup_logging
    from stasis_dnd.metrics import Metrics
    from stasis_dnd.runtime.app import App, StartupError

    settings = load_settings(args.config)
    if args.log_level not in LOG_LEVELS:
        raise UserError(
            f"log level {args.log_level!r} (from --log-level or STASIS_DND_LOG_LEVEL) "
            f"is not one of {', '.join(LOG_LEVELS)}"
        )
    setup_logging(args.log_level)
    for warning in permission_warnings(args.config):
        logging.getLogger("stasis_dnd").warning("event=config_warning detail=%r", warning)
    try:
        store = CallbackService(
            settings.crm,
            settings.outbox,
            profiles={profile.name: profile.crm for profile in settings.profiles},
        )
    except ValueError as error:
        raise UserError(f"{args.config}: {_in_crm(error)}") from None
    try:
        store.start()
    except OutboxError as error:
        key = "url" if settings.outbox.url else "path"
        raise UserError(f"{args.config}: [outbox] {key}: {error}") from None
    metrics = Metrics()
    metrics.watch_callbacks(store.stats)
    try:
        return App(
            settings, store, workers=args.workers, metrics=metrics, lock=_lock(settings)
        ).run()
    except StartupError as error:
        raise UserError(str(error)) from None
    finally:
        store.stop()


def _in_profile(name: str, error: ValueError) -> str:
    """A CRM settings error of one profile, naming its section."""
    text = _in_crm(error)
    return text if name == DEFAULT_PROFILE else text.replace("[crm]", f"[profile:{name}]", 1)


def _lock(settings: Settings) -> Callable[[], LockSession] | None:
    """With a shared database, instances for one Asterisk and app name elect
    the one that connects; without, this instance connects right away."""
    from stasis_dnd.runtime.holder import PgLockSession, lock_key

    outbox = settings.outbox
    if not outbox.url:
        return None
    key = lock_key(settings.ari.url, settings.ari.app)
    return lambda: PgLockSession(outbox.url, outbox.password, key)


def _in_crm(error: ValueError) -> str:
    """A CRM settings error, naming its section once."""
    text = str(error)
    return text if text.startswith("[") else f"[crm] {text}"


# `stasis-dnd check`: the exit status names the first check that failed.
CHECK_ARI_FAILED, CHECK_PROMPT_MISSING, CHECK_CRM_FAILED = 3, 4, 5


def cmd_check(args: argparse.Namespace) -> int:
    from stasis_dnd.callbacks.outbox import OutboxError
    from stasis_dnd.cli.check import AriError, check_asterisk, check_crm, check_outbox_database

    settings = load_settings(args.config)
    status = 0
    try:
        findings = check_asterisk(settings)
    except AriError as error:
        print(f"stasis-dnd: {error}", file=sys.stderr)
        findings, status = [], CHECK_ARI_FAILED
    for finding in findings:
        print(("ok      " if finding.ok else "MISSING ") + finding.text)
    for fix in dict.fromkeys(f.fix for f in findings if not f.ok and f.fix):
        print(fix)
    if not all(f.ok for f in findings):
        status = status or CHECK_PROMPT_MISSING
    try:
        crm = check_crm(settings)
    except ValueError as error:
        raise UserError(f"{args.config}: {_in_crm(error)}") from None
    print(("ok      " if crm.ok else "FAILED  ") + crm.text)
    if settings.outbox.url:
        # A database that refuses us is a config error, as `run` would report it.
        try:
            print("ok      " + check_outbox_database(settings.outbox))
        except OutboxError as error:
            raise UserError(f"{args.config}: [outbox] url: {error}") from None
    return status or (0 if crm.ok else CHECK_CRM_FAILED)


def cmd_install_sounds(args: argparse.Namespace) -> int:
    from pathlib import Path

    from stasis_dnd.sounds import SoundsError, install_sounds

    try:
        written = install_sounds(
            Path(args.dest),
            root=Path(args.root) if args.root else None,
            dry_run=args.dry_run,
            force=args.force,
        )
    except SoundsError as error:
        raise UserError(f"install-sounds: {error}") from None
    verb = "would write" if args.dry_run else "wrote"
    for path in written:
        print(f"{verb} {path}")
    if not written:
        print("the prompts are already installed and up to date")
    return 0


def cmd_install_unit(args: argparse.Namespace) -> int:
    from pathlib import Path

    from stasis_dnd.cli.units import UnitError, install_units

    try:
        written = install_units(Path(args.dest))
    except UnitError as error:
        raise UserError(f"install-unit: {error}") from None
    for path in written:
        print(f"wrote {path}")
    print("now run: systemctl daemon-reload")
    return 0


def cmd_outbox(args: argparse.Namespace) -> int:
    from stasis_dnd.cli.outbox import run_outbox_command

    settings = load_settings(args.config, require_secrets=False)
    return run_outbox_command(args, settings.outbox)


_COMMANDS = {
    "check-config": cmd_check_config,
    "demo": cmd_demo,
    "run": cmd_run,
    "outbox": cmd_outbox,
    "install-sounds": cmd_install_sounds,
    "install-unit": cmd_install_unit,
    "check": cmd_check,
}


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
