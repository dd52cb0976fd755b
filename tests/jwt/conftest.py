"""Every jwt test runs in its own directory: a relative control.state_dir (where JWKS
copies are saved) must not land in the checkout."""

import pytest


@pytest.fixture(autouse=True)
def _own_cwd(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
