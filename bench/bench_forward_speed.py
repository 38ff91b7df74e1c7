"""Forwarding speed: rostergate's SFTP forwarder against OpenSSH's ``sftp put``, to the same ``sshd``.

    python bench/bench_forward_speed.py                   # 300 MiB, 5 alternated rounds
    python bench/bench_forward_speed.py --mib 100 --rounds 3

A real OpenSSH ``sshd`` (internal-sftp) on loopback (``tests/downstream.py``) receives,
in alternated rounds, the same incompressible file from:

* ``sftp put`` of the OpenSSH client with its default cipher (the reference);
* ``sftp put`` with the cipher the forwarder negotiated (``-c``: the same-cipher reference);
* :class:`rostergate.forward.sftp.SftpForwarder` (``deliver``: temp name, rename, STAT check,
  SHA-256 of the bytes sent), in this process.

Medians of the per-round ratios (reference time / forwarder time; 1.0 = as fast) are printed
with the medians of each, and the CPU seconds each client spent (the OpenSSH client's ``sftp``
and ``ssh`` processes; the forwarder's whole process): on a machine shared with other work the
wall times follow the scheduler, the CPU seconds much less. Issue 14 targets: >= 0.9 against the
default client, >= 0.8 against the same cipher. Not part of the test run.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from rostergate import config  # noqa: E402
from rostergate.forward.sftp import SftpForwarder, login  # noqa: E402
from tests.downstream import OpenSSHDownstream  # noqa: E402


def _payload(path: Path, mib: int) -> str:
    digest = hashlib.sha256()
    with open(path, "wb") as out:
        for _ in range(mib):
            block = os.urandom(1 << 20)
            digest.update(block)
            out.write(block)
    return digest.hexdigest()


def _cpu(who: int) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


def _openssh_put(server: OpenSSHDownstream, source: Path, name: str, cipher: str | None) -> tuple[float, float]:
    """Wall and CPU seconds of one ``sftp put`` (the client's processes, not the server's)."""
    batch = f"put {source} {server.dropbox}/{name}\n"
    command = ["sftp", "-q", "-b", "-", "-P", str(server.port), "-i", str(server.client_key),
               "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes"]
    if cipher:
        command += ["-c", cipher]
    clock, cpu = time.perf_counter(), _cpu(resource.RUSAGE_CHILDREN)
    subprocess.run(command + [f"{server.user}@127.0.0.1"], input=batch.encode(), check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=600)
    return time.perf_counter() - clock, _cpu(resource.RUSAGE_CHILDREN) - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mib", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="rg-fwd-") as tmp:
        root = Path(tmp)
        server = OpenSSHDownstream(root / "sshd").start()
        try:
            source = root / "payload.zip"
            sha256 = _payload(source, args.mib)
            raw = {"server": {"data_dir": str(root / "var")},
                   "flows": [{"account": "bench", "downstream": {
                       "url": f"sftp://{server.user}@127.0.0.1:{server.port}{server.dropbox}",
                       "key_file": str(server.client_key), "host_key": server.host_key_line}}]}
            downstream = config.parse(raw, base=root).flows[0].downstream
            assert downstream is not None
            with login(downstream) as client:
                transport = client.get_transport()
                assert transport is not None
                cipher = transport.local_cipher
            forwarder = SftpForwarder(downstream)
            times: dict[str, list[float]] = {"openssh": [], "openssh-same-cipher": [], "rostergate": []}
            cpus: dict[str, list[float]] = {key: [] for key in times}
            for n in range(args.rounds + 1):  # the first round warms up and is not counted
                measured = {
                    "openssh": _openssh_put(server, source, f"ref-{n}.zip", None),
                    "openssh-same-cipher": _openssh_put(server, source, f"same-{n}.zip", cipher),
                }
                clock, cpu = time.perf_counter(), _cpu(resource.RUSAGE_SELF)
                receipt = forwarder.deliver(source, f"rg-{n}.zip", sha256)
                measured["rostergate"] = time.perf_counter() - clock, _cpu(resource.RUSAGE_SELF) - cpu
                assert receipt.sha256 == sha256 and receipt.size == args.mib << 20
                for path in server.dropbox.iterdir():
                    path.unlink()
                if n:
                    for key, (seconds, cpu_seconds) in measured.items():
                        times[key].append(seconds)
                        cpus[key].append(cpu_seconds)
                print(f"round {n}{' (warm-up)' if not n else ''}: "
                      + ", ".join(f"{k} {v:.2f} s (CPU {c:.2f} s)" for k, (v, c) in measured.items()), flush=True)
        finally:
            server.stop()
    ratio = statistics.median(a / b for a, b in zip(times["openssh"], times["rostergate"]))
    same = statistics.median(a / b for a, b in zip(times["openssh-same-cipher"], times["rostergate"]))
    load = os.getloadavg()[0]
    print(f"\n{args.mib} MiB to sshd on loopback, {os.cpu_count()} CPUs, load {load:.1f}; "
          f"forwarder cipher {cipher}")
    for key, values in times.items():
        wall = statistics.median(values)
        print(f"  {key:<20} median {wall:.2f} s  ({args.mib / wall:.0f} MiB/s), client CPU "
              f"{statistics.median(cpus[key]):.2f} s")
    print(f"  speed vs OpenSSH sftp (default cipher): {ratio:.2f}x (target >= 0.9)")
    print(f"  speed vs OpenSSH sftp (-c {cipher}): {same:.2f}x (target >= 0.8)")


if __name__ == "__main__":
    main()
