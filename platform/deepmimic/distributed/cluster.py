"""Connecting to Ray: the cluster in RAY_ADDRESS, or a local one."""

from __future__ import annotations

import logging
import os

import ray


def connect() -> None:
    """Join the cluster named by RAY_ADDRESS (as under `ray job submit`), else start a local Ray."""
    if ray.is_initialized():
        return
    quiet = {"logging_level": logging.WARNING, "log_to_driver": True}
    if os.environ.get("RAY_ADDRESS"):
        ray.init(address=os.environ["RAY_ADDRESS"], **quiet)
    else:
        # "local": never join whatever cluster an earlier `ray start` left recorded in /tmp/ray.
        ray.init(address="local", **quiet)  # the dashboard serves the state API that Train's cleanup polls
    ray.data.DataContext.get_current().enable_progress_bars = False
