"""Settings parsing, and the README's settings table kept in step with the code."""

from __future__ import annotations

from pathlib import Path

import pytest

from dicom_gateway.destinations import Destination
from worker.settings import SettingsError, load_settings, settings_table

ROOT = Path(__file__).resolve().parent.parent


def test_env_overrides_file(tmp_path: Path) -> None:
    cfg = tmp_path / "cxr.toml"
    cfg.write_text('port = 104\nae_title = "FROMFILE"\ndestinations = ["A@h:1", "B@h:2"]\n')
    s = load_settings(cfg, {"CXR_PORT": "4242", "CXR_ALLOWED_CALLING_AETS": "X, Y"})
    assert s.port == 4242 and s.ae_title == "FROMFILE"
    assert s.destinations == (Destination("A", "h", 1), Destination("B", "h", 2))
    assert s.allowed_calling_aets == ("X", "Y")
    assert s.effective_database_url.startswith("sqlite:///")


def test_bad_values_name_the_setting(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="CXR_PORT"):
        load_settings(None, {"CXR_PORT": "eleven"})
    with pytest.raises(SettingsError, match="CXR_DESTINATIONS"):
        load_settings(None, {"CXR_DESTINATIONS": "nohostport"})
    cfg = tmp_path / "c.toml"
    cfg.write_text("colour = 1\n")
    with pytest.raises(SettingsError, match="unknown setting"):
        load_settings(cfg, {})


def test_readme_settings_table_is_current() -> None:
    assert settings_table() in (ROOT / "README.md").read_text()
