"""The tenant-facing SFTP server (asyncssh)."""
