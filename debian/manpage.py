"""Writes the stasis-dnd(8) manual page to stdout, from the command's own
argparse parser (argparse-manpage), plus the files and units the package installs."""

from __future__ import annotations

from build_manpages.manpage import Manpage

from stasis_dnd import __version__
from stasis_dnd.cli.main import build_parser

SECTIONS = [
    {
        "heading": "files",
        "content": (
            "/etc/stasis-dnd/stasis-dnd.ini: the configuration of stasis-dnd.service "
            "(root:stasis-dnd, mode 0640: it holds passwords); the service does not start "
            "while it holds the sample's change-me placeholders. "
            "/etc/stasis-dnd/NAME.ini: the configuration of instance stasis-dnd@NAME.service. "
            "/var/lib/stasis-dnd/outbox.sqlite3 (/var/lib/stasis-dnd/NAME/outbox.sqlite3 "
            "for an instance): requests waiting for the CRM, unless [outbox] path says "
            "otherwise. /usr/share/asterisk/sounds/LANG/custom/IVR_DND_*: the prompts."
        ),
    },
    {
        "heading": "exit status",
        "content": (
            "0 on success; 1 when the configuration, Asterisk or the CRM needs fixing "
            "(one line on stderr says what); 2 for a wrong command line."
        ),
    },
    {
        "heading": "see also",
        "content": "systemctl(1), asterisk(8); /usr/share/doc/stasis-dnd/README.md.gz",
    },
]


def main() -> None:
    parser = build_parser()
    parser.man_short_description = "callback offer for busy Asterisk queues"  # type: ignore[attr-defined]
    parser._manpage = SECTIONS  # type: ignore[attr-defined]
    text = str(Manpage(parser))
    _, _, rest = text.partition("\n")  # argparse-manpage writes section 1
    print(f'.TH STASIS-DND 8 "" "stasis-dnd {__version__}" "System Administration"')
    print(rest, end="")


if __name__ == "__main__":
    main()
