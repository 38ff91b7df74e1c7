"""Write small OneRoster folders from Python rows (RFC 4180 quoting, as SIS exports do).

Test modules import them with ``from .conftest import ...``.
"""

from __future__ import annotations

import csv
import io
import zipfile
from pathlib import Path

from rostergate.formats.convert.mapping import Mapping
from rostergate.formats.convert.mapping_config import parse_mapping

HEADERS_11 = {
    "orgs.csv": "sourcedId,status,dateLastModified,name,type,identifier,parentSourcedId",
    "users.csv": ("sourcedId,status,dateLastModified,enabledUser,orgSourcedIds,role,username,userIds,givenName,"
                  "familyName,middleName,identifier,email,sms,phone,agentSourcedIds,grades,password"),
    "courses.csv": ("sourcedId,status,dateLastModified,schoolYearSourcedId,title,courseCode,grades,orgSourcedId,"
                    "subjects,subjectCodes"),
    "classes.csv": ("sourcedId,status,dateLastModified,title,grades,courseSourcedId,classCode,classType,location,"
                    "schoolSourcedId,termSourcedIds,subjects,subjectCodes,periods"),
    "enrollments.csv": ("sourcedId,status,dateLastModified,classSourcedId,schoolSourcedId,userSourcedId,role,"
                        "primary,beginDate,endDate"),
}
HEADERS_12 = dict(HEADERS_11)
HEADERS_12["users.csv"] = (
    "sourcedId,status,dateLastModified,enabledUser,username,userIds,givenName,familyName,middleName,identifier,"
    "email,sms,phone,agentSourcedIds,grades,password,userMasterIdentifier,preferredGivenName,preferredMiddleName,"
    "preferredFamilyName,primaryOrgSourcedId,pronouns"
)
HEADERS_12["roles.csv"] = ("sourcedId,status,dateLastModified,userSourcedId,roleType,role,beginDate,endDate,"
                           "orgSourcedId,userProfileSourcedId")


def write_oneroster(folder: Path, tables: dict[str, list[dict]], version: str = "1.1") -> Path:
    """Write ``tables`` (file name → rows as dicts; missing keys are empty) into ``folder``."""
    headers = HEADERS_12 if version == "1.2" else HEADERS_11
    folder.mkdir(parents=True, exist_ok=True)
    for name, rows in tables.items():
        columns = headers[name].split(",")
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow({c: row.get(c, "") for c in columns})
        (folder / name).write_text(buffer.getvalue(), encoding="utf-8")
    (folder / "manifest.csv").write_text(
        f"propertyName,value\nmanifest.version,1.0\noneroster.version,{version}\n", encoding="utf-8")
    return folder


def parsed_mapping(table: object, prefix: str = "flows[0].mapping") -> Mapping:
    """``parse_mapping``'s mapping for a table that must be valid (fails the test, listing the problems, if not)."""
    mapping, problems = parse_mapping(table, prefix)
    assert mapping is not None and problems == [], problems
    return mapping


def zip_members(path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as archive:
        return {info.filename: archive.read(info) for info in archive.infolist()}
