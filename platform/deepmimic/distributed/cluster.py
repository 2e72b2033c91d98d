"""Connecting to Ray: the cluster in RAY_ADDRESS, or a local one."""

from __future__ import annotations

import logging
import os
import signal
import threading

import ray

from ..errors import UserError


def connect() -> None:
    """Join the cluster named by RAY_ADDRESS (as under `ray job submit`), else start a local Ray."""
    if ray.is_initialized():
        return
    # ray.init replaces SIGTERM's handler with sys.exit: the caller's (the CLI's clean stop) is put back.
    on_sigterm = signal.getsignal(signal.SIGTERM)
    quiet = {"logging_level": logging.WARNING, "log_to_driver": True}
    if os.environ.get("RAY_ADDRESS"):
        address = os.environ["RAY_ADDRESS"]
        try:
            ray.init(address=address, **quiet)
        except ConnectionError as e:  # nothing there, or a cluster that wants a token we lack
            cause = str(e.__cause__ or e).splitlines()[0][:200]
            raise UserError(f"RAY_ADDRESS {address}: cannot connect ({cause})") from None
    else:
        # "local": never join whatever cluster an earlier `ray start` left recorded in /tmp/ray.
        ray.init(address="local", **quiet)  # the dashboard serves the state API that Train's cleanup polls
    ray.data.DataContext.get_current().enable_progress_bars = False
    if threading.current_thread() is threading.main_thread() and on_sigterm is not None:
        signal.signal(signal.SIGTERM, on_sigterm)
