"""Alerts: nothing fails silently.

When a run settles badly (``run.rejected``, ``run.failed``, ``run.held``), a
delivery keeps retrying too long (``run.retrying``), the first delivery after
failures arrives (``run.recovered``) or an account misses its upload deadline
(``account.late``), the operator hears of it by webhook and/or e-mail.

* :mod:`~rostergate.alerts.settings`: ``[alerts]``, ``[flows.alerts]``, ``[flows.schedule]``;
* :mod:`~rostergate.alerts.schedule`: deadlines (pure time arithmetic);
* :mod:`~rostergate.alerts.states`: each account's last upload and delivery and whether it is late
  (``runs stats``, the watch);
* :mod:`~rostergate.alerts.payload`: what an alert says (never student data);
* :mod:`~rostergate.alerts.webhook`, :mod:`~rostergate.alerts.mail`: the two senders;
* :mod:`~rostergate.alerts.dispatch`: the non-blocking dispatcher (bounded queue, retries with back-off);
* :mod:`~rostergate.alerts.notify`: :class:`~rostergate.alerts.notify.Alerter`, what the run lifecycle calls
  when a run settles, and the deadline/long-retry watch the daemon runs on a timer.

This package imports nothing at package level, so :mod:`rostergate.config` can use its settings
without the senders.
"""
