"""OneRoster 1.1 and 1.2 CSV tables as data (oneroster.md §1, §3, §4, §6, §7, §8).

``HEADERS[version][stem]`` is the exact header row (§6); ``COLUMNS[version][stem]``
maps every defined column to a :class:`Col` saying whether a value is required,
its type, its vocabulary and what it references. The OneRoster validator only
interprets these tables, and nothing else restates them.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

VERSIONS = ("1.1", "1.2")
#: §4: the package's manifest, which names the version and each file's mode
MANIFEST = "manifest.csv"


@dataclass(frozen=True)
class Col:
    """One column's rule.

    ``kind``: string, guid, date, datetime, year, bool, enum, enum_list, grades,
    string_list, guid_list, user_ids, score_scale, float, int.
    ``ref``: target file stem whose ``sourcedId`` the value(s) must match.
    ``ext``: 1.2 extensible vocabulary (``ext:<token>`` accepted, §3).
    """

    kind: str = "string"
    required: bool = False
    enum: tuple[str, ...] = ()
    ext: bool = True
    ref: str | None = None
    school: bool = False  # the referenced org must be of type school (§8)
    school_year: bool = False  # the referenced session should be of type schoolYear (§8)


def _h(line: str) -> tuple[str, ...]:
    return tuple(line.split(","))


# §6.1
HEADERS_11: dict[str, tuple[str, ...]] = {
    "academicSessions": _h("sourcedId,status,dateLastModified,title,type,startDate,endDate,parentSourcedId,schoolYear"),
    "orgs": _h("sourcedId,status,dateLastModified,name,type,identifier,parentSourcedId"),
    "courses": _h("sourcedId,status,dateLastModified,schoolYearSourcedId,title,courseCode,grades,orgSourcedId,subjects,subjectCodes"),
    "classes": _h("sourcedId,status,dateLastModified,title,grades,courseSourcedId,classCode,classType,location,schoolSourcedId,termSourcedIds,subjects,subjectCodes,periods"),
    "users": _h("sourcedId,status,dateLastModified,enabledUser,orgSourcedIds,role,username,userIds,givenName,familyName,middleName,identifier,email,sms,phone,agentSourcedIds,grades,password"),
    "enrollments": _h("sourcedId,status,dateLastModified,classSourcedId,schoolSourcedId,userSourcedId,role,primary,beginDate,endDate"),
    "demographics": _h("sourcedId,status,dateLastModified,birthDate,sex,americanIndianOrAlaskaNative,asian,blackOrAfricanAmerican,nativeHawaiianOrOtherPacificIslander,white,demographicRaceTwoOrMoreRaces,hispanicOrLatinoEthnicity,countryOfBirthCode,stateOfBirthAbbreviation,cityOfBirth,publicSchoolResidenceStatus"),
    "resources": _h("sourcedId,status,dateLastModified,vendorResourceId,title,roles,importance,vendorId,applicationId"),
    "classResources": _h("sourcedId,status,dateLastModified,title,classSourcedId,resourceSourcedId"),
    "courseResources": _h("sourcedId,status,dateLastModified,title,courseSourcedId,resourceSourcedId"),
    "categories": _h("sourcedId,status,dateLastModified,title"),
    "lineItems": _h("sourcedId,status,dateLastModified,title,description,assignDate,dueDate,classSourcedId,categorySourcedId,gradingPeriodSourcedId,resultValueMin,resultValueMax"),
    "results": _h("sourcedId,status,dateLastModified,lineItemSourcedId,studentSourcedId,scoreStatus,score,scoreDate,comment"),
}

# §6.2 (1.2.1 corrected)
HEADERS_12: dict[str, tuple[str, ...]] = {
    **{k: HEADERS_11[k] for k in ("academicSessions", "orgs", "courses", "classes", "enrollments", "demographics",
                                  "resources", "classResources", "courseResources")},
    "users": _h("sourcedId,status,dateLastModified,enabledUser,username,userIds,givenName,familyName,middleName,identifier,email,sms,phone,agentSourcedIds,grades,password,userMasterIdentifier,preferredGivenName,preferredMiddleName,preferredFamilyName,primaryOrgSourcedId,pronouns"),
    "roles": _h("sourcedId,status,dateLastModified,userSourcedId,roleType,role,beginDate,endDate,orgSourcedId,userProfileSourcedId"),
    "userProfiles": _h("sourcedId,status,dateLastModified,userSourcedId,profileType,vendorId,applicationId,description,credentialType,username,password"),
    "userResources": _h("sourcedId,status,dateLastModified,userSourcedId,orgSourcedId,classSourcedId,resourceSourcedId"),
    "categories": _h("sourcedId,status,dateLastModified,title,weight"),
    "lineItems": _h("sourcedId,status,dateLastModified,title,description,assignDate,dueDate,classSourcedId,categorySourcedId,academicSessionSourcedId,resultValueMin,resultValueMax,schoolSourcedId"),
    "results": _h("sourcedId,status,dateLastModified,lineItemSourcedId,studentSourcedId,scoreStatus,score,scoreDate,comment,textScore,classSourcedId,inProgress,incomplete,late,missing"),
    "scoreScales": _h("sourcedId,status,dateLastModified,title,type,orgSourcedId,courseSourcedId,classSourcedId,scoreScaleValue"),
    "lineItemLearningObjectiveIds": _h("sourcedId,status,dateLastModified,lineItemSourcedId,source,learningObjectiveId"),
    "lineItemScoreScales": _h("sourcedId,status,dateLastModified,title,lineItemSourcedId,scoreScaleSourcedId"),
    "resultLearningObjectiveIds": _h("sourcedId,status,dateLastModified,resultSourcedId,source,learningObjectiveId,score,textScore"),
    "resultScoreScales": _h("sourcedId,status,dateLastModified,title,resultSourcedId,scoreScaleSourcedId"),
}

#: §6.2: the original 1.2 (1.2.0) users.csv, with resourceSourcedIds after userMasterIdentifier
USERS_12_0 = _h("sourcedId,status,dateLastModified,enabledUser,username,userIds,givenName,familyName,middleName,identifier,email,sms,phone,agentSourcedIds,grades,password,userMasterIdentifier,resourceSourcedIds,preferredGivenName,preferredMiddleName,preferredFamilyName,primaryOrgSourcedId,pronouns")

HEADERS: dict[str, dict[str, tuple[str, ...]]] = {"1.1": HEADERS_11, "1.2": HEADERS_12}

# §3, §5
STATUS = ("active", "tobedeleted")
# §3 grades: CEDS Entry Grade Level codes
GRADES = ("IT", "PR", "PK", "TK", "KG", *(f"{n:02d}" for n in range(1, 14)), "PS", "UG", "Other")

# §7 vocabularies
SESSION_TYPES = ("gradingPeriod", "semester", "schoolYear", "term")
ORG_TYPES = ("department", "school", "district", "local", "state", "national")
CLASS_TYPES = ("homeroom", "scheduled")
USER_ROLES_11 = ("administrator", "aide", "guardian", "parent", "proctor", "relative", "student", "teacher")
ROLES_12 = ("aide", "counselor", "districtAdministrator", "guardian", "parent", "principal", "proctor", "relative",
            "siteAdministrator", "student", "systemAdministrator", "teacher")
# §7.7 / §13 Q3: 1.1 sources disagree (GM/LEGERTOM 4 values, OAT 7); the union is accepted
ENROLLMENT_ROLES_11 = ("administrator", "proctor", "student", "teacher", "aide", "guardian", "parent", "relative")
ENROLLMENT_ROLES_12 = ("administrator", "proctor", "student", "teacher")
#: A person's family, not school staff (asm.md §3.3 leaves them out of ASM)
FAMILY_ROLES = ("guardian", "parent", "relative")
#: Every person role: 1.1 users.role (§7.5) and 1.2 roles.role (§7.6)
PERSON_ROLES = tuple(sorted(set(USER_ROLES_11) | set(ROLES_12)))
#: Enrolment roles of students and school staff (any version, §7.7): the family roles left out
SCHOOL_ENROLLMENT_ROLES = tuple(sorted(set(ENROLLMENT_ROLES_11) - set(FAMILY_ROLES)))
SEX_11 = ("male", "female")
SEX_12 = ("male", "female", "unspecified", "other")
RESOURCE_ROLES = ("administrator", "aide", "guardian", "parent", "proctor", "relative", "student", "teacher")
IMPORTANCE = ("primary", "secondary")
SCORE_STATUS = ("exempt", "fully graded", "not submitted", "partially graded", "submitted")
LO_SOURCE = ("case", "unknown")

R = True
_S = Col()
_SR = Col(required=R)
_DATE = Col("date")
_BOOL = Col("bool")


def _ref(target: str, required: bool = False, *, school: bool = False, school_year: bool = False) -> Col:
    return Col("guid", required=required, ref=target, school=school, school_year=school_year)


_COMMON = {
    "sourcedId": Col("guid", required=R),
    "status": Col("enum", enum=STATUS, ext=False),
    "dateLastModified": Col("datetime"),
}

_RACE = {k: _BOOL for k in ("americanIndianOrAlaskaNative", "asian", "blackOrAfricanAmerican",
                             "nativeHawaiianOrOtherPacificIslander", "white", "demographicRaceTwoOrMoreRaces",
                             "hispanicOrLatinoEthnicity")}

_BASE: dict[str, dict[str, Col]] = {
    "academicSessions": {  # §7.1
        "title": _SR, "type": Col("enum", R, SESSION_TYPES), "startDate": Col("date", R), "endDate": Col("date", R),
        "parentSourcedId": _ref("academicSessions"), "schoolYear": Col("year", R),
    },
    "orgs": {"name": _SR, "type": Col("enum", R, ORG_TYPES), "identifier": _S, "parentSourcedId": _ref("orgs")},  # §7.2
    "courses": {  # §7.3
        "schoolYearSourcedId": _ref("academicSessions", school_year=True), "title": _SR, "courseCode": _S,
        "grades": Col("grades"), "orgSourcedId": _ref("orgs", R), "subjects": Col("string_list"),
        "subjectCodes": Col("string_list"),
    },
    "classes": {  # §7.4
        "title": _SR, "grades": Col("grades"), "courseSourcedId": _ref("courses", R), "classCode": _S,
        "classType": Col("enum", R, CLASS_TYPES), "location": _S, "schoolSourcedId": _ref("orgs", R, school=True),
        "termSourcedIds": Col("guid_list", R, ref="academicSessions"), "subjects": Col("string_list"),
        "subjectCodes": Col("string_list"), "periods": Col("string_list"),
    },
    "users": {  # §7.5
        "enabledUser": Col("bool", R), "orgSourcedIds": Col("guid_list", R, ref="orgs"),
        "role": Col("enum", R, USER_ROLES_11), "username": _SR, "userIds": Col("user_ids"), "givenName": _SR,
        "familyName": _SR, "middleName": _S, "identifier": _S, "email": _S, "sms": _S, "phone": _S,
        "agentSourcedIds": Col("guid_list", ref="users"), "grades": Col("grades"), "password": _S,
        "userMasterIdentifier": _S, "resourceSourcedIds": Col("guid_list", ref="resources"),
        "preferredGivenName": _S, "preferredMiddleName": _S, "preferredFamilyName": _S,
        "primaryOrgSourcedId": _ref("orgs"), "pronouns": _S,
    },
    "roles": {  # §7.6
        "userSourcedId": _ref("users", R), "roleType": Col("enum", R, IMPORTANCE, ext=False),
        "role": Col("enum", R, ROLES_12), "beginDate": _DATE, "endDate": _DATE, "orgSourcedId": _ref("orgs", R),
        "userProfileSourcedId": _ref("userProfiles"),
    },
    "enrollments": {  # §7.7
        "classSourcedId": _ref("classes", R), "schoolSourcedId": _ref("orgs", R, school=True),
        "userSourcedId": _ref("users", R), "role": Col("enum", R, ENROLLMENT_ROLES_11), "primary": _BOOL,
        "beginDate": _DATE, "endDate": _DATE,
    },
    "demographics": {  # §7.8: the row's sourcedId is the user's
        "birthDate": _DATE, "sex": Col("enum", enum=SEX_11), **_RACE, "countryOfBirthCode": _S,
        "stateOfBirthAbbreviation": _S, "cityOfBirth": _S, "publicSchoolResidenceStatus": _S,
    },
    "userProfiles": {  # §7.9
        "userSourcedId": _ref("users", R), "profileType": _SR, "vendorId": _SR, "applicationId": _S,
        "description": _S, "credentialType": _SR, "username": _SR, "password": _S,
    },
    "resources": {  # §7.10
        "vendorResourceId": _SR, "title": _S, "roles": Col("enum_list", enum=RESOURCE_ROLES),
        "importance": Col("enum", enum=IMPORTANCE, ext=False), "vendorId": _S, "applicationId": _S,
    },
    "classResources": {"title": _S, "classSourcedId": _ref("classes", R), "resourceSourcedId": _ref("resources", R)},
    "courseResources": {"title": _S, "courseSourcedId": _ref("courses", R), "resourceSourcedId": _ref("resources", R)},
    "userResources": {
        "userSourcedId": _ref("users", R), "orgSourcedId": _ref("orgs"), "classSourcedId": _ref("classes"),
        "resourceSourcedId": _ref("resources", R),
    },
    "categories": {"title": _SR, "weight": Col("int")},  # §7.11
    "lineItems": {
        "title": _SR, "description": _S, "assignDate": Col("date", R), "dueDate": Col("date", R),
        "classSourcedId": _ref("classes", R), "categorySourcedId": _ref("categories", R),
        "gradingPeriodSourcedId": _ref("academicSessions", R), "academicSessionSourcedId": _ref("academicSessions", R),
        "resultValueMin": Col("float"), "resultValueMax": Col("float"), "schoolSourcedId": _ref("orgs", R, school=True),
    },
    "results": {
        "lineItemSourcedId": _ref("lineItems", R), "studentSourcedId": _ref("users", R),
        "scoreStatus": Col("enum", R, SCORE_STATUS), "score": Col("float"), "scoreDate": Col("date", R),
        "comment": _S, "textScore": _S, "classSourcedId": _ref("classes"), "inProgress": _BOOL,
        "incomplete": _BOOL, "late": _BOOL, "missing": _BOOL,
    },
    "scoreScales": {
        "title": _SR, "type": _SR, "orgSourcedId": _ref("orgs", R), "courseSourcedId": _ref("courses", R),
        "classSourcedId": _ref("classes", R), "scoreScaleValue": Col("score_scale", R),
    },
    "lineItemLearningObjectiveIds": {
        "lineItemSourcedId": _ref("lineItems", R), "source": Col("enum", R, LO_SOURCE), "learningObjectiveId": _SR,
    },
    "lineItemScoreScales": {"title": _S, "lineItemSourcedId": _ref("lineItems", R), "scoreScaleSourcedId": _ref("scoreScales", R)},
    "resultLearningObjectiveIds": {
        "resultSourcedId": _ref("results", R), "source": Col("enum", R, LO_SOURCE), "learningObjectiveId": _SR,
        "score": Col("float"), "textScore": _S,
    },
    "resultScoreScales": {"title": _S, "resultSourcedId": _ref("results", R), "scoreScaleSourcedId": _ref("scoreScales", R)},
}

# version differences (§7)
_OVERRIDES = {
    "1.1": {},
    "1.2": {
        ("enrollments", "role"): Col("enum", R, ENROLLMENT_ROLES_12),
        ("demographics", "sex"): Col("enum", enum=SEX_12),
    },
}


def _columns(version: str) -> dict[str, dict[str, Col]]:
    out: dict[str, dict[str, Col]] = {}
    for stem, header in HEADERS[version].items():
        spec = {**_COMMON, **_BASE[stem]}
        if stem == "demographics":
            spec["sourcedId"] = Col("guid", required=R, ref="users")
        cols = {}
        for name in header:
            col = _OVERRIDES[version].get((stem, name), spec[name])
            if version == "1.1":
                col = replace(col, ext=False)  # ext: tokens are a 1.2 feature (§3)
            cols[name] = col
        if stem == "users" and version == "1.2":
            cols["resourceSourcedIds"] = spec["resourceSourcedIds"]  # 1.2.0 header only
        out[stem] = cols
    return out


COLUMNS: dict[str, dict[str, dict[str, Col]]] = {v: _columns(v) for v in VERSIONS}

# §4: manifest properties
FILE_KEYS: dict[str, tuple[str, ...]] = {v: tuple(sorted(HEADERS[v], key=str.lower)) for v in VERSIONS}
MANIFEST_REQUIRED = ("manifest.version", "oneroster.version")
MANIFEST_OPTIONAL = ("source.systemName", "source.systemCode")
MANIFEST_MODES = ("absent", "bulk", "delta")
#: oneroster.version values read as a supported version (§13 Q5: MEIBO writes 1.2.1)
VERSION_NAMES = {"1.1": "1.1", "1.2": "1.2", "1.2.1": "1.2"}

#: stems whose rows Apple School Manager imports (oneroster.md §10)
ASM_FILES = ("orgs", "users", "courses", "classes", "enrollments")
#: The OneRoster columns that become ASM identifiers (asm.md §3.3): each file's sourcedId is the key
#: of the ASM file it feeds (orgs -> location_id, users -> person_id, courses -> course_id, classes ->
#: class_id, enrollments -> roster_id); references resolve to these, so they need no check of their own.
ASM_ID_SOURCES: dict[str, str] = {stem: "sourcedId" for stem in ASM_FILES}
#: The OneRoster columns the default mapping copies into ASM's length-limited name columns
#: (asm.md §1.2-§1.7, NAME_MAX): (file, column) -> the ASM column it fills.
ASM_NAME_SOURCES: dict[tuple[str, str], str] = {
    ("users", "givenName"): "first_name", ("users", "middleName"): "middle_name",
    ("users", "familyName"): "last_name", ("courses", "title"): "course_name", ("orgs", "name"): "location_name",
}
ASM_ROLES = ("student", "teacher")
ASM_ORG_TYPES = ("school", "district")

# §3: formats
GUID_RE = r"[0-9A-Za-z./@_-]+"  # with GUID_MAX; RE2 is much slower on a bounded {1,255}
GUID_CHARS = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz./@_-"
GUID_MAX = 255
#: a year from 0001 (ISO 8601 has a year 0000 only by mutual agreement; no SIS means it). RE2 has no
#: look-ahead, hence the spelled-out alternatives.
_YEAR = r"(?:[1-9]\d{3}|0[1-9]\d{2}|00[1-9]\d|000[1-9])"
_MONTH_DAY = r"(?:0[1-9]|1[0-2])-(?:0[1-9]|[12]\d|3[01])"
DATE_RE = rf"{_YEAR}-{_MONTH_DAY}"  # days 29-31 are checked against the month by the validator
#: the shape of an ISO 8601 date-time (what is "a date-time" at all) ...
DATETIME_ISO_RE = (r"\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:[.,]\d+)?)?(?:Z|[+-]\d{2}:?\d{2})?)?")
#: ... and one whose fields are in range (month 01-12, hour 00-23, minute and second 00-59, offset up to
#: ±23:59); a value of the shape that fails this one is an impossible date-time
DATETIME_REAL_RE = (rf"{_YEAR}-{_MONTH_DAY}(?:[T ](?:[01]\d|2[0-3]):[0-5]\d(?::[0-5]\d(?:[.,]\d+)?)?"
                    r"(?:Z|[+-](?:[01]\d|2[0-3]):?[0-5]\d)?)?")
DATETIME_CANONICAL_RE = r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z"
#: §3, §13 Q1: a date-time with a "T" and a time, which every reader takes (1.1 writers also send
#: "2017-05-06 08:01:05" and date-only values, which some readers refuse)
DATETIME_T_RE = r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}.*"
YEAR_RE = r"\d{4}"
EXT_RE = r"ext:[a-zA-Z0-9.\-_]+"
USER_IDS_RE = r"\{[^:}]+:[^}]+\}(?:,\{[^:}]+:[^}]+\})*"
#: §7.11: scoreScales.scoreScaleValue is a list of {lhs:rhs} pairs, e.g. "{A:94},{B:85}"
SCORE_SCALE_RE = r"\{[^:{}]+:[^{}]+\}(?:,\{[^:{}]+:[^{}]+\})*"
#: §7.11: a learning objective from CASE is named by a urn:uuid: UUID (LSG)
CASE_ID_RE = r"urn:uuid:[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}"
#: §7.11: files naming learning objectives (``source`` = case | unknown, ``learningObjectiveId``)
LEARNING_OBJECTIVE_FILES = ("lineItemLearningObjectiveIds", "resultLearningObjectiveIds")
FLOAT_RE = r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?"
INT_RE = r"[+-]?\d+"


def columns_of(stem: str) -> tuple[str, ...]:
    """The columns of file ``stem`` in any version (1.1's, then what 1.2 adds), in header order."""
    seen: dict[str, None] = {}
    for version in VERSIONS:
        seen.update(dict.fromkeys(HEADERS[version].get(stem, ())))
    return tuple(seen)
