"""SFTP intake on the real path: OpenSSH ``internal-sftp`` against ``rostergate serve``, side by side.

    python bench/bench_intake.py                    # 512 MiB, 5 rounds
    python bench/bench_intake.py --size-mib 128 --rounds 3
    python bench/bench_intake.py --against /path/to/other/checkout/src   # that tree's daemon in the same rounds

The same random file is uploaded with the OpenSSH ``sftp`` client (default
cipher and buffer sizes: what a district's script does) to an ``sshd`` with
``internal-sftp`` and to the real daemon of this checkout, alternating which goes
first in each round, after one warm-up upload to each (with ``--against``, a
daemon of another checkout's ``src/`` too, the three rotating). The name is not a
``*.zip``, so no run starts: what is measured is the intake alone, and each
round overwrites the previous upload (the quota stays flat).

Per upload: the client's wall time (login included, the same for both), the
server process's CPU (sshd: the listener plus the per-connection processes it
reaped; rostergate: the whole process, and its main thread alone, which runs
the asyncio loop) from ``/proc/<pid>/stat``. Reported: medians, the median of
the per-round ratios (reference time / rostergate time: >= 1 means rostergate
is as fast), CPU per byte, the load average before and after.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _harness as h  # noqa: E402


def upload_once(server: str, sshd: h.Sshd, daemons: dict[str, h.Rostergate], key: Path, local: Path) -> dict:
    if server == "openssh":
        before = h.process_cpu(sshd.pid, children=True)
        seconds = h.sftp_put(sshd.port, sshd.user, key, local, "bench.bin")
        h.wait_children_reaped(sshd.pid)
        return {"seconds": seconds, "cpu": h.process_cpu(sshd.pid, children=True) - before}
    daemon = daemons[server]
    before, loop_before = h.process_cpu(daemon.pid), h.thread_cpu(daemon.pid)
    seconds = h.sftp_put(daemon.port, daemon.account, key, local, "bench.bin")
    time.sleep(0.2)  # the session's last replies and log lines
    return {"seconds": seconds, "cpu": h.process_cpu(daemon.pid) - before,
            "loop_cpu": h.thread_cpu(daemon.pid) - loop_before}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=h.sized(512, 32))
    parser.add_argument("--rounds", type=int, default=h.sized(5, 1))
    parser.add_argument("--against", type=Path, help="another checkout's src/ whose daemon runs in the same rounds")
    args = parser.parse_args(argv)
    size = args.size_mib * h.MiB
    load_before = h.loadavg()
    with tempfile.TemporaryDirectory(prefix="rg-bench-intake-") as tmp:
        root = Path(tmp)
        key = h.make_keypair(root, "client_key")
        local = h.random_file(root / "upload.bin", size)
        (root / "sshd").mkdir()
        (root / "rostergate").mkdir()
        sshd = h.Sshd(root / "sshd", key).start()
        limits = (f"[server.limits]\nmax_upload_bytes = {size + h.MiB}\n"
                  f"max_account_bytes = {4 * size + h.MiB}\n")
        daemons = {"rostergate": h.Rostergate(root / "rostergate", key, server_toml=limits)}
        if args.against:
            (root / "against").mkdir()
            daemons["against"] = h.Rostergate(root / "against", key, server_toml=limits, src=args.against)
        servers = ("openssh", *daemons)
        try:
            for daemon in daemons.values():
                daemon.start()
            for server in servers:  # warm-up: page cache, imports, first session
                upload_once(server, sshd, daemons, key, local)
            rounds = []
            for index in range(args.rounds):
                shift = index % len(servers)
                order = servers[shift:] + servers[:shift]
                one = {server: upload_once(server, sshd, daemons, key, local) for server in order}
                for name in daemons:
                    one[f"ratio_{name}"] = one["openssh"]["seconds"] / one[name]["seconds"]
                one["ratio"] = one["ratio_rostergate"]
                one["load"] = h.loadavg()[0]
                rounds.append(one)
                times = ", ".join(f"{server} {one[server]['seconds']:.2f} s" for server in servers)
                print(f"round {index + 1}: {times}, ratio {one['ratio']:.2f}, load {one['load']:.2f}", flush=True)
        finally:
            for daemon in daemons.values():
                daemon.stop()
            sshd.stop()
    med = h.median
    ref_s = med([r["openssh"]["seconds"] for r in rounds])
    rg_s = med([r["rostergate"]["seconds"] for r in rounds])
    ratios = [r["ratio"] for r in rounds]
    ns = 1e9 / size
    ref_cpu = med([r["openssh"]["cpu"] for r in rounds]) * ns
    rg_cpu = med([r["rostergate"]["cpu"] for r in rounds]) * ns
    rg_loop = med([r["rostergate"]["loop_cpu"] for r in rounds]) * ns
    result = {
        "size_bytes": size, "rounds": rounds, "load_before": load_before, "load_after": h.loadavg(),
        "openssh_seconds": ref_s, "rostergate_seconds": rg_s, "ratio_of_medians": ref_s / rg_s,
        "median_round_ratio": med(ratios), "round_ratio_range": [min(ratios), max(ratios)],
        "openssh_cpu_ns_per_byte": ref_cpu, "rostergate_cpu_ns_per_byte": rg_cpu,
        "rostergate_loop_cpu_ns_per_byte": rg_loop,
        "loop_cpu_vs_sshd": rg_loop / ref_cpu, "process_cpu_vs_sshd": rg_cpu / ref_cpu,
        "targets": {"median_round_ratio": ">= 0.95", "loop_cpu_vs_sshd": "<= 1.2"},
    }
    markdown = (
        f"SFTP intake of {args.size_mib} MiB with the OpenSSH `sftp` client, {args.rounds} alternated rounds "
        f"(`python bench/bench_intake.py --size-mib {args.size_mib} --rounds {args.rounds}"
        + (f" --against {args.against}" if args.against else "") + "`); "
        f"load average {load_before[0]:.2f} before, {result['load_after'][0]:.2f} after.\n\n"
        "| | OpenSSH internal-sftp | rostergate | Ratio |\n|---|---|---|---|\n"
        f"| Upload (median) | {ref_s:.2f} s | {rg_s:.2f} s | {ref_s / rg_s:.2f}x (ratio of medians) |\n"
        f"| Median of per-round ratios (target >= 0.95) | | | **{med(ratios):.2f}x** "
        f"({min(ratios):.2f}-{max(ratios):.2f}) |\n"
        f"| Server CPU per byte | {ref_cpu:.2f} ns | {rg_cpu:.2f} ns (process) | {rg_cpu / ref_cpu:.2f}x |\n"
        f"| Event-loop thread CPU per byte (target <= 1.2x sshd) | | {rg_loop:.2f} ns | "
        f"**{rg_loop / ref_cpu:.2f}x** |\n"
    )
    if args.against:
        other = [r["ratio_against"] for r in rounds]
        other_s = med([r["against"]["seconds"] for r in rounds])
        other_loop = med([r["against"]["loop_cpu"] for r in rounds]) * ns
        other_cpu = med([r["against"]["cpu"] for r in rounds]) * ns
        result["against"] = {
            "src": str(args.against), "seconds": other_s, "median_round_ratio": med(other),
            "round_ratio_range": [min(other), max(other)], "cpu_ns_per_byte": other_cpu,
            "loop_cpu_ns_per_byte": other_loop, "loop_cpu_vs_sshd": other_loop / ref_cpu,
        }
        markdown += (
            f"| `{args.against}` in the same rounds: upload, per-round ratio | | {other_s:.2f} s | "
            f"{med(other):.2f}x ({min(other):.2f}-{max(other):.2f}) |\n"
            f"| its event-loop thread CPU per byte | | {other_loop:.2f} ns | {other_loop / ref_cpu:.2f}x |\n"
        )
    h.record("intake", result, markdown)
    print(markdown)
    return result


if __name__ == "__main__":
    main()
