from __future__ import annotations

import stat
from pathlib import Path

import pytest

from shared.crypto import SecretBox, generate_key, secret_box
from shared.errors import ConfigError
from shared.settings import load_settings


def test_rotation_keeps_old_secrets_readable_then_moves_them_to_the_new_key() -> None:
    old, new = generate_key(), generate_key()
    token = SecretBox([old]).encrypt("webhook-secret")
    both = SecretBox([new, old])
    assert both.decrypt(token) == "webhook-secret"
    rotated = both.rotate(token)
    assert SecretBox([new]).decrypt(rotated) == "webhook-secret"
    with pytest.raises(ConfigError, match="cannot be decrypted"):
        SecretBox([new]).decrypt(token)
    with pytest.raises(ConfigError, match="cannot be decrypted"):
        SecretBox([generate_key()]).rotate(token)


def test_bad_keys_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="no key"):
        SecretBox([])
    with pytest.raises(ConfigError, match="not a valid Fernet key"):
        SecretBox(["short"])


def test_embedded_mode_creates_a_private_key_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SUMMARYBOT_DATA_DIR", str(tmp_path))
    box = secret_box(load_settings())
    key_file = tmp_path / "secret.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    token = box.encrypt("x")
    assert secret_box(load_settings()).decrypt(token) == "x", "the same key is reused"


def test_redis_mode_requires_shared_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:6379/0")
    monkeypatch.setenv("DATABASE_URL", "postgresql://127.0.0.1/summarybot")
    with pytest.raises(ConfigError, match="SECRET_KEYS: required"):
        secret_box(load_settings())
    monkeypatch.setenv("SECRET_KEYS", f"{generate_key()}, {generate_key()}")
    assert secret_box(load_settings()).decrypt(secret_box(load_settings()).encrypt("y")) == "y"


def test_deferred_box_reads_keys_only_when_used(monkeypatch: pytest.MonkeyPatch) -> None:
    from shared.crypto import deferred_secret_box

    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:6379/0")
    monkeypatch.setenv("DATABASE_URL", "postgresql://127.0.0.1/summarybot")
    box = deferred_secret_box(load_settings())  # no SECRET_KEYS: fine until a secret is used
    with pytest.raises(ConfigError, match="SECRET_KEYS: required"):
        box.encrypt("x")
    monkeypatch.setenv("SECRET_KEYS", generate_key())
    box = deferred_secret_box(load_settings())
    assert box.decrypt(box.rotate(box.encrypt("z"))) == "z"
