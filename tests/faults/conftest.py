import pytest

from tests.faults.support import run_once
from tests.support.servers import Backend, start_backend, stop_backend


@pytest.fixture(scope="module")
def ran_once(tmp_path_factory, bg):
    """One router run for the whole module (see support.copy_of); its backend lives as long."""
    backend = bg.run(start_backend(Backend("eu-1")))
    proc = run_once(tmp_path_factory.mktemp("ran-once"), backend)
    yield proc
    bg.run(stop_backend(backend))
