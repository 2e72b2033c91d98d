"""Shared fixtures: tiny data and one local Ray for the whole session."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DEEPMIMIC = [sys.executable, "-m", "deepmimic.cli"]


@pytest.fixture(scope="session")
def ray_local():
    """A real local Ray instance shared by the tests that need one."""
    os.environ.pop("RAY_ADDRESS", None)
    import ray

    from deepmimic.distributed.cluster import connect

    connect()
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def digits():
    from deepmimic.core.datasets import load_dataset

    return load_dataset("digits")
