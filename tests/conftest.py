"""Fixtures shared by the test files."""

import os

import pytest


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory):
    """One simulator build cache for the whole run.

    xdist workers share the parent of their base temp dir, so they share (and
    lock) one build instead of compiling the same design twice.
    """
    base = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        base = base.parent
    path = base / "cnnforge-sim-cache"
    path.mkdir(exist_ok=True)
    return path
