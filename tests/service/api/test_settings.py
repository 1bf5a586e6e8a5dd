"""Settings: defaults < YAML file < LRSERVE_* environment < explicit arguments."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from lrserve.service.auth import hash_token
from lrserve.service.settings import Settings, is_loopback, load_settings


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for key in list(os.environ):
        if key.startswith("LRSERVE_"):
            monkeypatch.delenv(key)


def test_defaults() -> None:
    s = load_settings()
    assert (s.store, s.host, s.port, s.workers) == ("sqlite:///./lrserve.db", "127.0.0.1", 8000, 1)
    assert s.tokens == []
    assert s.is_open
    assert s.limits.max_body_bytes == 1 << 20
    assert s.bind_problem() is None


def test_file_then_env_then_arguments(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "lrserve.yaml"
    config.write_text("store: sqlite:///file.db\nport: 9000\nhost: 127.0.0.2\nlimits: {max_lease: 50}\n")
    s = load_settings(config)
    assert (s.store, s.port, s.host, s.limits.max_lease) == ("sqlite:///file.db", 9000, "127.0.0.2", 50)
    assert s.config == config
    monkeypatch.setenv("LRSERVE_PORT", "9100")
    monkeypatch.setenv("LRSERVE_LIMITS__MAX_LEASE", "70")
    s = load_settings(config)
    assert (s.port, s.limits.max_lease, s.store) == (9100, 70, "sqlite:///file.db")
    s = load_settings(config, port=9200, store=None)  # None: not given on the command line
    assert (s.port, s.store) == (9200, "sqlite:///file.db")


def test_config_path_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("port: 9300\n")
    monkeypatch.setenv("LRSERVE_CONFIG", str(config))
    assert load_settings().port == 9300


def test_tokens_from_env_json(monkeypatch: pytest.MonkeyPatch) -> None:
    tokens = [{"name": "ci", "sha256": hash_token("x"), "scopes": ["train"]}]
    monkeypatch.setenv("LRSERVE_TOKENS", json.dumps(tokens))
    s = load_settings(host="0.0.0.0")
    assert s.tokens[0].name == "ci"
    assert s.bind_problem() is None  # tokens: any address


def test_mistakes_are_refused(tmp_path: Path) -> None:
    config = tmp_path / "typo.yaml"
    config.write_text("stor: sqlite:///x.db\n")
    with pytest.raises(ValidationError, match="stor"):
        load_settings(config)
    with pytest.raises(FileNotFoundError):
        load_settings(tmp_path / "missing.yaml")
    with pytest.raises(ValidationError, match="sha256"):
        Settings(tokens=[{"name": "x", "sha256": "not-hex", "scopes": ["read"]}])  # type: ignore[list-item]
    with pytest.raises(ValidationError, match="scopes"):
        Settings(tokens=[{"name": "x", "sha256": hash_token("t"), "scopes": ["root"]}])  # type: ignore[list-item]


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.1.2.3", True),
        ("::1", True),
        ("[::1]", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("::", False),
        ("192.168.1.5", False),
        ("myhost", False),
    ],
)
def test_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback
    assert (Settings(host=host).bind_problem() is None) is loopback
    assert Settings(host=host, allow_open_non_loopback=True).bind_problem() is None
