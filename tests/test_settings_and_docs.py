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


def test_destination_kinds() -> None:
    from dicom_gateway.destinations import parse_destinations

    a, b, c = parse_destinations("PACS@10.0.0.5:104/comprehensive, reply:4242, "
                                 "https://pacs.example.org/dicom-web/")
    assert (a.kind, a.sr_class, str(a)) == ("dicom", "comprehensive",
                                            "PACS@10.0.0.5:104/comprehensive")
    assert (b.kind, b.port) == ("reply", 4242)
    assert b.resolved("ORTHANC", "127.0.0.1:51234") == Destination("ORTHANC", "127.0.0.1", 4242)
    assert (c.kind, c.url) == ("stow", "https://pacs.example.org/dicom-web")
    with pytest.raises(ValueError, match="reply:PORT"):
        parse_destinations("PACS@host")


def test_status_classification() -> None:
    from dicom_gateway.sender import _is_permanent

    assert [_is_permanent(s) for s in (0xA700, 0xA701, 0x0110, 0xA900, 0xC000, 0xC211,
                                       0x0122)] == [False, False, False, True, True, True, True]
