"""Fixtures for the checkpoint tests."""

import pytest

from checkpoints_app.saver import DjangoSaver, close_pooled_connections


@pytest.fixture(autouse=True)
def _close_pooled_connections():
    """Savers lend connections to other threads; close them so the test database can go."""
    yield
    close_pooled_connections()


@pytest.fixture
def saver(db):
    return DjangoSaver()


@pytest.fixture
def threaded_saver(transactional_db):
    """A saver for tests whose work runs in other threads (graphs, async): those threads
    use their own connections, so the data must be committed, not in a test transaction."""
    return DjangoSaver()
