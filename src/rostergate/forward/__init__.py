"""Delivery of a run's prepared ZIP to its flow's downstream. Delivered means verified.

:func:`forwarder_for` gives the :class:`Forwarder` of a downstream:
:class:`~rostergate.forward.sftp.SftpForwarder` for ``sftp://`` (paramiko, a
pinned host key) and :class:`~rostergate.forward.folder.FolderForwarder` for
``file://``. Both return a :class:`Receipt` only for a verified delivery and raise
only :class:`~rostergate.errors.RetryableError` or :class:`~rostergate.errors.FinalError`,
classified alike by the one boundary, :mod:`rostergate.forward.boundary`.
:func:`remote_name` renders a downstream's ``remote_name`` template; :func:`login` logs in to an
SFTP downstream as a delivery does (``check-config --connect``).
"""

from __future__ import annotations

from rostergate.config import Downstream
from rostergate.errors import FinalError
from rostergate.forward.folder import FolderForwarder
from rostergate.forward.protocol import Forwarder, Receipt
from rostergate.forward.sftp import SftpForwarder, login

__all__ = ["Forwarder", "Receipt", "forwarder_for", "login", "remote_name"]


def forwarder_for(downstream: Downstream) -> Forwarder:
    """The forwarder of ``downstream``, chosen by its URL's scheme."""
    if downstream.scheme == "file":
        return FolderForwarder(downstream)
    return SftpForwarder(downstream)


def remote_name(downstream: Downstream, account: str, run_id: str) -> str:
    """The file name a run is delivered under: ``downstream.remote_name`` with ``{account}`` and ``{run_id}`` filled.

    A template naming another placeholder (which the configuration check should
    have refused) is a :class:`FinalError` naming the key, not an internal error.
    """
    try:
        return downstream.remote_name.format(account=account, run_id=run_id)
    except (KeyError, IndexError, ValueError) as exc:
        raise FinalError(f"flows.downstream.remote_name {downstream.remote_name!r} cannot be filled in ({exc!r}); "
                         "use only {account} and {run_id}") from exc
