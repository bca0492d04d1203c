"""Configuration: the sample loads; every mistake gets one clear message."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from stasis_dnd.config import (
    ConfigError,
    describe,
    load_settings,
    parse_duration,
    permission_warnings,
)
from stasis_dnd.settings import DialplanTarget

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "stasis-dnd.ini.sample"
MINIMAL = """
[ari]
password = ari-secret
[crm]
username = robot
password = crm-secret
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "stasis-dnd.ini"
    path.write_text(text)
    return path


def test_sample_documents_every_key_and_loads() -> None:
    settings = load_settings(SAMPLE, env={}, require_secrets=False)
    assert settings.ivr.prompt == "custom/IVR_DND_OPERATORS"
    assert settings.ivr.digit_timeout == 3.0
    assert settings.outbox.max_age == 24 * 3600
    assert settings.outbox.keep == 30 * 86400
    assert settings.ari.drain_timeout == 20
    text = SAMPLE.read_text()
    from stasis_dnd.config import _SCHEMA

    for section, (_, keys) in _SCHEMA.items():
        assert f"[{section}]" in text
        for key in keys:
            assert f"{key} =" in text, f"[{section}] {key} is not in the sample"


def test_minimal_config_gives_the_original_setup(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path, MINIMAL), env={})
    assert settings.crm.url == "http://127.0.0.1:9088"
    assert settings.crm.sub == "dndoperator"
    assert settings.crm.phone_param == "aon"
    assert settings.crm.callerid_param == "callerId"
    assert settings.crm.class_name == "ru.bgcrm.dyn.utils.asterisk.AsteriskIn"
    assert settings.ivr.accept_digit == "1"
    assert settings.ivr.attempts == 1


def test_outbox_keep_is_a_duration_and_zero_keeps_forever(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL + "\n[outbox]\nkeep = 90d\n")
    assert load_settings(path, env={}).outbox.keep == 90 * 86400
    assert load_settings(path, env={"STASIS_DND_OUTBOX_KEEP": "0"}).outbox.keep == 0
    with pytest.raises(ConfigError, match="STASIS_DND_OUTBOX_KEEP: expected a duration"):
        load_settings(path, env={"STASIS_DND_OUTBOX_KEEP": "forever"})


def test_environment_overrides_the_file(tmp_path: Path) -> None:
    env = {
        "STASIS_DND_CRM_PASSWORD": "from-env",
        "STASIS_DND_IVR_DIGIT_TIMEOUT": "5",
        "STASIS_DND_SANDBOX_CACHE": "/tmp/x",  # another tool's variable: ignored
        "PATH": "/bin",
    }
    settings = load_settings(write(tmp_path, MINIMAL), env=env)
    assert settings.crm.password == "from-env"
    assert settings.ivr.digit_timeout == 5.0


def test_business_hours_are_read_and_shown(tmp_path: Path) -> None:
    text = MINIMAL + (
        "[ivr]\nhours = mon-fri 09:00-18:00, fri 22:00-02:00\n"
        "closed_dates = 2026-12-31 2027-01-01\ntimezone = Europe/Berlin\n"
        "outside_hours = Announce\n"
    )
    ivr = load_settings(write(tmp_path, text), env={}).ivr
    assert [str(window) for window in ivr.hours][-2:] == ["fri 09:00-18:00", "fri 22:00-02:00"]
    assert [day.isoformat() for day in ivr.closed_dates] == ["2026-12-31", "2027-01-01"]
    assert (ivr.timezone, ivr.outside_hours) == ("Europe/Berlin", "announce")
    lines = describe(load_settings(write(tmp_path, text), env={}))
    assert "ivr.closed_dates = 2026-12-31, 2027-01-01" in lines
    assert (
        "ivr.hours = mon 09:00-18:00, tue 09:00-18:00, wed 09:00-18:00, "
        in lines[[line.startswith("ivr.hours") for line in lines].index(True)]
    )
    defaults = describe(load_settings(None, env={}, require_secrets=False))
    assert "ivr.hours = (open all week)" in defaults
    assert "ivr.timezone = (this machine's zone)" in defaults
    assert "ivr.outside_hours = offer" in defaults


def test_password_file(tmp_path: Path) -> None:
    secret = tmp_path / "crm.password"
    secret.write_text("s3cret\n")
    text = MINIMAL.replace("password = crm-secret", f"password_file = {secret}")
    assert load_settings(write(tmp_path, text), env={}).crm.password == "s3cret"


def test_params_are_parsed() -> None:
    settings = load_settings(
        None, env={"STASIS_DND_CRM_PARAMS": "a=1&b=x y"}, require_secrets=False
    )
    assert settings.crm.params == (("a", "1"), ("b", "x y"))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[ari]\npasword = x\n", "[ari] unknown key 'pasword'"),
        ("[asterisk]\nurl = x\n", "unknown section [asterisk]"),
        ("[ivr]\ndigit_timeout = soon\n", "[ivr] digit_timeout: expected a number"),
        ("[ivr]\nattempts = 0\n", "[ivr] attempts must be at least 1"),
        ("[ivr]\nattempts = two\n", "[ivr] attempts: expected a whole number"),
        ("[ivr]\naccept_digit = 12\n", "accept_digit must be one DTMF key"),
        ("[ivr]\ncallerid_source = cid\n", "callerid_source must be one of"),
        ("[ivr]\non_prompt_failure = panic\n", "on_prompt_failure must be one of"),
        ("[ivr]\nplayback_timeout = 0\n", "[ivr] playback_timeout must be greater than 0"),
        ("[ivr]\nplayback_timeout = never\n", "[ivr] playback_timeout: expected a duration"),
        ("[ivr]\nplayback_start_timeout = 0\n", "playback_start_timeout must be greater than 0"),
        ("[ivr]\ncontinue_to = dnd-fallback\n", "[ivr] continue_to: expected context,extension"),
        ("[ivr]\ncontinue_stored_to = a,,1\n", "[ivr] continue_stored_to: expected context"),
        ("[ivr]\ncontinue_to = a,b,c,d\n", "[ivr] continue_to: expected context,extension"),
        # 5 s is not longer than a 2 s write plus the 3 s direct CRM try.
        ("[ivr]\nstore_timeout = 5\n", "[ivr] store_timeout (5 s) must be longer than"),
        ("[outbox]\nwrite_timeout = 0\n", "[outbox] write_timeout must be greater than 0"),
        ("[crm]\nstyle = soap\n", "[crm] style: expected one of dynamic, run"),
        ("[crm]\nurl = 127.0.0.1:9088\n", "[crm] url: expected a http or https URL"),
        ("[crm]\nparams = callback=x\n", "a parameter named callback"),
        ("[crm]\ncallerid_param = aon\n", "[crm] callerid_param must differ from phone_param"),
        ("[crm]\ncallerid_param = callback\n", "[crm] callerid_param must not be callback"),
        ("[outbox]\nmax_age = forever\n", "[outbox] max_age: expected a duration"),
        ("[metrics]\nlisten = everywhere\n", "[metrics] listen: expected host:port"),
        ("[crm]\npassword_file = /nonexistent/pw\n", "cannot read password file"),
        ("[crm]\nca_bundle = /nonexistent/ca.pem\n", "[crm] ca_bundle: CA file /nonexistent"),
        ("[ari]\nca_bundle = /etc/hostname\n", "[ari] ca_bundle: CA file /etc/hostname holds no"),
        ("not an ini file\n", "not a valid INI file"),
        ("[ivr]\nhours = mon-fri 9-18\n", "[ivr] hours: hours item 'mon-fri 9-18': '9-18' is"),
        ("[ivr]\nclosed_dates = 31.12.2026\n", "[ivr] closed_dates: closed date '31.12.2026'"),
        ("[ivr]\ntimezone = Europe/Mosow\n", "[ivr] timezone: unknown time zone 'Europe/Mosow'"),
        (
            "[ivr]\noutside_hours = voicemail\n",
            "[ivr] outside_hours: expected one of offer, announce, continue, got 'voicemail'",
        ),
        (
            "[ivr]\noutside_hours = announce\nclosed_prompt =\n",
            "[ivr] closed_prompt must name a sound",
        ),
        ("[ivr]\nclosed_continue_to = a\n", "[ivr] closed_continue_to: expected context"),
    ],
)
def test_mistakes_name_file_section_and_key(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_settings(path, env={})
    assert message in str(caught.value)
    assert str(path) in str(caught.value)


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("[crm]\nusername = u\npassword = p\n", "[ari] password is not set"),
        ("[ari]\npassword = p\n[crm]\nusername = u\n", "[crm] password is not set"),
        ("[ari]\npassword = p\n[crm]\npassword = p\n", "[crm] username is not set"),
    ],
)
def test_missing_secrets(tmp_path: Path, text: str, key: str) -> None:
    with pytest.raises(ConfigError, match=key.replace("[", r"\[").replace("]", r"\]")):
        load_settings(write(tmp_path, text), env={})


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("[ari]\npassword = change-me\n[crm]\nusername = u\npassword = p\n", "[ari] password"),
        ("[ari]\npassword = p\n[crm]\nusername = Change-Me\npassword = p\n", "[crm] username"),
        ("[ari]\npassword = p\n[crm]\nusername = u\npassword = CHANGE_ME \n", "[crm] password"),
        (
            "[ari]\npassword = p\nusername = changeme\n[crm]\nusername = u\npassword = p\n",
            "[ari] username",
        ),
    ],
)
def test_placeholders_are_refused_naming_the_key(tmp_path: Path, text: str, key: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(write(tmp_path, text), env={})
    message = str(caught.value)
    assert f"{key} still holds the sample's placeholder" in message
    assert "\n" not in message


def test_a_placeholder_from_the_environment_names_the_variable(tmp_path: Path) -> None:
    env = {"STASIS_DND_CRM_PASSWORD": "change-me"}
    with pytest.raises(ConfigError, match="environment variable STASIS_DND_CRM_PASSWORD"):
        load_settings(write(tmp_path, MINIMAL), env=env)


def test_a_value_that_only_contains_the_placeholder_is_accepted(tmp_path: Path) -> None:
    text = MINIMAL.replace("crm-secret", "change-me-not")
    assert load_settings(write(tmp_path, text), env={}).crm.password == "change-me-not"


def test_check_config_refuses_the_sample_as_it_stands() -> None:
    result = run_cli("check-config", "--config", str(SAMPLE))
    assert result.returncode == 1
    assert len(result.stderr.strip().splitlines()) == 1
    assert "[ari] password still holds the sample's placeholder" in result.stderr


def test_run_refuses_the_sample_as_it_stands() -> None:
    result = run_cli("run", "--config", str(SAMPLE))
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "[ari] password still holds the sample's placeholder" in result.stderr


def test_unknown_environment_key_is_a_mistake() -> None:
    with pytest.raises(ConfigError, match="STASIS_DND_CRM_PASWORD"):
        load_settings(None, env={"STASIS_DND_CRM_PASWORD": "x"}, require_secrets=False)


def test_missing_file() -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings("/nonexistent/stasis-dnd.ini", env={})


@pytest.mark.parametrize(
    ("text", "seconds"), [("90", 90), ("90s", 90), ("30m", 1800), ("24h", 86400), ("7d", 604800)]
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


def test_world_readable_config_is_warned_about(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL)
    path.chmod(0o644)
    assert permission_warnings(path)
    path.chmod(0o640)
    assert permission_warnings(path) == []


def test_world_readable_password_file_is_warned_about(tmp_path: Path) -> None:
    secret = tmp_path / "crm.password"
    secret.write_text("crm-secret\n")
    secret.chmod(0o644)
    path = write(tmp_path, MINIMAL.replace("password = crm-secret", f"password_file = {secret}"))
    path.chmod(0o600)
    warnings = permission_warnings(path, environ={})
    assert len(warnings) == 1
    assert str(secret) in warnings[0] and "chmod 640" in warnings[0]
    assert "crm-secret" not in warnings[0]
    secret.chmod(0o600)
    assert permission_warnings(path, environ={}) == []
    # A password file named by the environment is checked too.
    other = tmp_path / "ari.password"
    other.write_text("ari-secret")
    other.chmod(0o604)
    env = {"STASIS_DND_ARI_PASSWORD_FILE": str(other)}
    assert permission_warnings(path, environ=env) == [
        f"password file {other} is readable by every user on this machine; chmod 640 it"
    ]


def test_byte_order_mark_in_config_and_password_file_is_ignored(tmp_path: Path) -> None:
    secret = tmp_path / "crm.password"
    secret.write_bytes("\ufeffcrm-secret\r\n".encode())
    text = MINIMAL.replace("password = crm-secret", f"password_file = {secret}")
    path = tmp_path / "stasis-dnd.ini"
    path.write_bytes(("\ufeff" + text.lstrip()).encode())
    settings = load_settings(path, env={})
    assert settings.ari.password == "ari-secret"
    assert settings.crm.password == "crm-secret"


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "stasis_dnd", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_check_config_ok_and_hides_passwords(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL)
    path.chmod(0o600)
    result = run_cli("check-config", "--config", str(path), "--show")
    assert result.returncode == 0, result.stderr
    assert "OK" in result.stdout
    assert "crm-secret" not in result.stdout + result.stderr
    assert "ari-secret" not in result.stdout + result.stderr


def test_check_config_mistake_is_one_line_and_exit_1(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL + "[ivr]\ndigit_timeout = -1\n")
    result = run_cli("check-config", "--config", str(path))
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "[ivr] digit_timeout" in result.stderr


def test_continue_targets_parse_and_empty_means_after_stasis() -> None:
    settings = load_settings(
        None,
        env={
            "STASIS_DND_IVR_CONTINUE_TO": "",
            "STASIS_DND_IVR_CONTINUE_STORED_TO": " bye , s ",
            "STASIS_DND_IVR_STORE_TIMEOUT": "5.1",
        },
        require_secrets=False,
    )
    assert settings.ivr.continue_to is None
    assert settings.ivr.continue_stored_to == DialplanTarget("bye", "s", "1")
    assert settings.ivr.store_timeout == 5.1  # just over 2 s + 3 s
    defaults = load_settings(None, env={}, require_secrets=False).ivr
    assert str(defaults.continue_to) == "dnd-fallback,s,1"
    assert str(defaults.continue_stored_to) == "dnd-fallback,hang,1"


def test_describe_shows_crm_params_and_url_query_by_name_only(tmp_path: Path) -> None:
    text = MINIMAL.replace(
        "[crm]\n",
        "[crm]\nurl = https://crm.example/dynamic.do?key=k-123&lang=ru\n"
        "params = token=t-456&source=v-789\n",
    )
    lines = describe(load_settings(write(tmp_path, text), env={}))
    assert "crm.params = token, source (values not shown)" in lines
    assert "crm.url = https://crm.example/dynamic.do?key=&lang= (values not shown)" in lines
    assert "crm.password = (set)" in lines and "ari.password = (set)" in lines
    shown = "\n".join(lines)
    for value in ("k-123", "t-456", "v-789", "crm-secret", "ari-secret"):
        assert value not in shown


def test_describe_without_params_or_query() -> None:
    lines = describe(load_settings(SAMPLE, env={}, require_secrets=False))
    assert "crm.params = (none)" in lines
    assert "crm.url = http://127.0.0.1:9088" in lines


def test_outbox_defaults_to_the_units_state_directory(tmp_path: Path) -> None:
    env = {"STATE_DIRECTORY": "/var/lib/stasis-dnd/pbx1"}
    settings = load_settings(write(tmp_path, MINIMAL), env=env)
    assert settings.outbox.path == "/var/lib/stasis-dnd/pbx1/outbox.sqlite3"
    several = {"STATE_DIRECTORY": "/var/lib/stasis-dnd/pbx2:/var/lib/other"}
    assert load_settings(write(tmp_path, MINIMAL), env=several).outbox.path == (
        "/var/lib/stasis-dnd/pbx2/outbox.sqlite3"
    )


def test_outbox_default_outside_systemd(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path, MINIMAL), env={})
    assert settings.outbox.path == "/var/lib/stasis-dnd/outbox.sqlite3"


def test_an_explicit_outbox_path_wins_over_the_state_directory(tmp_path: Path) -> None:
    env = {"STATE_DIRECTORY": "/var/lib/stasis-dnd/pbx1"}
    text = MINIMAL + "[outbox]\npath = /srv/outbox.sqlite3\n"
    assert load_settings(write(tmp_path, text), env=env).outbox.path == "/srv/outbox.sqlite3"
    env["STASIS_DND_OUTBOX_PATH"] = "/srv/env.sqlite3"
    assert load_settings(write(tmp_path, text), env=env).outbox.path == "/srv/env.sqlite3"


def test_number_rules_switches_and_their_display(tmp_path: Path) -> None:
    text = MINIMAL + (
        "[ivr]\nreadback = no\nsilence_confirms = Off\nhidden_number_entry = 1\n"
        "number_pattern = \\+7[0-9]{10}\n"
        "number_rewrite =\n    8(\\d{10}) => +7\\1\n\n    7(\\d{10}) => +7\\1\n"
    )
    settings = load_settings(write(tmp_path, text), env={})
    ivr = settings.ivr
    assert (ivr.readback, ivr.silence_confirms, ivr.hidden_number_entry) == (False, False, True)
    assert ivr.number_pattern == r"\+7[0-9]{10}"
    assert ivr.number_rewrite == ((r"8(\d{10})", r"+7\1"), (r"7(\d{10})", r"+7\1"))
    lines = describe(settings)
    assert "ivr.readback = no" in lines and "ivr.hidden_number_entry = yes" in lines
    assert r"ivr.number_rewrite = 8(\d{10}) => +7\1; 7(\d{10}) => +7\1" in lines
    defaults = describe(load_settings(write(tmp_path, MINIMAL), env={}))
    assert "ivr.number_rewrite = (none)" in defaults


@pytest.mark.parametrize(
    ("ivr", "message"),
    [
        ("readback = maybe", "[ivr] readback: expected yes or no, got 'maybe'"),
        ("number_pattern = [0-9", "number_pattern is not a valid regular expression"),
        ("number_rewrite = 8(\\d+)", "expected PATTERN => REPLACEMENT on each line"),
        ("number_rewrite = 8(\\d+) => \\2", "number_rewrite rule '8(\\\\d+)': invalid group"),
        ("number_rewrite = 8(\\d+ => \\1", "number_rewrite rule '8(\\\\d+'"),
        ("confirm_digit = 2", "confirm_digit and change_digit must be different keys"),
        ("change_digit = 22", "change_digit must be one DTMF key"),
        ("entry_attempts = 0", "entry_attempts must be at least 1"),
        ("entry_digit_timeout = 0", "entry_digit_timeout must be greater than 0"),
        ("entry_prompt =", "entry_prompt must name a sound"),
    ],
)
def test_number_rule_mistakes_are_one_sentence(tmp_path: Path, ivr: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(write(tmp_path, MINIMAL + "[ivr]\n" + ivr + "\n"), env={})
    assert message in str(caught.value)


def test_entry_prompt_may_be_empty_only_when_entry_and_read_back_are_off(tmp_path: Path) -> None:
    text = MINIMAL + "[ivr]\nreadback = no\nhidden_number_entry = no\nentry_prompt =\n"
    assert load_settings(write(tmp_path, text), env={}).ivr.entry_prompt == ""
    # The read-back's change_digit leads to the entry, hidden numbers or not.
    with pytest.raises(ConfigError, match="entry_prompt must name a sound"):
        load_settings(write(tmp_path, text.replace("readback = no", "readback = yes")), env={})


def test_context_params_map_crm_names_to_facts(tmp_path: Path) -> None:
    line = "queue=queue&reason=reason&waited=waited_seconds&line=dialled&call_id=linkedid"
    text = MINIMAL + f"context_params = {line}\n"
    settings = load_settings(write(tmp_path, text), env={})
    assert settings.crm.context_params == (
        ("queue", "queue"),
        ("reason", "reason"),
        ("waited", "waited_seconds"),
        ("line", "dialled"),
        ("call_id", "linkedid"),
    )
    assert load_settings(None, env={}, require_secrets=False).crm.context_params == ()


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("q=queues", "'queues' is no fact of a call; known facts: queue, reason, waited_seconds"),
        ("aon=queue", "the CRM parameter 'aon' is taken"),
        ("requestId=queue", "the CRM parameter 'requestId' is taken"),
        ("callerId=queue", "the CRM parameter 'callerId' is taken"),
        ("Callback=queue", "a parameter named callback breaks the CRM's JSON answer"),
        ("office=queue", "the CRM parameter 'office' is taken"),
        ("q=queue&q=reason", "the CRM parameter 'q' is taken"),
    ],
)
def test_bad_context_params_are_one_sentence(tmp_path: Path, line: str, message: str) -> None:
    text = MINIMAL + "params = office=1\n" + f"context_params = {line}\n"
    with pytest.raises(ConfigError, match="context_params") as caught:
        load_settings(write(tmp_path, text), env={})
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)
