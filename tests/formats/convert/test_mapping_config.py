"""parse_mapping: the TOML shape, and one precise error per mistake (all reported together).

It returns ``(mapping, problems)``: the mapping only when the table is valid, else ``None``.
"""

from __future__ import annotations

import tomllib

import pytest

from rostergate.config import ConfigError, parse
from rostergate.formats.convert.mapping import ColumnRule, DateFormat, Lower, Mapping, RegexSub
from rostergate.formats.convert.mapping_config import parse_mapping

from .conftest import parsed_mapping

P = "flows[0].mapping"


def _errors(text: str) -> list[str]:
    mapping, problems = parse_mapping(tomllib.loads(text), P)
    assert mapping is None and problems
    return problems


def test_empty_table_is_the_default() -> None:
    assert parse_mapping({}, P) == (Mapping(), [])


def test_full_shape_parses() -> None:
    mapping = parsed_mapping(tomllib.loads('''
        id_prefix = "north-"
        instructor_roles = ["teacher", "aide"]
        [roles]
        counselor = "drop"
        "ext:coach" = "staff"
        [filters]
        include_schools = ["hs"]
        exclude_grades = ["PK"]
        [[password_policy]]
        grades = ["KG", "01"]
        locations = ["es"]
        policy = 4
        [students.sis_username]
        template = "{givenName}.{familyName}"
        transform = ["lower", { regex = "[^a-z.]", replace = "" }]
        [students.grade_level]
        values = { "KG" = "Kindergarten", "09" = 9 }
        default = ""
        [staff.email_address]
        from = ["metadata.workEmail", "email"]
        [classes.class_display_name]
        from = "title"
        [courses.course_number]
        transform = [{ date = "%Y", from = "%Y-%m-%d" }]
        [locations.location_name]
        map = false
    '''), P)
    assert mapping.id_prefix == "north-"
    assert mapping.category("counselor") == "drop" and mapping.category("ext:coach") == "staff"
    assert mapping.category("ext:unknown") == "drop"
    assert mapping.instructor_roles == {"teacher", "aide"}
    assert mapping.password_policy[0].policy == "4"
    students = mapping.rules_for("students")
    assert students["sis_username"].kinds == ("transformation",)
    assert isinstance(students["sis_username"].steps[0], Lower)
    assert isinstance(students["sis_username"].steps[1], RegexSub)
    assert dict(students["grade_level"].values) == {"KG": "Kindergarten", "09": "9"}
    assert students["grade_level"].kinds == ("match",)
    assert mapping.rules_for("staff")["email_address"].kinds == ("direct",)
    assert isinstance(mapping.rules_for("courses")["course_number"].steps[0], DateFormat)
    assert mapping.rules_for("locations")["location_name"] == ColumnRule(skip=True)
    assert mapping.rules_for("locations")["location_name"].kinds == ("none",)


@pytest.mark.parametrize("text,problem", [
    ('bogus = 1', f"{P}.bogus: unknown key"),
    ('id_prefix = "a_b"', f"{P}.id_prefix: must be letters, digits and '-' only"),
    ('id_prefix = 3', f"{P}.id_prefix: must be letters"),
    ('roles = "x"', f"{P}.roles: must be a table"),
    ('[roles]\nwizard = "staff"', f"{P}.roles.wizard: unknown role"),
    ('[roles]\nteacher = "teachers"', f"{P}.roles.teacher: must be \"student\", \"staff\" or \"drop\""),
    ('instructor_roles = ["student"]', f"{P}.instructor_roles: 'student' enrolments go to rosters.csv"),
    ('instructor_roles = ["coach"]', f"{P}.instructor_roles: unknown enrolment role 'coach'"),
    ('instructor_roles = "teacher"', f"{P}.instructor_roles: must be a list of non-empty strings"),
    ('[filters]\nonly = ["x"]', f"{P}.filters.only: unknown key"),
    ('[filters]\ninclude_roles = ["boss"]', f"{P}.filters.include_roles: unknown role 'boss'"),
    ('[filters]\ninclude_schools = "hs"', f"{P}.filters.include_schools: must be a list"),
    ('[[password_policy]]\npolicy = 5', f"{P}.password_policy[0].policy: required: 4, 6, 8"),
    ('[[password_policy]]\ngrades = ["KG"]', f"{P}.password_policy[0].policy: required"),
    ('[[password_policy]]\npolicy = 4\nschool = "x"', f"{P}.password_policy[0].school: unknown key"),
    ('password_policy = 4', f"{P}.password_policy: must be an array of tables"),
    ('[students.person_id]\nfrom = "identifier"', f"{P}.students.person_id: is an id column"),
    ('[staff.location_id_2]\nfrom = "identifier"', f"{P}.staff.location_id_2: is an id column"),
    ('[students.nickname]\nfrom = "givenName"', f"{P}.students.nickname: unknown students.csv column"),
    ('[staff.grade_level]\nfrom = "grades"', f"{P}.staff.grade_level: unknown staff.csv column"),
    ('[rosters.roster_id]\nfrom = "x"', f"{P}.rosters: unknown key"),
    ('[students.first_name]\nfrom = "givenname"',
     f"{P}.students.first_name.from: unknown users.csv column 'givenname'"),
    ('[students.first_name]\nfrom = []', f"{P}.students.first_name.from: must be a users.csv column name"),
    ('[courses.course_name]\nfrom = "name"', f"{P}.courses.course_name.from: unknown courses.csv column 'name'"),
    ('[students.first_name]\nfrom = "givenName"\ntemplate = "{givenName}"',
     f"{P}.students.first_name: use either from or template"),
    ('[students.last_name]\ntemplate = "{familyName!r}"',
     f"{P}.students.last_name.template: placeholders must be plain column names"),
    ('[students.last_name]\ntemplate = "{}"',
     f"{P}.students.last_name.template: placeholders must be plain column names"),
    ('[students.last_name]\ntemplate = "{mail}@x"',
     f"{P}.students.last_name.template: unknown template field {{mail}}"),
    ('[students.last_name]\ntemplate = "{familyName"', f"{P}.students.last_name.template: bad template"),
    ('[students.last_name]\ntemplate = "constant"',
     f"{P}.students.last_name.template: has no {{column}} placeholder"),
    ('[students.sis_username]\ntransform = ["title"]',
     f"{P}.students.sis_username.transform[0]: unknown transformation 'title'"),
    ('[students.sis_username]\ntransform = [{ regex = "(" }]',
     f"{P}.students.sis_username.transform[0].regex: bad regular expression '('"),
    ('[students.sis_username]\ntransform = [{ regex = "a", replace = "\\\\2" }]',
     f"{P}.students.sis_username.transform[0].replace: bad replacement"),
    ('[students.sis_username]\ntransform = [{ regex = "a", with = "b" }]',
     f"{P}.students.sis_username.transform[0].with: unknown key"),
    ('[students.sis_username]\ntransform = [{ date = "%Q" }]',
     f"{P}.students.sis_username.transform[0].date: unknown date directive %Q"),
    ('[students.sis_username]\ntransform = [{ date = "YYYY" }]',
     f"{P}.students.sis_username.transform[0].date: has no % directive"),
    ('[students.sis_username]\ntransform = 3', f"{P}.students.sis_username.transform: must be a list of steps"),
    ('[students.grade_level]\nvalues = {}', f"{P}.students.grade_level.values: must be a non-empty table"),
    ('[students.grade_level]\nvalues = { KG = true }', f"{P}.students.grade_level.values.KG: must be a string"),
    ('[students.grade_level]\ndefault = "x"', f"{P}.students.grade_level.default: only meaningful with values"),
    ('[students.middle_name]\nmap = false\nfrom = "middleName"',
     f"{P}.students.middle_name: map = false (do not map) cannot be combined with from"),
    ('[students.middle_name]\nmap = "no"', f"{P}.students.middle_name.map: must be true or false"),
    ('[students.middle_name]\nsource = "x"', f"{P}.students.middle_name.source: unknown key"),
    ('[students.middle_name]', f"{P}.students.middle_name: says nothing"),
    ('students = 3', f"{P}.students: must be a table"),
])
def test_each_error_names_its_key(text: str, problem: str) -> None:
    problems = _errors(text)
    assert any(p.startswith(problem) for p in problems), problems


def test_all_errors_reported_at_once() -> None:
    problems = _errors('id_prefix = "_"\n[roles]\nwizard = "staff"\n[students.nickname]\nfrom = "x"')
    assert len(problems) == 3


def test_config_load_calls_the_mapping_parser(tmp_path) -> None:
    raw = tomllib.loads(f'''
        [[flows]]
        account = "district-a"
        [flows.downstream]
        url = "file://{tmp_path}"
        [flows.mapping]
        id_prefix = "a-"
        [flows.mapping.students.first_name]
        from = "nope"
    ''')
    with pytest.raises(ConfigError) as caught:
        parse(raw, base=tmp_path)
    assert caught.value.problems == [
        "flows[0].mapping.students.first_name.from: unknown users.csv column 'nope'"]
    del raw["flows"][0]["mapping"]["students"]
    settings = parse(raw, base=tmp_path)
    assert settings.flows[0].mapping.id_prefix == "a-"


def test_docs_example_is_valid() -> None:
    from pathlib import Path

    text = (Path(__file__).parents[3] / "docs" / "mapping.md").read_text(encoding="utf-8")
    blocks = [b.split("```", 1)[0] for b in text.split("```toml\n")[1:]]
    full = next(b for b in blocks if "[flows.mapping]" in b)
    mapping = parsed_mapping(tomllib.loads(full)["flows"][0]["mapping"], P)
    assert mapping.id_prefix == "north-" and len(mapping.password_policy) == 3
    for block in blocks:  # the smaller examples parse too
        raw = tomllib.loads(block)
        flows = raw["flows"]
        parsed_mapping((flows[0] if isinstance(flows, list) else flows)["mapping"], P)


def test_mapping_pickles_and_hashes() -> None:
    """The pipeline hands the mapping to a worker process."""
    import pickle

    mapping = parsed_mapping(tomllib.loads('''
        id_prefix = "n-"
        [students.grade_level]
        values = { KG = "Kindergarten" }
        [students.sis_username]
        transform = [{ regex = "a(b)", replace = "\\\\1" }, { date = "%Y" }]
    '''), P)
    again = pickle.loads(pickle.dumps(mapping))
    assert again == mapping and hash(again) == hash(mapping)
