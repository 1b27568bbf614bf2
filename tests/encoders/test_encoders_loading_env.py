"""Loading an encoder forces the hub offline for the load only: the environment is restored."""

import os

import pytest

from findvl.encoders.loading import offline_quiet


@pytest.mark.parametrize("before", [None, "0", "1"])
def test_offline_quiet_restores_hf_hub_offline(monkeypatch, before):
    if before is None:
        monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    else:
        monkeypatch.setenv("HF_HUB_OFFLINE", before)
    with offline_quiet():
        assert os.environ["HF_HUB_OFFLINE"] == "1"
    assert os.environ.get("HF_HUB_OFFLINE") == before


def test_offline_quiet_restores_it_after_an_error(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    with pytest.raises(RuntimeError), offline_quiet():
        raise RuntimeError("load failed")
    assert "HF_HUB_OFFLINE" not in os.environ
