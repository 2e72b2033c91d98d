"""Shared fixtures: tiny data and one local Ray for the whole session."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DEEPMIMIC = [sys.executable, "-m", "deepmimic.cli"]


@pytest.fixture
def ray_local():
    """A real local Ray, started once and shared by the tests that need one
    (a test that shuts it down gets a fresh one for the next)."""
    os.environ.pop("RAY_ADDRESS", None)
    import ray

    from deepmimic.distributed.cluster import connect

    connect()
    return ray


@pytest.fixture(scope="session")
def digits():
    from deepmimic.core.datasets import load_dataset

    return load_dataset("digits")
