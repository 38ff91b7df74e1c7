"""rostergate: SFTP intake, validation, conversion and forwarding of school rostering data."""

__version__ = "0.1.0"
