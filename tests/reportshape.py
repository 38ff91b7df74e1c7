"""The JSON report's shape (README, "Reports"), as one assertion shared by the unit and the e2e tests.

A JSON-schema-like check: every key the README documents is there, with a value of
its type, and no key is there that the README does not document.
"""

from __future__ import annotations

from typing import Any

STR, INT, NULL = str, int, type(None)
ISSUE = {"severity": (STR,), "code": (STR,), "file": (STR, NULL), "line": (INT, NULL), "column": (STR, NULL),
         "value": (STR, NULL), "message": (STR,), "hint": (STR, NULL)}
STEP = {"name": (STR,), "status": (STR,), "started_at": (STR,), "finished_at": (STR, NULL), "message": (STR, NULL)}
DELIVERY = {"status": (STR,), "attempts": (INT,), "name": (STR, NULL), "size": (INT, NULL), "sha256": (STR, NULL),
            "finished_at": (STR, NULL)}
REPORT = {"schema": (STR,), "run_id": (STR,), "account": (STR,), "status": (STR,), "headline": (STR,),
          "message": (STR, NULL), "operator_alerted": (STR, NULL), "upload_name": (STR,),
          "input_format": (STR, NULL), "sha256": (STR, NULL),
          "received_at": (STR,), "finished_at": (STR, NULL), "counts": (dict,), "issues": (list,),
          "steps": (list,), "deliveries": (list,)}
STATUSES = {"received", "processing", "retrying", "held", "delivered", "rejected", "failed", "discarded",
            "superseded"}


def _check(data: Any, shape: dict[str, tuple[type, ...]], where: str) -> None:
    assert isinstance(data, dict), f"{where}: not an object"
    assert set(data) == set(shape), f"{where}: keys {sorted(set(data) ^ set(shape))} differ from the README's"
    for key, types in shape.items():
        value = data[key]
        assert isinstance(value, types) and not isinstance(value, bool), f"{where}.{key}: {value!r} is not {types}"


def assert_report_shape(data: Any) -> None:
    """``data`` is a ``reports/<run-id>.json`` as the README documents it."""
    _check(data, REPORT, "report")
    assert data["schema"] == "rostergate.report/1" and data["status"] in STATUSES
    for name, counts in data["counts"].items():
        assert isinstance(name, str) and set(counts) == {"rows", "delivered", "dropped"}, counts
        assert isinstance(counts["rows"], int) and isinstance(counts["delivered"], int)
        assert all(isinstance(r, str) and isinstance(n, int) for r, n in counts["dropped"].items())
        assert counts["rows"] == counts["delivered"] + sum(counts["dropped"].values()), (name, counts)
    for i, issue in enumerate(data["issues"]):
        _check(issue, ISSUE, f"report.issues[{i}]")
        assert issue["severity"] in ("error", "warning")
    for i, step in enumerate(data["steps"]):
        _check(step, STEP, f"report.steps[{i}]")
    for i, delivery in enumerate(data["deliveries"]):
        _check(delivery, DELIVERY, f"report.deliveries[{i}]")
        assert delivery["name"] is None or "/" not in delivery["name"]
