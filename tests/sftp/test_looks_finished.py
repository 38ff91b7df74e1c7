"""``looks_finished``, the SFTP server's cheap first check, never keeps back what the intake would take.

An upload that ``looks_finished`` turns down stays in the home and starts no
run, so it must be one that :func:`zip_state` also calls ``INCOMPLETE``;
otherwise a finished upload (a ZIP, or a file that is no ZIP and deserves a
rejected run) would wait there for ever.
"""

from __future__ import annotations

import os

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from rostergate.formats.read.archive import ZipState, zip_state
from rostergate.sftp.files import looks_finished
from tests import zipcraft as zc

SAMPLE = zc.build_zip([zc.deflated("orgs.csv", b"sourcedId,name\n1,A\n" * 30),
                       zc.stored("users.csv", bytes(range(256)) * 20)])


@pytest.mark.parametrize("content, finished", [
    (b"", False),
    (b"PK\x03", False),  # fewer than 4 bytes
    (b"abcd", True),  # finished as it is: not a ZIP
    (b"sourcedId,name\n1,Ada\n", True),
    (SAMPLE, True),
    (SAMPLE[:-19], False),  # cut inside the end record's signature
    (SAMPLE[:-1], True),  # the signature is there: the intake judges it (INCOMPLETE: it is moved back)
    (SAMPLE[: len(SAMPLE) // 2], False),
    (SAMPLE[:-2] + b"\xff\xff" + bytes(0xFFFF), True),  # the longest comment after the end record
    (SAMPLE + bytes(70_000), False),  # the end record further from the end than any comment allows
], ids=["empty", "3-bytes", "4-bytes", "csv", "zip", "cut-signature", "cut-end", "half", "long-comment", "end-too-far"])
def test_looks_finished(tmp_path, content, finished):
    path = tmp_path / "upload.zip"
    path.write_bytes(content)
    assert looks_finished(os.fsencode(path)) is finished
    if not finished:
        assert zip_state(path) is ZipState.INCOMPLETE


def test_a_missing_file_is_not_finished(tmp_path):
    assert looks_finished(os.fsencode(tmp_path / "gone.zip")) is False


@settings(max_examples=150, derandomize=True, deadline=None, database=None)
@given(cut=st.integers(0, len(SAMPLE)), flips=st.lists(st.tuples(st.integers(0, len(SAMPLE) - 1),
                                                                 st.integers(1, 255)), max_size=2))
@example(cut=len(SAMPLE), flips=[(0, 0x10)])  # no longer starts like a ZIP
def test_what_looks_unfinished_is_incomplete_for_the_intake_too(tmp_path_factory, cut, flips):
    data = bytearray(SAMPLE)
    for spot, xor in flips:
        data[spot] ^= xor
    path = tmp_path_factory.mktemp("lf") / "upload.zip"
    path.write_bytes(bytes(data[:cut]))
    if not looks_finished(os.fsencode(path)):
        assert zip_state(path) is ZipState.INCOMPLETE
