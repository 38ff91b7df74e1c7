"""Forwarding on the real path: the product's paramiko forwarder against OpenSSH ``sftp put``, same sshd.

    python bench/bench_forward.py                   # 300 MiB, 5 rounds
    python bench/bench_forward.py --size-mib 64 --rounds 3
    python bench/bench_forward.py --against /path/to/other/checkout/src   # that tree's forwarder in the same rounds

One ``sshd`` with ``internal-sftp`` on 127.0.0.1 receives the same file three ways,
rotating which goes first in each round (after one warm-up of each):

* ``openssh``: ``sftp put`` with OpenSSH's defaults (what an operator would compare with);
* ``openssh-same-cipher``: ``sftp put`` forced to the cipher and MAC paramiko negotiated,
  so the difference left is the client implementation, not the algorithm;
* ``rostergate``: the product's own delivery function (``_harness.forwarder()``): a
  temporary name, every WRITE's status checked, the size verified, the rename;
* with ``--against SRC``, ``against``: the delivery function of another checkout.

Each forwarder runs in a warm child process of its own (``BENCH_SRC``), which times each
delivery and its own CPU around the call, so both are measured alike.

Per delivery: wall seconds (login included for all) and the client's CPU
(``sftp`` + ``ssh`` processes from the children's rusage; the forwarder's from its process's
own rusage, which includes paramiko's transport thread and the hashing thread). Reported: medians and the
median of per-round ratios (reference seconds / rostergate seconds: >= 1 means as fast).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
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


def _deliver_timed(product: h.Forwarder, local: Path, downstream: object, name: str) -> dict:
    before = _cpu(resource.RUSAGE_SELF)
    started = time.perf_counter()
    product.deliver(local, downstream, name)
    return {"seconds": time.perf_counter() - started, "client_cpu": _cpu(resource.RUSAGE_SELF) - before}


def serve_deliveries() -> None:
    """A :class:`ForwarderProcess`: one JSON request per line (the file, the downstream's fields,
    the name), one JSON answer per delivery, with this process's own timing of it."""
    product = h.forwarder()
    for line in sys.stdin:
        ask = json.loads(line)
        fields = ask["downstream"]
        fields["key_file"] = Path(fields["key_file"])
        answer = _deliver_timed(product, Path(ask["local"]), product.downstream(**fields), ask["name"])
        print(json.dumps(answer), flush=True)


class ForwarderProcess:
    """A checkout's forwarder in a warm child process (``BENCH_SRC=src``)."""

    def __init__(self, src: Path):
        env = {**os.environ, "BENCH_SRC": str(src)}
        self.process = subprocess.Popen([sys.executable, __file__, "--serve-deliveries"], env=env, text=True,
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE)

    def deliver(self, local: Path, fields: dict, name: str) -> dict:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(json.dumps({"local": str(local), "downstream": fields, "name": name}) + "\n")
        self.process.stdin.flush()
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError("the forwarder's process failed (its error is above)")
        return json.loads(line)

    def close(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()
        self.process.wait(timeout=30)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=h.sized(300, 32))
    parser.add_argument("--rounds", type=int, default=h.sized(5, 1))
    parser.add_argument("--against", type=Path, help="another checkout's src/ whose forwarder runs in the same rounds")
    args = parser.parse_args(argv)
    size = args.size_mib * h.MiB
    load_before = h.loadavg()
    product = h.forwarder()
    variants = VARIANTS + (("against",) if args.against else ())
    forwarders = {"rostergate": ForwarderProcess(h.SRC)}
    if args.against:
        forwarders["against"] = ForwarderProcess(args.against)
    with tempfile.TemporaryDirectory(prefix="rg-bench-forward-") as tmp:
        root = Path(tmp)
        key = h.make_keypair(root, "client_key")
        local = h.random_file(root / "delivery.zip", size)
        (root / "sshd").mkdir()
        sshd = h.Sshd(root / "sshd", key).start()
        fields = {"url": f"sftp://{sshd.user}@127.0.0.1:{sshd.port}{sshd.upload_dir}", "scheme": "sftp",
                  "host": "127.0.0.1", "port": sshd.port, "username": sshd.user, "path": str(sshd.upload_dir),
                  "key_file": str(key), "host_key": sshd.host_key_line}
        downstream = product.downstream(**{**fields, "key_file": key})
        try:
            client = product.login(downstream)
            transport = client.get_transport()
            cipher, mac = transport.local_cipher, transport.local_mac
            client.close()
            same = ("-c", cipher) + (("-o", f"MACs={mac}") if mac and "gcm" not in cipher else ())

            def deliver(variant: str) -> dict:
                if variant in forwarders:
                    return forwarders[variant].deliver(local, fields, f"{variant}.zip")
                before = _cpu(resource.RUSAGE_CHILDREN)
                seconds = h.sftp_put(sshd.port, sshd.user, key, local, f"{variant}.zip",
                                     options=same if variant == "openssh-same-cipher" else ())
                return {"seconds": seconds, "client_cpu": _cpu(resource.RUSAGE_CHILDREN) - before}

            for variant in variants:  # warm-up
                deliver(variant)
            rounds = []
            for index in range(args.rounds):
                shift = index % len(variants)
                order = variants[shift:] + variants[:shift]
                one: dict = {variant: deliver(variant) for variant in order}
                one["load"] = h.loadavg()[0]
                for ref in ("openssh", "openssh-same-cipher"):
                    one[f"ratio_{ref}"] = one[ref]["seconds"] / one["rostergate"]["seconds"]
                    if args.against:
                        one[f"against_ratio_{ref}"] = one[ref]["seconds"] / one["against"]["seconds"]
                rounds.append(one)
                print(f"round {index + 1}: " + ", ".join(f"{v} {one[v]['seconds']:.2f} s" for v in variants)
                      + f", load {one['load']:.2f}", flush=True)
        finally:
            for forwarder in forwarders.values():
                forwarder.close()
            sshd.stop()
    med = h.median
    seconds = {v: med([r[v]["seconds"] for r in rounds]) for v in variants}
    cpu = {v: med([r[v]["client_cpu"] for r in rounds]) * 1e9 / size for v in variants}
    refs = ("openssh", "openssh-same-cipher")
    ratios = {ref: [r[f"ratio_{ref}"] for r in rounds] for ref in refs}
    result = {
        "size_bytes": size, "rounds": rounds, "cipher": cipher, "mac": mac, "load_before": load_before,
        "load_after": h.loadavg(), "seconds": seconds, "client_cpu_ns_per_byte": cpu,
        "median_round_ratio": {ref: med(values) for ref, values in ratios.items()},
        "round_ratio_range": {ref: [min(values), max(values)] for ref, values in ratios.items()},
        "targets": {"openssh": ">= 0.9", "openssh-same-cipher": ">= 0.8"},
    }
    markdown = (
        f"Forwarding {args.size_mib} MiB to OpenSSH sshd (internal-sftp) on 127.0.0.1, {args.rounds} rotated rounds "
        f"(`python bench/bench_forward.py --size-mib {args.size_mib} --rounds {args.rounds}"
        + (f" --against {args.against}" if args.against else "")
        + f"`); paramiko negotiated {cipher} / {mac}; load average {load_before[0]:.2f} before, "
        f"{result['load_after'][0]:.2f} after.\n\n"
        "| Client | Median | Client CPU per byte | Median of per-round ratios (ref / rostergate) |\n"
        "|---|---|---|---|\n"
        f"| OpenSSH `sftp put` (defaults) | {seconds['openssh']:.2f} s | {cpu['openssh']:.2f} ns | "
        f"**{result['median_round_ratio']['openssh']:.2f}x** (target >= 0.9) |\n"
        f"| OpenSSH `sftp put`, paramiko's cipher | {seconds['openssh-same-cipher']:.2f} s | "
        f"{cpu['openssh-same-cipher']:.2f} ns | **{result['median_round_ratio']['openssh-same-cipher']:.2f}x** "
        "(target >= 0.8) |\n"
        f"| rostergate forwarder | {seconds['rostergate']:.2f} s | {cpu['rostergate']:.2f} ns | |\n"
    )
    if args.against:
        theirs = {ref: [r[f"against_ratio_{ref}"] for r in rounds] for ref in refs}
        result["against"] = {"src": str(args.against),
                             "median_round_ratio": {ref: med(values) for ref, values in theirs.items()},
                             "round_ratio_range": {ref: [min(v), max(v)] for ref, v in theirs.items()}}
        markdown += (
            f"| `{args.against}` in the same rounds | {seconds['against']:.2f} s | {cpu['against']:.2f} ns | "
            f"{result['against']['median_round_ratio']['openssh']:.2f}x / "
            f"{result['against']['median_round_ratio']['openssh-same-cipher']:.2f}x (defaults / same cipher) |\n"
        )
    h.record("forward", result, markdown)
    print(markdown)
    return result


if __name__ == "__main__":
    if sys.argv[1:] == ["--serve-deliveries"]:
        serve_deliveries()
    else:
        main()
