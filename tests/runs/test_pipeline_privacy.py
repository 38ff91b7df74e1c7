"""An internal error's message (which may quote roster data) never reaches the log."""

import asyncio
from concurrent.futures import ThreadPoolExecutor

from structlog.testing import capture_logs

from rostergate import config, store
from rostergate.accounts import AccountStore
from rostergate.history import History
from rostergate.runs import pipeline


def test_internal_error_logs_type_and_place_but_not_the_message(tmp_path, monkeypatch):
    def broken_prepare(*_args, **_kwargs):
        raise KeyError("Adams, Sam <sadams@example.org>")

    monkeypatch.setattr(pipeline, "prepare", broken_prepare)
    conn = store.connect(tmp_path)
    history = History(conn)
    raw = {"server": {"data_dir": str(tmp_path)},
           "flows": [{"account": "a", "downstream": {"url": (tmp_path / "out").as_uri()}}]}
    settings = config.parse(raw, base=tmp_path)
    spool = tmp_path / "spool" / "r1"
    spool.mkdir(parents=True)
    (spool / "upload.zip").write_bytes(b"PK")
    history.record_received("r1", "a", "x.zip", str(spool / "upload.zip"), 2, "0" * 64)
    with ThreadPoolExecutor(1) as executor:
        worker = pipeline.Pipeline(settings, history, AccountStore(conn, tmp_path), executor)
        run = history.claim_next(set())
        with capture_logs() as logs:
            asyncio.run(worker.process(run))
    assert history.get("r1").status == "failed"
    errors = [e for e in logs if e["event"] == "run_internal_error"]
    assert errors and errors[0]["error"] == "KeyError"
    assert "test_pipeline_privacy.py" in errors[0]["where"]
    assert "Adams" not in repr(logs) and "sadams" not in repr(logs)
