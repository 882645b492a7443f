"""Settings are read under their documented names only, and every one is documented."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import AliasChoices, ValidationError
from pydantic_settings import BaseSettings

from floodgate.cli_settings import CliSettings
from floodgate.launch import resolve_port
from services.ingest.settings import IngestSettings
from services.scheduler.settings import SchedulerSettings
from services.sender.settings import SenderSettings
from services.stats.settings import StatsSettings
from shared.context import consumer_name
from shared.settings import CommonSettings

ROOT = Path(__file__).resolve().parents[2]
CLASSES: list[type[BaseSettings]] = [
    CommonSettings,
    IngestSettings,
    SchedulerSettings,
    SenderSettings,
    StatsSettings,
    CliSettings,
]


def _names(cls: type[BaseSettings]) -> dict[str, str]:
    """Field name -> the environment variable it is read from."""
    found = {}
    for field_name, info in cls.model_fields.items():
        alias = info.validation_alias
        assert isinstance(alias, AliasChoices), f"{cls.__name__}.{field_name} has no env name"
        assert len(alias.choices) == 1, f"{cls.__name__}.{field_name}: {alias.choices}"
        found[field_name] = str(alias.choices[0])
    return found


def _read_directly() -> set[str]:
    """Variables the code reads around the settings models (``os.environ.get``, ``getenv``)."""
    names: set[str] = set()
    for folder in ("floodgate", "services", "shared", "sandbox"):
        for path in (ROOT / folder).rglob("*.py"):
            found = re.findall(
                r"""(?:os\.environ\.get|os\.getenv|os\.environ\[)\(?\s*['"]([A-Z_]+)['"]""",
                path.read_text(),
            )
            names |= set(found)
    return names


def _documented() -> set[str]:
    """Every variable named in a row of the README's configuration table."""
    readme = (ROOT / "README.md").read_text()
    table = readme.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    rows = [line.split("|")[1] for line in table.splitlines() if line.startswith("| `")]
    return {name for row in rows for name in re.findall(r"`([A-Z_]+)`", row)}


def _read() -> set[str]:
    return {name for cls in CLASSES for name in _names(cls).values()}


def test_settings_are_read_only_through_the_models() -> None:
    """No variable is read around the settings models, so the models are the whole list."""
    assert sorted(_read_directly()) == []
    assert {"PORT", "HOST", "FLOODGATE_STATS_URL", "FLOODGATE_CONSUMER"} <= _read()


def test_every_setting_is_in_the_readme_table() -> None:
    assert sorted(_read() - _documented()) == []


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_only_the_documented_name_is_read(cls: type[BaseSettings], monkeypatch) -> None:
    """A field's own name, its upper-case form and the documented name in lower case change
    nothing (another program's ``BOT_RATE`` or ``batch`` in the same environment)."""
    defaults = cls().model_dump()
    for field_name, env_name in _names(cls).items():
        for other in {field_name, field_name.upper(), env_name.lower()} - {env_name}:
            monkeypatch.setenv(other, "7")
    assert cls().model_dump() == defaults


def test_the_documented_name_is_read(monkeypatch) -> None:
    monkeypatch.setenv("FLOODGATE_BOT_RATE", "7")
    monkeypatch.setenv("FLOODGATE_SENDER_BATCH", "7")
    assert CommonSettings().bot_rate == 7
    assert SenderSettings().batch == 7


def test_every_variable_in_the_readme_table_is_read() -> None:
    """The other way round: no row of the table names a variable nothing reads."""
    assert sorted(_documented() - _read()) == []


def test_port_and_consumer_come_from_the_settings(monkeypatch) -> None:
    monkeypatch.setenv("PORT", "9123")
    monkeypatch.setenv("FLOODGATE_CONSUMER", "pod-0")
    settings = CommonSettings()
    assert resolve_port("sender", None, settings) == 9123
    assert resolve_port("sender", 7000, settings) == 7000, "--port wins"
    assert consumer_name(settings) == "pod-0"
    monkeypatch.delenv("PORT")
    monkeypatch.delenv("FLOODGATE_CONSUMER")
    settings = CommonSettings()
    assert resolve_port("sender", None, settings) == 8082
    assert consumer_name(settings).endswith(f"-{os.getpid()}")


def test_every_settings_model_is_checked() -> None:
    """A settings class added anywhere is one this file compares with the README."""
    found = set()
    for folder in ("floodgate", "services", "shared", "sandbox"):
        for path in (ROOT / folder).rglob("*.py"):
            found |= set(re.findall(r"^class (\w+)\(BaseSettings\)", path.read_text(), re.M))
    assert found == {cls.__name__ for cls in CLASSES}


@pytest.mark.parametrize("bad", ["", "a{b", "a}b", "fg:x", "fg*", "x" * 65, "f g"])
def test_a_namespace_that_would_break_hash_tags_is_refused(bad: str, monkeypatch) -> None:
    monkeypatch.setenv("FLOODGATE_NAMESPACE", bad)
    with pytest.raises(ValidationError, match="FLOODGATE_NAMESPACE"):
        CommonSettings()


def test_a_bad_setting_stops_the_command_with_its_name_and_never_its_value() -> None:
    env = {**os.environ, "FLOODGATE_BOT_RATE": "s3cr3t-value", "FLOODGATE_NAMESPACE": "a{b"}
    done = subprocess.run(
        [sys.executable, "-m", "floodgate.cli", "run", "all", "--port", "1"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert "FLOODGATE_BOT_RATE: Input should be a valid number" in done.stderr
    assert "FLOODGATE_NAMESPACE: String should match pattern" in done.stderr
    assert "Traceback" not in done.stderr
    assert "s3cr3t" not in done.stderr + done.stdout
