"""``runs stats``: each account's last upload and delivery, and whether it missed its deadline."""

from __future__ import annotations

import json
from datetime import timedelta

from click.testing import CliRunner

from rostergate import store, timeutil
from rostergate.accounts import AccountStore
from rostergate.cli import main


def test_stats_says_which_account_is_late(tmp_path, monkeypatch):
    data = tmp_path / "var"
    config = tmp_path / "rostergate.toml"
    config.write_text(f'[server]\ndata_dir = "{data}"\n'
                      f'[[flows]]\naccount = "district-a"\n[flows.downstream]\nurl = "{(tmp_path / "o").as_uri()}"\n'
                      '[flows.schedule]\nexpect_upload = "every 24h"\n'
                      f'[[flows]]\naccount = "district-b"\n[flows.downstream]\nurl = "{(tmp_path / "o").as_uri()}"\n')
    conn = store.connect(data)
    for name in ("district-a", "district-b"):
        AccountStore(conn, data).create(name)
    created = timeutil.parse_iso(AccountStore(conn, data).get("district-a").created_at)
    conn.close()
    monkeypatch.setattr(timeutil, "now", lambda: created + timedelta(hours=25))

    result = CliRunner().invoke(main, ["--config", str(config), "runs", "stats", "--json"])
    assert result.exit_code == 0, result.output
    accounts = json.loads(result.output)["accounts"]
    assert accounts["district-a"] == {
        "last_upload": None, "last_delivery": None, "expect_upload": "every 24h", "late": True,
        "missed_deadline": timeutil.iso(created + timedelta(hours=24)),
        "next_deadline": timeutil.iso(created + timedelta(hours=48)),
    }
    assert accounts["district-b"]["late"] is False and accounts["district-b"]["expect_upload"] is None

    text = CliRunner().invoke(main, ["--config", str(config), "runs", "stats"]).output
    [line_a] = [line for line in text.splitlines() if line.startswith("district-a")]
    assert "never" in line_a and "LATE" in line_a
