"""Fixtures for the checkpoint tests."""

import pytest

from checkpoints_app.saver import DjangoSaver, close_pooled_connections


@pytest.fixture(autouse=True)
def _close_pooled_connections():
    """Savers lend connections to other threads; close them so the test database can go,
    and before the test too, so that one left open by an earlier test's runs (tests/api)
    is not what the test finds."""
    close_pooled_connections()
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
