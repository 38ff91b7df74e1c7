"""Garbled ZIPs, fuzzed: unpack tells the truth about each one and its memory stays bounded.

Each example takes a sound archive (small CSVs, or one holding a real deflate
bomb of 256 MiB) and garbles it once: flipped bytes, a patched compression
method, a lying size, a cut. The outcome must be truthful:

* no error: every file in ``dest`` is exactly one of the archive's entries, all of them;
* an error: ``dest`` is empty;
* never an exception.

The unpacking runs in one long-lived child process, so its peak resident size
(``VmHWM`` in ``/proc/<pid>/status``) over all the examples can be compared
with its size after a first, ordinary unpack. A bomb's 64 KiB chunk of input
inflates to 64 MiB if the stream is not bounded: the peak would show it.
Deterministic (``derandomize``) and bounded to a few seconds.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import struct
import subprocess
import sys
import zlib
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import rostergate
from tests import zipcraft as zc
from tests.zipcraft import MIB

MAX_GROWTH = 16 * MIB  # the bounded stream needs a few MiB; one unbounded step of a bomb takes 64 MiB

_rng = random.Random(11)
SMALL = {
    "orgs.csv": b"sourcedId,name,type\n" + b"".join(b"org-%d,School %d,school\n" % (n, n) for n in range(40)),
    "users.csv": b"sourcedId,givenName\n" + b"".join(b"u%d,%s\n" % (n, _rng.randbytes(6).hex().encode())
                                                    for n in range(300)),
    "notes.csv": _rng.randbytes(3000),  # incompressible: stored
}
SOUND = zc.build_zip([zc.deflated("orgs.csv", SMALL["orgs.csv"]), zc.deflated("users.csv", SMALL["users.csv"]),
                      zc.stored("notes.csv", SMALL["notes.csv"])])
BOMB = zc.build_zip([zc.stored("orgs.csv", SMALL["orgs.csv"]),
                     zc.bomb_entry("users.csv", zc.DEFLATED, zc.deflate_zeros(256), 256 * MIB)])
BASES = {"sound": (SOUND, SMALL), "bomb": (BOMB, None)}  # None: a bomb must never unpack cleanly

_CHILD = """
import json, sys
from pathlib import Path
from rostergate.formats.read.archive import unpack
for line in sys.stdin:
    request = json.loads(line)
    try:
        issues = unpack(Path(request["zip"]), Path(request["dest"]))
        answer = {"issues": [[i.severity, i.code] for i in issues]}
    except BaseException as exc:
        answer = {"exception": type(exc).__name__ + ": " + str(exc)[:300]}
    print(json.dumps(answer), flush=True)
"""


class Unpacker:
    """A child process that unpacks on request; its peak resident size is read from /proc."""

    def __init__(self, folder: Path):
        self.folder = folder
        env = {**os.environ, "PYTHONPATH": str(Path(rostergate.__file__).resolve().parents[1])}
        self.process = subprocess.Popen([sys.executable, "-c", _CHILD], stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, text=True, env=env)
        self.count = 0

    def unpack(self, data: bytes) -> tuple[dict, Path]:
        self.count += 1
        upload = self.folder / f"case-{self.count}.zip"
        upload.write_bytes(data)
        dest = self.folder / f"out-{self.count}"
        dest.mkdir()
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(json.dumps({"zip": str(upload), "dest": str(dest)}) + "\n")
        self.process.stdin.flush()
        line = self.process.stdout.readline()
        upload.unlink()
        assert line, f"the unpacking process died (exit {self.process.poll()})"
        return json.loads(line), dest

    def peak_rss(self) -> int:
        """VmHWM of the child, in bytes."""
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
        raise AssertionError("no VmHWM in /proc status")

    def close(self) -> None:
        if self.process.stdin:
            self.process.stdin.close()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=5)
        finally:
            if self.process.stdout:
                self.process.stdout.close()


@pytest.fixture(scope="module")
def unpacker(tmp_path_factory):
    child = Unpacker(tmp_path_factory.mktemp("fuzz"))
    yield child
    child.close()


# -- garbling -----------------------------------------------------------------------------
@dataclass(frozen=True)
class Case:
    base: str
    kind: str  # none | flip | method | size | cut
    spots: tuple[tuple[int, int], ...] = ()  # flip: (fraction of the length in 1/10000, xor)
    entry: int = 0
    where: str = "central"  # method: central | local | both; size: compressed | uncompressed
    value: int = 0

    def apply(self, data: bytes) -> bytes:
        patched = bytearray(data)
        if self.kind == "flip":
            for spot, xor in self.spots:
                patched[spot * (len(data) - 1) // 10_000] ^= xor
        elif self.kind == "cut":
            return bytes(patched[: self.value * len(data) // 10_000])
        elif self.kind in ("method", "size"):
            entry = self.entry % _count(data)
            central = zc.central_offset(data, entry)
            local = struct.unpack_from("<L", data, central + 42)[0]
            if self.kind == "method":
                if self.where in ("central", "both"):
                    struct.pack_into("<H", patched, central + 10, self.value)
                if self.where in ("local", "both"):
                    struct.pack_into("<H", patched, local + 8, self.value)
            else:
                struct.pack_into("<L", patched, central + (20 if self.where == "compressed" else 24), self.value)
        return bytes(patched)


def _count(data: bytes) -> int:
    return struct.unpack_from("<H", data, data.rindex(b"PK\x05\x06") + 10)[0]


_bases = st.sampled_from(sorted(BASES))
_cases = st.one_of(
    st.builds(Case, _bases, st.just("none")),
    st.builds(Case, _bases, st.just("flip"),
              st.lists(st.tuples(st.integers(0, 10_000), st.integers(1, 255)), min_size=1, max_size=3).map(tuple)),
    st.builds(Case, _bases, st.just("method"), entry=st.integers(0, 2),
              where=st.sampled_from(["central", "local", "both"]),
              value=st.sampled_from([0, 8, 12, 14, 9, 93, 99]) | st.integers(0, 0xFFFF)),
    st.builds(Case, _bases, st.just("size"), entry=st.integers(0, 2),
              where=st.sampled_from(["compressed", "uncompressed"]),
              value=st.sampled_from([0, 1, 0xFFFFFFFF, 0x7FFFFFFF]) | st.integers(0, 1 << 22)),
    st.builds(Case, _bases, st.just("cut"), value=st.integers(0, 9_999)),
)


def _check(unpacker: Unpacker, case: Case) -> None:
    data, expected = BASES[case.base]
    answer, dest = unpacker.unpack(case.apply(data))
    assert "exception" not in answer, (case, answer)
    errors = [code for severity, code in answer["issues"] if severity == "error"]
    try:
        if errors:
            assert list(dest.iterdir()) == [], (case, errors)
        else:
            assert expected is not None, f"a bomb unpacked cleanly: {case}"
            found = {p.name: p.read_bytes() for p in dest.iterdir()}
            assert found == expected, (case, answer, sorted(found))
    finally:
        shutil.rmtree(dest)


def test_garbled_zips_get_a_truthful_outcome_in_bounded_memory(unpacker):
    answer, dest = unpacker.unpack(SOUND)  # warm: imports done, one ordinary unpack
    assert answer == {"issues": []}
    shutil.rmtree(dest)
    baseline = unpacker.peak_rss()

    @settings(max_examples=120, derandomize=True, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(case=_cases)
    @example(case=Case("bomb", "none"))
    @example(case=Case("bomb", "size", entry=1, where="uncompressed", value=10_000))  # lies small
    @example(case=Case("bomb", "size", entry=1, where="compressed", value=0xFFFFFFFF))
    @example(case=Case("bomb", "method", entry=1, where="both", value=0))  # the bomb's bytes "stored"
    @example(case=Case("sound", "method", entry=0, where="both", value=12))
    @example(case=Case("sound", "flip", spots=((5000, 0x40),)))
    def check(case: Case) -> None:
        _check(unpacker, case)

    check()
    growth = unpacker.peak_rss() - baseline
    assert growth < MAX_GROWTH, f"the unpacking process grew by {growth / MIB:.1f} MiB"


def test_the_sound_bases_are_what_the_fuzzing_assumes(tmp_path):
    """The bomb really inflates to 256 MiB of zeros (checked on its first MiBs), the sound archive unpacks."""
    start = zc.central_offset(BOMB, 1)
    offset = struct.unpack_from("<L", BOMB, start + 42)[0]
    name_len, extra_len = struct.unpack_from("<HH", BOMB, offset + 26)
    stream = BOMB[offset + 30 + name_len + extra_len:start]
    assert zlib.decompressobj(-15).decompress(stream, 8 * MIB) == bytes(8 * MIB)
    assert struct.unpack_from("<L", BOMB, start + 24)[0] == 256 * MIB
