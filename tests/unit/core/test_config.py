"""Settings: environment with '__' nesting, an optional YAML file, clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from terrapod.config import ConfigFileMissing, Settings, load_settings


def test_defaults_are_the_embedded_shape(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TERRAPOD_CONFIG_FILE", raising=False)
    settings = Settings(data_dir=tmp_path)
    assert settings.is_sqlite
    assert settings.database_url == f"sqlite+aiosqlite:///{(tmp_path / 'terrapod.db').resolve()}"
    assert settings.storage.backend == "filesystem"
    assert settings.storage_path == tmp_path / "objects"


def test_environment_with_nesting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TERRAPOD_DATABASE__URL", "postgresql://u@db:5432/tp")
    monkeypatch.setenv("TERRAPOD_STORAGE__BACKEND", "s3")
    monkeypatch.setenv("TERRAPOD_STORAGE__S3__BUCKET", "state")
    monkeypatch.setenv("TERRAPOD_PORT", "9443")
    settings = Settings()
    assert settings.database_url == "postgresql+asyncpg://u@db:5432/tp"
    assert settings.storage.s3.bucket == "state"
    assert settings.port == 9443


def test_yaml_file_below_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "terrapod.yaml"
    config.write_text(
        "port: 7000\nlog_level: debug\nstorage:\n  backend: filesystem\n  path: /srv/objects\n"
    )
    monkeypatch.setenv("TERRAPOD_CONFIG_FILE", str(config))
    monkeypatch.setenv("TERRAPOD_PORT", "7001")
    settings = Settings()
    assert settings.port == 7001  # environment wins
    assert settings.log_level == "debug"
    assert settings.storage_path == Path("/srv/objects")


def test_invalid_settings_name_the_field(monkeypatch: pytest.MonkeyPatch) -> None:
    cases = {
        "TERRAPOD_PORT": ("99999", "port"),
        "TERRAPOD_DATABASE__URL": ("mysql://x", "database"),
        "TERRAPOD_EXTERNAL_URL": ("terrapod.example.com", "external_url"),
        "TERRAPOD_TRUSTED_PROXIES": ("10.0.0.0/8,not-a-cidr", "trusted_proxies"),
        "TERRAPOD_STORAGE__BACKEND": ("s3", "storage"),
    }
    for name, (value, field) in cases.items():
        with monkeypatch.context() as m:
            m.setenv(name, value)
            with pytest.raises(ValidationError) as info:
                load_settings()
            assert field in str(info.value), name


def test_trusted_proxies_are_comma_separated(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TERRAPOD_TRUSTED_PROXIES", "10.0.0.0/8, 192.168.0.0/16")
    assert Settings().trusted_proxies == ["10.0.0.0/8", "192.168.0.0/16"]


def test_missing_config_file_is_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TERRAPOD_CONFIG_FILE", str(tmp_path / "nope.yaml"))
    with pytest.raises(ConfigFileMissing, match=r"nope\.yaml"):
        load_settings()


def test_derived_keys_are_separate_per_purpose(tmp_path: Path) -> None:
    from terrapod.keys import derive_key, load_master_secret

    settings = Settings(data_dir=tmp_path)
    master = load_master_secret(settings)
    assert (tmp_path / "secret.key").stat().st_mode & 0o777 == 0o600
    assert load_master_secret(settings) == master  # created once, then reused
    assert derive_key(master, "signed-urls") != derive_key(master, "secrets-at-rest")
    assert len(derive_key(master, "signed-urls")) == 32
