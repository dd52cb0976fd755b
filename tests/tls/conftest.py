import pytest

from tests.tls.support import Pki


@pytest.fixture
def pki(tmp_path):
    return Pki(tmp_path / "pki")
