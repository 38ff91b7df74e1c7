"""Forwarding on the real path: the product's paramiko forwarder against OpenSSH ``sftp put``, same sshd.

    python bench/bench_forward.py                   # 300 MiB, 5 rounds
    python bench/bench_forward.py --size-mib 64 --rounds 3

One ``sshd`` with ``internal-sftp`` on 127.0.0.1 receives the same file three ways,
rotating which goes first in each round (after one warm-up of each):

* ``openssh``: ``sftp put`` with OpenSSH's defaults (what an operator would compare with);
* ``openssh-same-cipher``: ``sftp put`` forced to the cipher and MAC paramiko negotiated,
  so the difference left is the client implementation, not the algorithm;
* ``rostergate``: the product's own delivery function (``_harness.forwarder()``): a
  temporary name, every WRITE's status checked, the size verified, the rename.

Per delivery: wall seconds (login included for all three) and the client's CPU
(``sftp`` + ``ssh`` processes from the children's rusage; the forwarder's from this
process's rusage, which includes paramiko's transport thread). Reported: medians and the
median of per-round ratios (reference seconds / rostergate seconds: >= 1 means as fast).
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _harness as h  # noqa: E402

VARIANTS = ("openssh", "openssh-same-cipher", "rostergate")


def _cpu(who: int) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=h.sized(300, 32))
    parser.add_argument("--rounds", type=int, default=h.sized(5, 1))
    args = parser.parse_args(argv)
    size = args.size_mib * h.MiB
    load_before = h.loadavg()
    product = h.forwarder()
    with tempfile.TemporaryDirectory(prefix="rg-bench-forward-") as tmp:
        root = Path(tmp)
        key = h.make_keypair(root, "client_key")
        local = h.random_file(root / "delivery.zip", size)
        (root / "sshd").mkdir()
        sshd = h.Sshd(root / "sshd", key).start()
        downstream = product.downstream(
            url=f"sftp://{sshd.user}@127.0.0.1:{sshd.port}{sshd.upload_dir}", scheme="sftp", host="127.0.0.1",
            port=sshd.port, username=sshd.user, path=str(sshd.upload_dir), key_file=key, host_key=sshd.host_key_line)
        try:
            client = product.login(downstream)
            transport = client.get_transport()
            cipher, mac = transport.local_cipher, transport.local_mac
            client.close()
            same = ("-c", cipher) + (("-o", f"MACs={mac}") if mac and "gcm" not in cipher else ())

            def deliver(variant: str) -> dict:
                if variant == "rostergate":
                    before = _cpu(resource.RUSAGE_SELF)
                    started = time.perf_counter()
                    product.deliver(local, downstream, "rostergate.zip")
                    seconds = time.perf_counter() - started
                    return {"seconds": seconds, "client_cpu": _cpu(resource.RUSAGE_SELF) - before}
                before = _cpu(resource.RUSAGE_CHILDREN)
                seconds = h.sftp_put(sshd.port, sshd.user, key, local, f"{variant}.zip",
                                     options=same if variant == "openssh-same-cipher" else ())
                return {"seconds": seconds, "client_cpu": _cpu(resource.RUSAGE_CHILDREN) - before}

            for variant in VARIANTS:  # warm-up
                deliver(variant)
            rounds = []
            for index in range(args.rounds):
                shift = index % len(VARIANTS)
                order = VARIANTS[shift:] + VARIANTS[:shift]
                one: dict = {variant: deliver(variant) for variant in order}
                one["load"] = h.loadavg()[0]
                for ref in ("openssh", "openssh-same-cipher"):
                    one[f"ratio_{ref}"] = one[ref]["seconds"] / one["rostergate"]["seconds"]
                rounds.append(one)
                print(f"round {index + 1}: " + ", ".join(f"{v} {one[v]['seconds']:.2f} s" for v in VARIANTS)
                      + f", load {one['load']:.2f}", flush=True)
        finally:
            sshd.stop()
    med = h.median
    seconds = {v: med([r[v]["seconds"] for r in rounds]) for v in VARIANTS}
    cpu = {v: med([r[v]["client_cpu"] for r in rounds]) * 1e9 / size for v in VARIANTS}
    ratios = {ref: [r[f"ratio_{ref}"] for r in rounds] for ref in ("openssh", "openssh-same-cipher")}
    result = {
        "size_bytes": size, "rounds": rounds, "cipher": cipher, "mac": mac, "load_before": load_before,
        "load_after": h.loadavg(), "seconds": seconds, "client_cpu_ns_per_byte": cpu,
        "median_round_ratio": {ref: med(values) for ref, values in ratios.items()},
        "round_ratio_range": {ref: [min(values), max(values)] for ref, values in ratios.items()},
        "targets": {"openssh": ">= 0.9", "openssh-same-cipher": ">= 0.8"},
    }
    markdown = (
        f"Forwarding {args.size_mib} MiB to OpenSSH sshd (internal-sftp) on 127.0.0.1, {args.rounds} rotated rounds "
        f"(`python bench/bench_forward.py --size-mib {args.size_mib} --rounds {args.rounds}`); paramiko negotiated "
        f"{cipher} / {mac}; load average {load_before[0]:.2f} before, {result['load_after'][0]:.2f} after.\n\n"
        "| Client | Median | Client CPU per byte | Median of per-round ratios (ref / rostergate) |\n"
        "|---|---|---|---|\n"
        f"| OpenSSH `sftp put` (defaults) | {seconds['openssh']:.2f} s | {cpu['openssh']:.2f} ns | "
        f"**{result['median_round_ratio']['openssh']:.2f}x** (target >= 0.9) |\n"
        f"| OpenSSH `sftp put`, paramiko's cipher | {seconds['openssh-same-cipher']:.2f} s | "
        f"{cpu['openssh-same-cipher']:.2f} ns | **{result['median_round_ratio']['openssh-same-cipher']:.2f}x** "
        "(target >= 0.8) |\n"
        f"| rostergate forwarder | {seconds['rostergate']:.2f} s | {cpu['rostergate']:.2f} ns | |\n"
    )
    h.record("forward", result, markdown)
    print(markdown)
    return result


if __name__ == "__main__":
    main()
