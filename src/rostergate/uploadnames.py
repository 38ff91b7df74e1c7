"""What counts as an upload name: the intake's rule, used by both ways in (SFTP and watch mode)."""

from __future__ import annotations

from rostergate.accountrecords import REPORTS_DIR


def is_upload_name(relative: str) -> bool:
    """True for a ``*.zip`` path outside ``reports/`` whose name does not start with a dot."""
    parts = relative.strip("/").split("/")
    return relative.lower().endswith(".zip") and parts[0] != REPORTS_DIR and not parts[-1].startswith(".")
