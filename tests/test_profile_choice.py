"""Profiles: `[profile:NAME]` sections read from the config, and the choice
of the profile that serves a call (by name from the dialplan, else by queue)."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stasis_dnd.cli import main
from stasis_dnd.config import ConfigError, describe, load_settings
from stasis_dnd.profiles import Choice, Profiles
from stasis_dnd.settings import CrmSettings, IvrSettings, Profile, Settings
from stasis_dnd.testing.conversation import Conversation

MINIMAL = """
[ari]
password = ari-secret
[crm]
username = robot
password = crm-secret
sub = dndoperator
"""
SALES = """
[profile:Sales]
queues = 998, 997
prompt = custom/IVR_DND_SALES
attempts = 2
sub = dndsales
class = ru.example.SalesCallback
hours = mon-fri 09:00-18:00
timezone = Europe/Moscow
"""


def load(tmp_path: Path, text: str) -> Settings:
    path = tmp_path / "stasis-dnd.ini"
    path.write_text(MINIMAL + text)
    return load_settings(path, env={})


def error(tmp_path: Path, text: str) -> str:
    with pytest.raises(ConfigError) as raised:
        load(tmp_path, text)
    return str(raised.value)


# --- reading them ----------------------------------------------------------


def test_a_profile_overrides_ivr_and_crm_keys_and_keeps_the_rest(tmp_path: Path) -> None:
    settings = load(tmp_path, "[ivr]\ndigit_timeout = 4\n" + SALES)
    (sales,) = settings.profiles
    assert sales.name == "sales"  # names ignore case
    assert sales.queues == ("998", "997")
    assert sales.ivr.prompt == "custom/IVR_DND_SALES"
    assert sales.ivr.attempts == 2
    assert sales.ivr.digit_timeout == 4.0  # from [ivr]
    assert sales.ivr.timezone == "Europe/Moscow"
    assert sales.crm.sub == "dndsales"
    assert sales.crm.class_name == "ru.example.SalesCallback"
    assert sales.crm.username == "robot"  # one login for every profile
    assert settings.ivr.prompt == "custom/IVR_DND_OPERATORS"  # the default is untouched
    assert settings.crm.sub == "dndoperator"
    assert [p.name for p in settings.all_profiles()] == ["default", "sales"]


def test_check_config_shows_each_profiles_effective_settings(tmp_path: Path) -> None:
    lines = describe(load(tmp_path, SALES))
    assert "profile:sales.queues = 998, 997" in lines
    assert "profile:sales.ivr.prompt = custom/IVR_DND_SALES" in lines
    assert "profile:sales.ivr.digit_timeout = 3.0" in lines  # inherited, shown too
    assert "profile:sales.crm.sub = dndsales" in lines
    assert "profile:sales.ivr.timezone = Europe/Moscow" in lines
    # The login is the [crm] one: not repeated, never shown.
    assert not [line for line in lines if line.startswith("profile:sales.crm.password")]
    assert not [line for line in lines if "crm-secret" in line]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[profile:sales]\nurl = http://other:9088\n", "[profile:sales] url: a profile changes"),
        ("[profile:sales]\npassword = x\n", "set password in [crm] (one CRM per app)"),
        ("[profile:sales]\ncolour = red\n", "[profile:sales] unknown key 'colour'; known keys:"),
        ("[profile:]\nsub = x\n", "[profile:] is no usable profile name"),
        ("[profile:de fault]\nsub = x\n", "is no usable profile name"),
        ("[profile:Default]\nsub = x\n", "[ivr] and [crm] are the default profile"),
        ("[profile:a]\nqueues = 1\n[profile:A]\nqueues = 2\n", "are one profile"),
        ("[profile:a]\nqueues = 998\n[profile:b]\nqueues = 7, 998\n", "queue '998' is listed"),
        ("[profile:a]\nqueues = 998 998\n", "[profile:a] queues: a queue is listed twice"),
        ("[profile:a]\naccept_digit = 12\n", "[profile:a] accept_digit must be one DTMF key"),
        ("[profile:a]\nattempts = many\n", "[profile:a] attempts: expected a whole number"),
        ("[profile:a]\nstore_timeout = 1\n", "[profile:a] store_timeout (1 s) must be longer"),
        ("[profile:a]\ncontext_params = aon=queue\n", "context_params: the CRM parameter 'aon'"),
        ("[colour]\nx = 1\n", "known sections: [ari], [ivr], [crm], [outbox], [metrics], [prof"),
    ],
)
def test_every_profile_mistake_is_one_sentence_naming_the_section(
    tmp_path: Path, text: str, expected: str
) -> None:
    message = error(tmp_path, text)
    assert expected in message
    assert "\n" not in message and "Traceback" not in message


def test_a_profile_key_in_the_environment_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "stasis-dnd.ini"
    path.write_text(MINIMAL)
    with pytest.raises(ConfigError, match="profiles are read from the config file only"):
        load_settings(path, env={"STASIS_DND_PROFILE_SALES_SUB": "x"})


def test_a_profile_without_queues_is_chosen_by_name_only(tmp_path: Path) -> None:
    (vip,) = load(tmp_path, "[profile:vip]\nsub = vip\n").profiles
    assert vip.queues == ()


# --- choosing one ------------------------------------------------------------

DEFAULT = Settings()
SALES_PROFILE = Profile("sales", IvrSettings(prompt="s"), CrmSettings(sub="s"), ("998", "Q7"))
VIP = Profile("vip", IvrSettings(prompt="v"), CrmSettings(sub="v"))
PROFILES = Profiles(Settings(profiles=(SALES_PROFILE, VIP)))


def test_the_named_profile_wins_over_the_queue() -> None:
    assert PROFILES.choose(named="vip", queue="998") == Choice(VIP)


def test_the_queue_chooses_when_no_name_is_given() -> None:
    assert PROFILES.choose(queue="998") == Choice(SALES_PROFILE)
    assert PROFILES.choose(queue="q7") == Choice(SALES_PROFILE)  # as Asterisk: any case
    assert PROFILES.choose(named=" ", queue=" 998 ") == Choice(SALES_PROFILE)


def test_no_match_is_the_default_profile() -> None:
    assert PROFILES.choose() == Choice(PROFILES.default)
    assert PROFILES.choose(queue="999") == Choice(PROFILES.default)
    assert PROFILES.choose(named="Default", queue="998") == Choice(PROFILES.default)
    assert PROFILES.default.ivr == DEFAULT.ivr and PROFILES.default.name == "default"


def test_an_unknown_name_is_the_default_profile_and_is_reported() -> None:
    assert PROFILES.choose(named="Salse", queue="998") == Choice(PROFILES.default, "Salse")


def test_profiles_iterate_default_first() -> None:
    assert [p.name for p in PROFILES] == ["default", "sales", "vip"]
    assert PROFILES.named("SALES") is SALES_PROFILE and PROFILES.named("x") is None


@given(named=st.text(max_size=12), queue=st.text(max_size=12))
def test_the_choice_is_always_a_configured_profile(named: str, queue: str) -> None:
    choice = PROFILES.choose(named=named, queue=queue)
    assert choice.profile in (PROFILES.default, SALES_PROFILE, VIP)
    if not named.strip():
        assert choice.unknown == ""
        listed = queue.strip().casefold() in ("998", "q7")
        assert (choice.profile is SALES_PROFILE) == listed
    elif named.strip().lower() in ("default", "sales", "vip"):
        assert choice.unknown == "" and choice.profile.name == named.strip().lower()
    else:
        assert choice == Choice(PROFILES.default, named.strip())


def test_a_conversation_under_a_config_is_served_by_the_profile_of_its_queue(
    tmp_path: Path,
) -> None:
    settings = load(tmp_path, SALES.replace("attempts = 2", "readback = no"))
    call = Conversation.configured(settings, args=("TIMEOUT", "queue=998"))
    assert call.expect_prompt().media == "sound:custom/IVR_DND_SALES"
    call.press("1")
    call.expect_callback("+79001234567")  # no read-back in this profile
    other = Conversation.configured(settings, args=("TIMEOUT", "queue=999"))
    assert other.expect_prompt().media == "sound:custom/IVR_DND_OPERATORS"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[crm]\nparams = sub=x\n", ": [crm] params: 'sub' is already sent by stasis-dnd"),
        (
            "[profile:sales]\nparams = j_username=x\n",
            ": [profile:sales] params: 'j_username' is already sent by stasis-dnd",
        ),
    ],
)
def test_check_config_refuses_what_run_would_refuse_in_any_profile(
    tmp_path: Path, text: str, expected: str, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "stasis-dnd.ini"
    path.write_text(MINIMAL.replace("[crm]\n", "[crm]\n" + text.split("\n", 1)[1], 1)
                    if text.startswith("[crm]") else MINIMAL + text)  # fmt: skip
    path.chmod(0o600)
    assert main(["check-config", "--config", str(path)]) == 1
    err = capsys.readouterr().err
    assert expected in err and err.count("\n") == 1, err
