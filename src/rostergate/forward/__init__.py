"""Delivery to a flow's downstream (see :mod:`rostergate.forward.sftp`)."""

from rostergate.errors import FinalError, RetryableError
from rostergate.forward.sftp import Receipt, deliver, parse_host_key, written_path

__all__ = ["FinalError", "Receipt", "RetryableError", "deliver", "parse_host_key", "written_path"]
