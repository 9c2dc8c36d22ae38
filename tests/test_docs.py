"""The README's configuration table and the settings cannot drift apart."""

from __future__ import annotations

import re
from pathlib import Path

from reelgate.config import Settings

README = Path(__file__).resolve().parent.parent / "README.md"
TEST_ONLY = {"REELGATE_TEST_DATABASE_URL", "REELGATE_TEST_REDIS_URL", "REELGATE_TEST_RUNTIME_DIR"}


def documented() -> set[str]:
    return set(re.findall(r"`(REELGATE_[A-Z0-9_]+)`", README.read_text()))


def test_every_setting_is_documented() -> None:
    settings = {f"REELGATE_{name.upper()}" for name in Settings.model_fields}
    assert sorted(settings - documented()) == []


def test_every_documented_variable_exists() -> None:
    settings = {f"REELGATE_{name.upper()}" for name in Settings.model_fields}
    assert sorted(documented() - settings - TEST_ONLY) == []
