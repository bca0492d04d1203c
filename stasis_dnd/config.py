"""Load `Settings` from one INI file plus `STASIS_DND_<SECTION>_<KEY>`
environment overrides, and explain every mistake in one sentence.

Without an `[outbox] path` in the file, the outbox is `outbox.sqlite3` in
`$STATE_DIRECTORY` when systemd sets it (the unit's StateDirectory=).

A mistake (unknown section or key, a value of the wrong type, a missing
password) raises `ConfigError` naming the file, the section and the key.
"""

from __future__ import annotations

import configparser
import math
import os
import re
import stat
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from stasis_dnd.hours import describe_hours, parse_closed_dates, parse_hours
from stasis_dnd.settings import (
    CRM_METHODS,
    CRM_STYLES,
    DEFAULT_PROFILE,
    DIRECT_CRM_TIMEOUT,
    OUTSIDE_HOURS_ACTIONS,
    PROFILE_CRM_FIELDS,
    AriSettings,
    CrmSettings,
    DialplanTarget,
    IvrSettings,
    MetricsSettings,
    OutboxSettings,
    Profile,
    Settings,
    breaks_crm_answer,
)
from stasis_dnd.tls import client_tls_context

ENV_PREFIX = "STASIS_DND_"


class ConfigError(Exception):
    """The configuration cannot be used; the message says what to fix."""


def _text(value: str) -> str:
    return value.strip()


def _number(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise ValueError(f"expected a number of seconds, got {value!r}") from None
    if number < 0 or not math.isfinite(number):
        raise ValueError(f"expected a number of seconds of 0 or more, got {value!r}")
    return number


def _count(value: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"expected a whole number, got {value!r}") from None


_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*([smhd]?)")
_UNIT_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(value: str) -> float:
    """Seconds in "90", "90s", "30m", "24h" or "7d"."""
    match = _DURATION.fullmatch(value.strip().lower())
    if not match:
        raise ValueError(f"expected a duration such as 90s, 30m, 24h or 7d, got {value!r}")
    return float(match.group(1)) * _UNIT_SECONDS[match.group(2)]


def _choice(*allowed: str) -> Callable[[str], str]:
    def parse(value: str) -> str:
        value = value.strip().lower()
        if value not in allowed:
            raise ValueError(f"expected one of {', '.join(allowed)}, got {value!r}")
        return value

    return parse


def _url(*schemes: str) -> Callable[[str], str]:
    def parse(value: str) -> str:
        parts = urlsplit(value.strip())
        if parts.scheme not in schemes or not parts.hostname:
            raise ValueError(f"expected a {' or '.join(schemes)} URL, got {value!r}")
        if parts.username is not None or parts.password is not None:
            # Never echo it: the part before @ may be a password.
            raise ValueError(
                "the URL must not contain a user or password; use the username and "
                "password keys instead"
            )
        return value.strip().rstrip("/")

    return parse


def _database_url(value: str) -> str:
    url = value.strip()
    if not url:
        return url
    parts = urlsplit(url)
    if parts.scheme not in ("postgresql", "postgres") or not parts.hostname:
        raise ValueError("expected a postgresql://[user@]host[:port]/database URL (or nothing)")
    return url


def _ca_file(value: str) -> str:
    path = value.strip()
    if path:
        client_tls_context(path)  # a missing, unreadable or non-PEM file: ValueError
    return path


def _params(value: str) -> tuple[tuple[str, str], ...]:
    pairs = tuple(parse_qsl(value.strip(), keep_blank_values=True, strict_parsing=bool(value)))
    for name, _ in pairs:
        if breaks_crm_answer(name):
            raise ValueError("a parameter named callback breaks the CRM's JSON answer")
    return pairs


_SWITCH = {
    "yes": True,
    "on": True,
    "true": True,
    "1": True,
    "no": False,
    "off": False,
    "false": False,
    "0": False,
}


def _switch(value: str) -> bool:
    try:
        return _SWITCH[value.strip().lower()]
    except KeyError:
        raise ValueError(f"expected yes or no, got {value!r}") from None


def _rewrites(value: str) -> tuple[tuple[str, str], ...]:
    rules = []
    for line in value.splitlines():
        if not line.strip():
            continue
        find, arrow, replace = line.partition("=>")
        if not arrow or not find.strip() or not replace.strip():
            raise ValueError(f"expected PATTERN => REPLACEMENT on each line, got {line.strip()!r}")
        rules.append((find.strip(), replace.strip()))
    return tuple(rules)


def _listen(value: str) -> str:
    value = value.strip()
    if value and not re.fullmatch(r"[\w.\-\[\]:]*:\d{1,5}", value):
        raise ValueError(f"expected host:port such as 127.0.0.1:9120, got {value!r}")
    return value


def _timezone(value: str) -> str:
    name = value.strip()
    if not name:
        return name
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise ValueError(
            f"unknown time zone {name!r}; use an IANA name such as Europe/Moscow, "
            "or leave it empty for this machine's zone"
        ) from None
    return name


@dataclass(frozen=True)
class _Key:
    field: str
    parse: Callable[[str], Any]


# How an INI value is read, by the type its settings field is declared with.
_READERS: dict[str, Callable[[str], Any]] = {
    "str": _text,
    "float": _number,
    "int": _count,
    "Duration": parse_duration,
    "Url": _url("http", "https"),
    "DatabaseUrl": _database_url,
    "CaFile": _ca_file,
    "Secret": str,
    "HostPort": _listen,
    "Switch": _switch,
    "Pattern": _text,
    "Rewrites": _rewrites,
    "Hours": parse_hours,
    "ClosedDates": parse_closed_dates,
    "TimeZone": _timezone,
    "DialplanTarget | None": DialplanTarget.parse,
    "tuple[tuple[str, str], ...]": _params,
}
# Fields read otherwise than by their type alone.
_CHOICES = {
    ("crm", "style"): CRM_STYLES,
    ("crm", "method"): CRM_METHODS,
    ("ivr", "outside_hours"): OUTSIDE_HOURS_ACTIONS,
}
# INI keys named unlike their field (`class` is a Python keyword).
_KEY_NAMES = {"class_name": "class"}
_SECTIONS: dict[str, type] = {
    "ari": AriSettings,
    "ivr": IvrSettings,
    "crm": CrmSettings,
    "outbox": OutboxSettings,
    "metrics": MetricsSettings,
}


def _schema() -> dict[str, tuple[type, dict[str, _Key]]]:
    """Every INI key of every section, in the order the dataclasses list their
    fields; a password also has a password_file key, read from that file."""
    schema: dict[str, tuple[type, dict[str, _Key]]] = {}
    for section, cls in _SECTIONS.items():
        keys: dict[str, _Key] = {}
        for item in fields(cls):
            choices = _CHOICES.get((section, item.name))
            parse = _choice(*choices) if choices else _READERS[str(item.type)]
            keys[_KEY_NAMES.get(item.name, item.name)] = _Key(item.name, parse)
            if item.name == "password":
                keys["password_file"] = _Key("password", str)  # replaced by the file's content
        schema[section] = (cls, keys)
    return schema


_SCHEMA = _schema()
# `[profile:NAME]` sections: any [ivr] key, the [crm] keys that shape what is
# sent, and `queues`; (section the key belongs to, how it is read).
PROFILE_PREFIX = "profile:"
_PROFILE_KEYS: dict[str, tuple[str, _Key]] = {
    **{key: ("ivr", spec) for key, spec in _SCHEMA["ivr"][1].items()},
    **{
        key: ("crm", spec)
        for key, spec in _SCHEMA["crm"][1].items()
        if spec.field in PROFILE_CRM_FIELDS
    },
}
assert len(_PROFILE_KEYS) == len(_SCHEMA["ivr"][1]) + len(PROFILE_CRM_FIELDS), "key clash"
_PROFILE_NAME = re.compile(r"[a-z0-9][a-z0-9_.\-]*")
_FILE_KEYS = {"password_file"}
# Secrets the app cannot run without; (section, key, what needs it).
_REQUIRED_SECRETS = (("ari", "password"), ("crm", "password"))
# Keys the sample fills with a placeholder the admin must replace.
_PLACEHOLDER_KEYS = (
    ("ari", "username"),
    ("ari", "password"),
    ("crm", "username"),
    ("crm", "password"),
)
_PLACEHOLDERS = {"change-me", "change_me", "changeme"}


def load_settings(
    path: str | os.PathLike[str] | None,
    env: Mapping[str, str] | None = None,
    *,
    require_secrets: bool = True,
) -> Settings:
    """Read the INI file at `path` (None: defaults only) and apply the
    environment overrides; raise `ConfigError` on any mistake."""
    env = os.environ if env is None else env
    where = str(path) if path is not None else "the built-in defaults"
    raw: dict[str, dict[str, tuple[str, str]]] = {s: {} for s in _SCHEMA}
    # Profile name -> its keys, in the file's order.
    raw_profiles: dict[str, dict[str, tuple[str, str]]] = {}
    profile_sections: dict[str, str] = {}
    if path is not None:
        for section, key, value in _read_ini(Path(path)):
            origin = f"{where}: [{section}] {key}"
            if section.startswith(PROFILE_PREFIX):
                name = _profile_name(section, where, profile_sections)
                raw_profiles.setdefault(name, {})[key] = (value, origin)
            else:
                raw[section][key] = (value, origin)
    state = env.get("STATE_DIRECTORY", "").split(":")[0]
    if state and "path" not in raw["outbox"]:
        # systemd's StateDirectory= (per instance in the template unit); the file's path wins.
        raw["outbox"]["path"] = (f"{state}/outbox.sqlite3", "STATE_DIRECTORY (set by systemd)")
    for name, value in env.items():
        target = _env_target(name)
        if target is not None:
            section, key = target
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                raise ConfigError(
                    f"environment variable {name} is not valid UTF-8 text; "
                    "re-enter it in a UTF-8 terminal or put it in the config file"
                ) from None
            raw[section][key] = (value, f"environment variable {name}")
    sections = {}
    for section, (cls, keys) in _SCHEMA.items():
        values: dict[str, Any] = {}
        for key, (value, origin) in raw[section].items():
            spec = keys[key]
            try:
                parsed = _read_secret_file(value) if key in _FILE_KEYS else spec.parse(value)
            except (ValueError, OSError) as error:
                raise ConfigError(f"{origin}: {error}") from None
            values[spec.field] = parsed
        try:
            sections[section] = cls(**values)
        except ValueError as error:
            raise ConfigError(f"{where}: [{section}] {error}") from None
    profiles = tuple(
        _profile(name, keys, sections["ivr"], sections["crm"], where)
        for name, keys in raw_profiles.items()
    )
    _check_queues(profiles, where)
    settings = Settings(**sections, profiles=profiles)
    for profile in settings.all_profiles():
        _check_store_timeout(settings.outbox, settings.crm, profile, where)
    if require_secrets:
        _check_placeholders(settings, raw)
        _check_secrets(settings, where)
    return settings


def _check_placeholders(
    settings: Settings, raw: Mapping[str, Mapping[str, tuple[str, str]]]
) -> None:
    for section, key in _PLACEHOLDER_KEYS:
        value = getattr(getattr(settings, section), key)
        if value.strip().lower() in _PLACEHOLDERS:
            given = raw[section].get(key) or raw[section].get(f"{key}_file")
            origin = given[1] if given else f"[{section}] {key}"
            raise ConfigError(
                f"{origin} still holds the sample's placeholder; set the real {section.upper()} "
                f"{key} there"
            )


def _check_store_timeout(
    outbox: OutboxSettings, crm: CrmSettings, profile: Profile, where: str
) -> None:
    # The caller waits for the outbox write, then for the direct CRM try.
    needed = outbox.write_timeout + min(DIRECT_CRM_TIMEOUT, crm.timeout)
    if profile.ivr.store_timeout <= needed:
        section = "ivr" if profile.name == DEFAULT_PROFILE else PROFILE_PREFIX + profile.name
        raise ConfigError(
            f"{where}: [{section}] store_timeout ({profile.ivr.store_timeout:g} s) must be "
            f"longer than [outbox] write_timeout plus the direct CRM try ({needed:g} s)"
        )


def _profile_name(section: str, where: str, seen: dict[str, str]) -> str:
    """The profile a `[profile:NAME]` section defines; `seen`: name -> its section."""
    name = section[len(PROFILE_PREFIX) :].strip().lower()
    if not _PROFILE_NAME.fullmatch(name) or name == DEFAULT_PROFILE:
        raise ConfigError(
            f"{where}: [{section}] is no usable profile name; use letters, digits, _ - . "
            f"(not {DEFAULT_PROFILE!r}: [ivr] and [crm] are the default profile)"
        )
    if seen.setdefault(name, section) != section:
        raise ConfigError(
            f"{where}: [{section}] and [{seen[name]}] are one profile (names ignore case); "
            "merge them"
        )
    return name


def _profile(
    name: str,
    keys: Mapping[str, tuple[str, str]],
    ivr: IvrSettings,
    crm: CrmSettings,
    where: str,
) -> Profile:
    """One `[profile:NAME]` section over the [ivr] and [crm] settings."""
    changes: dict[str, dict[str, Any]] = {"ivr": {}, "crm": {}}
    queues: tuple[str, ...] = ()
    for key, (value, origin) in keys.items():
        try:
            if key == "queues":
                queues = _queues(value)
                continue
            section, spec = _PROFILE_KEYS[key]
            changes[section][spec.field] = spec.parse(value)
        except ValueError as error:
            raise ConfigError(f"{origin}: {error}") from None
    try:
        return Profile(
            name,
            replace(ivr, **changes["ivr"]),
            replace(crm, **changes["crm"]),
            queues,
        )
    except ValueError as error:
        raise ConfigError(f"{where}: [{PROFILE_PREFIX}{name}] {error}") from None


def _queues(value: str) -> tuple[str, ...]:
    names = tuple(name for name in re.split(r"[,\s]+", value.strip()) if name)
    if len({name.casefold() for name in names}) != len(names):
        raise ValueError("a queue is listed twice")
    return names


def _check_queues(profiles: tuple[Profile, ...], where: str) -> None:
    owner: dict[str, str] = {}
    for profile in profiles:
        for queue in profile.queues:
            other = owner.setdefault(queue.casefold(), profile.name)
            if other != profile.name:
                raise ConfigError(
                    f"{where}: queue {queue!r} is listed by [profile:{other}] and "
                    f"[profile:{profile.name}]; a queue belongs to one profile"
                )


def _read_ini(path: Path) -> list[tuple[str, str, str]]:
    parser = configparser.ConfigParser(interpolation=None, default_section="\0none")
    try:
        # utf-8-sig: Windows editors save config files with a byte-order mark.
        with path.open(encoding="utf-8-sig") as handle:
            parser.read_file(handle)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"config file {path} cannot be read: {error}") from None
    except configparser.Error as error:
        first = str(error).splitlines()[0]
        raise ConfigError(f"{path}: not a valid INI file: {first}") from None
    entries = []
    for section in parser.sections():
        if section.startswith(PROFILE_PREFIX):
            keys: Collection[str] = ("queues", *_PROFILE_KEYS)
        elif section in _SCHEMA:
            keys = _SCHEMA[section][1]
        else:
            known = ", ".join(f"[{s}]" for s in _SCHEMA)
            raise ConfigError(
                f"{path}: unknown section [{section}]; known sections: {known}, "
                f"[{PROFILE_PREFIX}NAME]"
            )
        for key, value in parser.items(section):
            if key not in keys:
                raise ConfigError(f"{path}: [{section}] {_unknown_key(section, key, keys)}")
            entries.append((section, key, value))
    return entries


def _unknown_key(section: str, key: str, keys: Collection[str]) -> str:
    if section.startswith(PROFILE_PREFIX) and key in _SCHEMA["crm"][1]:
        return (
            f"{key}: a profile changes what is sent to the CRM, not where or as whom; "
            f"set {key} in [crm] (one CRM per app)"
        )
    return f"unknown key {key!r}; known keys: {', '.join(keys)}"


def _env_target(name: str) -> tuple[str, str] | None:
    if not name.startswith(ENV_PREFIX):
        return None
    rest = name[len(ENV_PREFIX) :].lower()
    section, _, key = rest.partition("_")
    if section == PROFILE_PREFIX[:-1]:
        raise ConfigError(
            f"environment variable {name}: profiles are read from the config file only; "
            f"set it in a [{PROFILE_PREFIX}NAME] section there"
        )
    if section not in _SCHEMA:
        return None  # other tools' variables share the prefix
    if key not in _SCHEMA[section][1]:
        raise ConfigError(
            f"environment variable {name}: [{section}] has no key {key!r}; "
            f"known keys: {', '.join(_SCHEMA[section][1])}"
        )
    return section, key


def _read_secret_file(path: str) -> str:
    try:
        return Path(path.strip()).read_text(encoding="utf-8-sig").strip("\r\n")
    except OSError as error:
        raise OSError(f"cannot read password file {path.strip()}: {error.strerror}") from None


def _check_secrets(settings: Settings, where: str) -> None:
    for section, key in _REQUIRED_SECRETS:
        if not getattr(getattr(settings, section), key):
            env = f"{ENV_PREFIX}{section.upper()}_{key.upper()}"
            raise ConfigError(
                f"{where}: [{section}] {key} is not set; set {key} or {key}_file there, "
                f"or the environment variable {env}"
            )
    if not settings.crm.username:
        raise ConfigError(f"{where}: [crm] username is not set; the CRM needs a login")


def permission_warnings(
    path: str | os.PathLike[str], environ: Mapping[str, str] | None = None
) -> list[str]:
    """Warnings about the config file, or a password file it names, that others can read."""
    warnings = []
    if _open_to_others(path):
        warnings.append(f"{path} is readable by every user on this machine; chmod 640 it")
    for secret in _password_files(Path(path), os.environ if environ is None else environ):
        if _open_to_others(secret):
            warnings.append(
                f"password file {secret} is readable by every user on this machine; chmod 640 it"
            )
    return warnings


def _open_to_others(path: str | os.PathLike[str]) -> bool:
    try:
        mode = Path(path).stat().st_mode
    except OSError:
        return False  # a missing file is reported where it is read
    return bool(mode & (stat.S_IROTH | stat.S_IWOTH))


def _password_files(path: Path, environ: Mapping[str, str]) -> list[str]:
    """The password files the config file and the environment name."""
    found = []
    parser = configparser.ConfigParser(interpolation=None, default_section="\0none")
    try:
        with path.open(encoding="utf-8-sig") as handle:
            parser.read_file(handle)
    except (OSError, UnicodeDecodeError, configparser.Error):
        pass  # load_settings has said what is wrong with it
    for section in parser.sections():
        value = parser.get(section, "password_file", fallback="").strip()
        if value:
            found.append(value)
    for name, value in environ.items():
        if name.startswith(ENV_PREFIX) and name.endswith("_PASSWORD_FILE") and value.strip():
            found.append(value.strip())
    return found


def describe(settings: Settings) -> list[str]:
    """The settings as `section.key = value` lines, with secrets masked; then
    each profile's effective [ivr] settings and the [crm] ones it may change,
    as `profile:NAME.ivr.key = value`."""
    lines = []
    for section in ("ari", "ivr", "crm", "outbox", "metrics"):
        lines += _describe_fields(section, getattr(settings, section))
    for profile in settings.profiles:
        prefix = f"{PROFILE_PREFIX}{profile.name}"
        lines.append(f"{prefix}.queues = {', '.join(profile.queues) or '(none)'}")
        lines += _describe_fields(f"{prefix}.ivr", profile.ivr)
        lines += _describe_fields(f"{prefix}.crm", profile.crm, PROFILE_CRM_FIELDS)
    return lines


def _describe_fields(prefix: str, value: object, only: Collection[str] | None = None) -> list[str]:
    lines = []
    for item in fields(value):  # type: ignore[arg-type]
        if only is not None and item.name not in only:
            continue
        shown = getattr(value, item.name)
        if item.name == "password":
            shown = "(set)" if shown else "(not set)"
        elif item.name == "params":
            shown = _names_only(shown)
        elif item.name == "url":
            shown = _url_without_query_values(_without_password(shown))
        elif isinstance(shown, bool):
            shown = "yes" if shown else "no"
        elif item.name == "context_params":
            shown = ", ".join(f"{name}={fact}" for name, fact in shown) or "(none)"
        elif item.name == "number_rewrite":
            shown = "; ".join(f"{find} => {to}" for find, to in shown) or "(none)"
        elif item.name == "hours":
            shown = describe_hours(shown) or "(open all week)"
        elif item.name == "closed_dates":
            shown = ", ".join(day.isoformat() for day in shown) or "(none)"
        elif item.name == "timezone":
            shown = shown or "(this machine's zone)"
        lines.append(f"{prefix}.{item.name} = {shown}")
    return lines


# Names only: a name does not tell whether its value is a token (a CRM may call it "s").
def _names_only(pairs: tuple[tuple[str, str], ...]) -> str:
    if not pairs:
        return "(none)"
    return ", ".join(name for name, _ in pairs) + " (values not shown)"


def _without_password(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rpartition("@")[2]
    return parts._replace(netloc=f"{parts.username}:***@{host}").geturl()


def _url_without_query_values(url: str) -> str:
    parts = urlsplit(url)
    if not parts.query:
        return url
    names = "&".join(f"{name}=" for name, _ in parse_qsl(parts.query, keep_blank_values=True))
    return parts._replace(query=names).geturl() + " (values not shown)"


def with_overrides(settings: Settings, section: str, **changes: Any) -> Settings:
    """A copy of `settings` with some fields of one section changed."""
    return replace(settings, **{section: replace(getattr(settings, section), **changes)})
