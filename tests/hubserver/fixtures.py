"""pytest fixtures around FakeHub. Import them into a test module:

    from hubserver.fixtures import hub_server, hub_env  # noqa: F401
"""
from __future__ import annotations

import secrets

import pytest

from hubserver.server import FakeHub


@pytest.fixture
def hub_token() -> str:
    # A fresh, recognisable value per test, so a grep for it in logs means a leak.
    return "hf_test" + secrets.token_hex(12)


@pytest.fixture
def hub_server(hub_token):
    hub = FakeHub(token=hub_token).start()
    try:
        yield hub
    finally:
        hub.stop()


@pytest.fixture
def hub_env(hub_server, hub_token, monkeypatch, tmp_path):
    """The process environment a publishing client needs to reach `hub_server`."""
    env = {
        "HF_ENDPOINT": hub_server.url,
        "HF_TOKEN": hub_token,
        "HF_HOME": str(tmp_path / "hf_home"),
        "HF_HUB_OFFLINE": "0",
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("HUGGING_FACE_HUB_TOKEN", raising=False)
    # huggingface_hub read HF_HUB_OFFLINE at import; this process may have imported it offline.
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    return env
