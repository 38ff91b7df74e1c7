"""Apple's CSV dialect: backslash-escaped quotes survive a conversion and its re-validation."""

import zipfile

from rostergate.formats.convert.entry import convert_dir, write_asm_zip
from rostergate.formats.read.archive import unpack
from rostergate.formats.validate.entry import validate_dir
from tests.conftest import ONEROSTER_11_VALID


def test_names_with_quotes_commas_and_backslashes_round_trip(tmp_path):
    import shutil

    source = tmp_path / "src"
    shutil.copytree(ONEROSTER_11_VALID, source)
    users = (source / "users.csv").read_text()
    users = users.replace("usr-s1,,,true,org-hs,student,sadams,,Sam,Adams",
                          'usr-s1,,,true,org-hs,student,sadams,,"Al ""B, C"" x",Back\\slash')
    (source / "users.csv").write_text(users)
    conversion = convert_dir(source, "oneroster-1.1")
    out = tmp_path / "asm.zip"
    write_asm_zip(conversion, out)
    unpacked = tmp_path / "asm"
    unpacked.mkdir()
    assert not [i for i in unpack(out, unpacked) if i.severity == "error"]
    result = validate_dir(unpacked, format="asm", profile="asm")
    assert result.valid, [i.to_text() for i in result.errors]
    again = convert_dir(unpacked, "asm")
    students = again.tables["students.csv"].set_index("person_id")
    assert students.loc["usr-s1", "first_name"] == 'Al "B, C" x'
    assert students.loc["usr-s1", "last_name"] == "Back\\slash"
    with zipfile.ZipFile(out) as archive:
        assert b'"Al \\"B, C\\" x"' in archive.read("students.csv")
