"""Every proxy setting is documented in docs/configuration.md, with its default."""

from __future__ import annotations

from pathlib import Path

from proxy.settings import SETTINGS, ProxySettings

DOC = (Path(__file__).parent.parent / "docs" / "configuration.md").read_text()


def test_each_setting_has_a_row_with_its_default() -> None:
    for setting in SETTINGS:
        assert f"| `{setting.name}` | `{setting.default}` |" in DOC, setting.name
        assert f"PRIVACYLENS_{setting.name.upper()}" in DOC


def test_settings_and_dataclass_agree() -> None:
    assert [s.name for s in SETTINGS] == list(ProxySettings.__dataclass_fields__)


def test_precedence_flag_then_env_then_default(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("PRIVACYLENS_PORT", "7000")
    assert ProxySettings.resolve({}).port == 7000
    assert ProxySettings.resolve({"port": "7001"}).port == 7001
    monkeypatch.delenv("PRIVACYLENS_PORT")
    assert ProxySettings.resolve({}).port == 6432
