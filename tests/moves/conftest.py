import pytest

from tests.moves.support import Stamps


@pytest.fixture
def stamps():
    s = Stamps()
    yield s
    s.close()
