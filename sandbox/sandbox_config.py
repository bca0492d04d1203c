"""Settings and configuration files of the sandbox Asterisk (used by sandbox/asterisk).

What the sandbox runs: its own minimal Asterisk configuration, the project's
dialplan and queue verbatim, the reproduction of the original setup
(bench/original) and the test-only dialplan (sandbox/extensions-sandbox.conf).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
ORIGINAL = REPO / "bench" / "original"

# Packages of the chroot. Changing this list (or the suite) builds a new root.
PACKAGES: tuple[str, ...] = (
    "asterisk",
    "asterisk-modules",  # func_curl, app_queue, res_ari*, chan_pjsip
    "asterisk-core-sounds-en",
    "asterisk-core-sounds-ru",
    "php-cli",  # bench/original/dndoperator.php, the original setup's AGI script
    "ca-certificates",
)

# Inside the chroot (asterisk.conf astagidir, astlogdir).
AGI_DIR = "usr/share/asterisk/agi-bin"
# The original AGI script's timestamps (bench/original/dndoperator.php).
ORIGINAL_LOG = "/var/log/asterisk/dnd-original.log"
# Inside the chroot: ARI's TLS certificate and key (http.conf) and the CA that
# signed them, made at the first start (`sandbox/asterisk ca` prints its path).
TLS_DIR = "etc/asterisk-tls"
TLS_CA = f"{TLS_DIR}/ca.pem"
TLS_CERT = f"{TLS_DIR}/asterisk.pem"
TLS_KEY = f"{TLS_DIR}/asterisk.key"

# Modules that bring demo dialplans, open ports or try the network; none is
# needed by the project.
NOLOAD: tuple[str, ...] = (
    "pbx_ael.so",
    "pbx_lua.so",
    "pbx_dundi.so",
    "pbx_realtime.so",
    "chan_iax2.so",
    "chan_unistim.so",
    "chan_skinny.so",
    "chan_mgcp.so",
    "chan_ooh323.so",
    "chan_mobile.so",
    "chan_dahdi.so",
    "chan_motif.so",
    "chan_console.so",
    "chan_alsa.so",
    "chan_oss.so",
    "res_xmpp.so",
    "res_hep.so",
    "res_hep_pjsip.so",
    "res_hep_rtcp.so",
    "res_snmp.so",
    "res_statsd.so",
    "res_corosync.so",
    "res_pktccops.so",
    "res_smdi.so",
    "res_phoneprov.so",
    "res_pjsip_phoneprov_provider.so",
    "res_calendar.so",
    "res_config_ldap.so",
    "res_config_pgsql.so",
    "res_config_mysql.so",
    "res_config_odbc.so",
    "res_odbc.so",
    "res_odbc_transaction.so",
    "cdr_pgsql.so",
    "cdr_odbc.so",
    "cdr_adaptive_odbc.so",
    "cdr_tds.so",
    "cdr_radius.so",
    "cel_pgsql.so",
    "cel_odbc.so",
    "cel_tds.so",
    "cel_radius.so",
    "cdr_beanstalkd.so",
    "cel_beanstalkd.so",
    "res_stun_monitor.so",
    "res_pjsip_outbound_publish.so",
    "res_pjsip_publish_asterisk.so",
    "app_voicemail_imap.so",
    "app_voicemail_odbc.so",
)


class SandboxError(Exception):
    """A failure that ends the command with one clear message."""


@dataclass(frozen=True)
class Settings:
    """Everything configurable, read from the environment."""

    cache: Path
    mirror: str
    suite: str
    ari_port: int
    ari_tls_port: int
    sip_port: int
    ari_user: str
    ari_password: str
    app: str
    crm_url: str
    queue_timeout: str
    start_timeout: float
    extra_packages: tuple[str, ...] = ()

    @staticmethod
    def from_env() -> Settings:
        env = os.environ
        ari_port = _int_env("STASIS_DND_SANDBOX_ARI_PORT", 18088)
        return Settings(
            cache=Path(env.get("STASIS_DND_SANDBOX_CACHE", "/var/cache/stasis-dnd")),
            # "": the Debian mirror of this machine's apt sources (sandbox_mirror).
            mirror=env.get("STASIS_DND_SANDBOX_MIRROR", ""),
            suite=env.get("STASIS_DND_SANDBOX_SUITE", "sid"),
            ari_port=ari_port,
            # Next to the plain port: sandboxes given their own ARI port get
            # their own TLS port too.
            ari_tls_port=_int_env("STASIS_DND_SANDBOX_ARI_TLS_PORT", ari_port + 1),
            sip_port=_int_env("STASIS_DND_SANDBOX_SIP_PORT", 15060),
            ari_user=env.get("STASIS_DND_SANDBOX_ARI_USER", "stasis-dnd"),
            ari_password=env.get("STASIS_DND_SANDBOX_ARI_PASSWORD", "stasis-dnd-sandbox"),
            app=env.get("STASIS_DND_SANDBOX_APP", "stasis-dnd"),
            crm_url=env.get(
                "STASIS_DND_SANDBOX_CRM_URL", "http://127.0.0.1:19088/admin/dynamic.do"
            ),
            queue_timeout=env.get("STASIS_DND_SANDBOX_QUEUE_TIMEOUT", "3"),
            start_timeout=float(env.get("STASIS_DND_SANDBOX_START_TIMEOUT", "60")),
            extra_packages=tuple(env.get("STASIS_DND_SANDBOX_EXTRA_PACKAGES", "").split()),
        )

    @property
    def packages(self) -> tuple[str, ...]:
        return PACKAGES + self.extra_packages

    @property
    def root(self) -> Path:
        key = "\n".join([self.suite, *self.packages]).encode()
        return self.cache / f"asterisk-sandbox-{hashlib.sha256(key).hexdigest()[:12]}"

    @property
    def stamp_text(self) -> str:
        return "\n".join([f"suite={self.suite}", *self.packages]) + "\n"


def _int_env(name: str, default: int) -> int:
    value = os.environ.get(name, str(default))
    try:
        return int(value)
    except ValueError:
        raise SandboxError(f"{name}={value!r} is not a port number") from None


ASTERISK_CONF = """\
[directories]
astcachedir => /var/cache/asterisk
astetcdir => /etc/asterisk
astmoddir => /usr/lib/x86_64-linux-gnu/asterisk/modules
astvarlibdir => /var/lib/asterisk
astdbdir => /var/lib/asterisk
astkeydir => /var/lib/asterisk
astdatadir => /usr/share/asterisk
astagidir => /usr/share/asterisk/agi-bin
astspooldir => /var/spool/asterisk
astrundir => /var/run/asterisk
astlogdir => /var/log/asterisk
astsbindir => /usr/sbin

[options]
verbose = 3
; The dialplan may write CURL() results to files; not needed here.
live_dangerously = no
"""

LOGGER_CONF = """\
[general]
dateformat = %F %T.%3q

[logfiles]
messages.log => notice,warning,error,verbose
"""


def pjsip_conf(s: Settings) -> str:
    """A loopback transport and an endpoint through which Asterisk calls itself."""
    return f"""\
[transport-udp]
type = transport
protocol = udp
bind = 127.0.0.1:{s.sip_port}

; "self": Asterisk's own transport as a SIP peer. Dialling PJSIP/<user>@self
; sends an INVITE to 127.0.0.1:{s.sip_port}; Asterisk receives it as a new
; inbound call from endpoint "self" (matched by source address) into
; [sip-self-in] (sandbox/extensions-sandbox.conf). G.711 u-law only, as a
; typical phone; DTMF as RFC 4733 telephone-events in the RTP stream.
[self]
type = aor
contact = sip:127.0.0.1:{s.sip_port}

[self]
type = endpoint
transport = transport-udp
aors = self
context = sip-self-in
disallow = all
allow = ulaw
dtmf_mode = rfc4733
direct_media = no

[self]
type = identify
endpoint = self
match = 127.0.0.1
"""


def config_files(s: Settings) -> dict[str, str]:
    """The sandbox's own minimal configuration, by file name."""
    root_etc_debian = s.root / "etc/asterisk.debian"
    noload = "\n".join(f"noload => {m}" for m in NOLOAD)
    return {
        "asterisk.conf": ASTERISK_CONF,
        "modules.conf": f"[modules]\nautoload = yes\n{noload}\n",
        "logger.conf": LOGGER_CONF,
        "manager.conf": "[general]\nenabled = no\n",
        "http.conf": f"""\
[general]
enabled = yes
bindaddr = 127.0.0.1
bindport = {s.ari_port}
; ARI over https and wss too, with a certificate for 127.0.0.1 and localhost
; signed by the sandbox's own CA (make_tls_files).
tlsenable = yes
tlsbindaddr = 127.0.0.1:{s.ari_tls_port}
tlscertfile = /{TLS_CERT}
tlsprivatekey = /{TLS_KEY}
""",
        "ari.conf": f"""\
[general]
enabled = yes
pretty = no

[{s.ari_user}]
type = user
read_only = no
password = {s.ari_password}
password_format = plain
""",
        "pjsip.conf": pjsip_conf(s),
        "musiconhold.conf": "[default]\nmode = files\ndirectory = moh\n",
        "cdr.conf": "[general]\nenable = no\n",
        "cel.conf": "[general]\nenable = no\n",
        # Tone zones are data, not demo configuration.
        "indications.conf": (root_etc_debian / "indications.conf").read_text(),
        "rtp.conf": "[general]\nrtpstart = 20000\nrtpend = 20999\n",
        # The project's files, verbatim.
        "queues.conf": (REPO / "samples/queues.conf.sample").read_text(),
        "extensions-dnd.conf": (REPO / "extensions.conf.sample").read_text(),
        # The original setup, for benchmarks (bench/original/README.md).
        "extensions-original.conf": (ORIGINAL / "extensions-original.conf").read_text(),
        "extensions.conf": """\
; sandbox/asterisk: the project's dialplan verbatim, the original setup's
; reproduction, then test-only settings and contexts.
#include extensions-dnd.conf
#include extensions-original.conf
#include extensions-sandbox-globals.conf
#include extensions-sandbox.conf
""",
        "extensions-sandbox-globals.conf": f"""\
; Written by sandbox/asterisk. Appended to [globals]: later values win.
[globals](+)
DND_APP={s.app}
DND_QUEUE_TIMEOUT={s.queue_timeout}
DND_CRM_URL={s.crm_url}
DND_CRM_USER=sandbox-user
DND_CRM_PASSWORD=sandbox-password
ORIGINAL_CRM_URL={s.crm_url}
ORIGINAL_CRM_USER=sandbox-user
ORIGINAL_CRM_PASSWORD=sandbox-password
ORIGINAL_LOG={ORIGINAL_LOG}
""",
        "extensions-sandbox.conf": (REPO / "sandbox/extensions-sandbox.conf").read_text(),
    }


def install_sounds(root: Path) -> None:
    """Copy the project's prompts into the chroot's language folders.

    With the project's own installer: sounds/en in the chroot is an absolute
    symlink chain (via /etc/alternatives), followed inside the chroot (the
    same code path as ``stasis-dnd install-sounds --root ROOT
    /usr/share/asterisk/sounds``).
    """
    # The sandbox runs with the system python3, outside the project's venv.
    sys.path.insert(0, str(REPO))
    from stasis_dnd.sounds import SoundsError, install_sounds

    try:
        install_sounds(
            Path("/usr/share/asterisk/sounds"), root=root, force=True, source=REPO / "sounds"
        )
    except SoundsError as e:
        raise SandboxError(f"cannot install the prompts: {e}") from None


def install_agi(root: Path) -> None:
    """Put the original setup's AGI script where AGI() looks (astagidir)."""
    agi_dir = root / AGI_DIR
    agi_dir.mkdir(parents=True, exist_ok=True)
    dest = agi_dir / "dndoperator.php"
    shutil.copyfile(ORIGINAL / "dndoperator.php", dest)
    dest.chmod(0o755)


# The server certificate's extensions: what a strict TLS client checks.
_SERVER_EXTENSIONS = """\
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = IP:127.0.0.1, DNS:localhost
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
"""


def make_tls_files(root: Path) -> Path:
    """A CA and a certificate it signed for 127.0.0.1 and localhost, for ARI's
    TLS port (made once, kept across starts); the CA file's path on the host.

    The CA's private key is thrown away once the certificate is signed.
    """
    files = [root / TLS_CA, root / TLS_CERT, root / TLS_KEY]
    if all(f.is_file() for f in files):
        return root / TLS_CA
    if shutil.which("openssl") is None:
        raise SandboxError("openssl is missing on this machine (apt-get install openssl)")
    with tempfile.TemporaryDirectory(prefix="sandbox-tls-") as tmp:
        work = Path(tmp)
        (work / "server.ext").write_text(_SERVER_EXTENSIONS)
        steps = [
            [
                *("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "3650"),
                *("-subj", "/CN=stasis-dnd sandbox CA", "-keyout", "ca.key", "-out", "ca.pem"),
                *("-addext", "basicConstraints=critical,CA:TRUE"),
                *("-addext", "keyUsage=critical,keyCertSign,cRLSign"),
            ],
            [
                *("req", "-new", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1"),
                *("-keyout", "asterisk.key", "-out", "asterisk.csr"),
            ],
            [
                *("x509", "-req", "-in", "asterisk.csr", "-CA", "ca.pem", "-CAkey", "ca.key"),
                *("-set_serial", "2", "-days", "3650", "-extfile", "server.ext"),
                *("-out", "asterisk.pem"),
            ],
        ]
        for step in steps:
            result = subprocess.run(
                ["openssl", *step], cwd=work, capture_output=True, text=True, check=False
            )
            if result.returncode != 0:
                raise SandboxError(
                    f"openssl {step[0]} failed making ARI's TLS certificate: "
                    + (result.stderr.strip().splitlines() or ["no output"])[-1]
                )
        (root / TLS_DIR).mkdir(parents=True, exist_ok=True)
        for name, dest in (("ca.pem", files[0]), ("asterisk.pem", files[1])):
            shutil.copyfile(work / name, dest)
            dest.chmod(0o644)
        # Written last: an interrupted run leaves no key, so all three are made again.
        shutil.copyfile(work / "asterisk.key", files[2])
        files[2].chmod(0o600)
    return root / TLS_CA
