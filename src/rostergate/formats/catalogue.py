"""The catalogue of issue codes: one row per code, as data.

Each :class:`Code` has a stable dotted name, a default severity, a message
template and a fix hint (the frictionless "errors as a catalogue" shape,
aesthetics.md §5). :func:`issue` renders an :class:`~.issues.Issue` from a code;
the rendered ``message`` is ``"<reason>; <hint>"`` so every consumer of the
JSON contract gets the fix with the finding.

Templates may use ``{file}``, ``{column}``, ``{value}`` and any keyword passed
to :func:`issue`; unknown placeholders render as ``?`` rather than raising.

A *family* row stands for codes whose last part comes from the data: the row
``convert.dropped.role`` renders ``convert.dropped.role_parent``,
``convert.dropped.role_guardian`` and so on (:func:`lookup`).
"""

from __future__ import annotations

from dataclasses import dataclass

from rostergate.formats.issues import Issue, Severity


@dataclass(frozen=True, slots=True)
class Code:
    code: str
    severity: Severity
    template: str
    hint: str
    #: the row stands for the codes ``<code>_<name>`` (``name`` from the data, e.g. a role)
    family: bool = False
    #: values for template parameters a caller may leave out (e.g. the dialect's ``advice``)
    defaults: tuple[tuple[str, str], ...] = ()


class _Lenient(dict[str, object]):
    def __missing__(self, key: str) -> str:
        return "?"


E: Severity = "error"
W: Severity = "warning"

#: Why the converter leaves a source row out: reason -> (what the row is or has, what to do).
#: A reason is counted per source file (formats/convert/ledger.py) and reported as the warning
#: ``convert.dropped.<reason>`` (docs/mapping.md, "What is left out, and why").
DROP_REASONS: dict[str, tuple[str, str]] = {
    "malformed": ("could not be read as a row (a wrong number of values, or a quote left open)",
                  "correct the row: the validation report names its problem"),
    "duplicate_id": ("repeats a sourcedId already used in this file (the first row is kept)",
                     "give every record its own sourcedId in the export, or remove the repeated row"),
    "tobedeleted": ("has status=tobedeleted",
                    "nothing to do if the record is being deleted; otherwise set its status to active in the SIS"),
    "disabled": ("has enabledUser=false",
                 "nothing to do if the account is switched off; otherwise set enabledUser=true in the SIS"),
    "outside_dates": ("is outside its beginDate/endDate on the run date (endDate exclusive)",
                      "nothing to do if it has ended or not begun yet; otherwise correct beginDate/endDate "
                      "in the SIS"),
    "filter_school": ("belongs to a school excluded by the mapping filters",
                      "nothing to do if the school stays out of ASM; otherwise change include_schools or "
                      "exclude_schools under [flows.mapping.filters]"),
    "filter_role": ("has a role excluded by the mapping filters",
                    "nothing to do if the role stays out of ASM; otherwise change include_roles or exclude_roles "
                    "under [flows.mapping.filters]"),
    "filter_grade": ("has a grade excluded by the mapping filters",
                     "nothing to do if the grade stays out of ASM; otherwise change include_grades or "
                     "exclude_grades under [flows.mapping.filters]"),
    "location_missing": ("refers to no org that is in the output (missing, deleted or empty reference)",
                         "add the org to orgs.csv (active, not excluded by the filters) or correct the reference"),
    "no_role": ("has no usable roles.csv row",
                "add a current roles.csv row for the user at an org of orgs.csv"),
    "course_missing": ("refers to a course that is not in the output",
                       "add the course to courses.csv or correct courseSourcedId (the counts for courses.csv "
                       "say why a course was left out)"),
    "class_missing": ("refers to a class that is not in the output",
                      "add the class to classes.csv or correct classSourcedId (the counts for classes.csv "
                      "say why a class was left out)"),
    "user_missing": ("refers to a user who is not in the output",
                     "add the user to users.csv or correct userSourcedId (the counts for users.csv "
                     "say why a person was left out)"),
    "user_not_student": ("enrols as student a user who is not in students.csv",
                         "make the person's role and the enrolment's role agree (a student enrolment needs a "
                         "person with a student role)"),
    "user_not_staff": ("enrols as instructor a user who is not in staff.csv",
                       "make the person's role and the enrolment's role agree (a teacher enrolment needs a "
                       "person with a staff role)"),
    "enrollment_role": ("has an enrolment role that is neither student nor one of the mapping's instructor_roles",
                        "nothing to do if such enrolments stay out of ASM; otherwise add the role to "
                        "instructor_roles under [flows.mapping]"),
    "duplicate_pair": ("repeats the same user in the same class (the first row is kept)",
                       "keep one enrolment per user and class in the export"),
    "instructor_limit": ("would be instructor number 16 or more (ASM allows 15 per class)",
                         "keep at most 15 teachers per class (the primary=true teacher comes first, then "
                         "the others by enrolment sourcedId)"),
    "other_role": ("is a role of the person in a different ASM file than their primary role",
                   "nothing to do: ASM lists each person in one file, students or staff, chosen by their "
                   "primary role"),
    "duplicate_org": ("repeats an org already given to this person",
                      "nothing to do: the person gets the org once; remove the repeated roles.csv row to "
                      "silence this"),
    "unreferenced": ("is not referenced by any person, course or class in the output",
                     "nothing to do: ASM receives only the locations in use (usually this is the district org)"),
    "role_other": ("has a role the mapping does not send to ASM",
                   "nothing to do if these people stay out of ASM; otherwise map the role to \"student\" or "
                   "\"staff\" under [flows.mapping.roles]"),
}
#: The family ``role_<role>``: a person role the mapping drops (``role_other`` for roles
#: that are not a plain word, such as ``ext:…``).
ROLE_DROPPED: tuple[str, str] = (
    "has role {role}, which the mapping does not send to ASM",
    DROP_REASONS["role_other"][1],
)
_DROPPED = "left out ({{count}} row(s) in all): {why}"

_ROWS: tuple[Code, ...] = (
    # -- input / format ------------------------------------------------------------------
    Code("input.unreadable", E, "cannot read the upload: {reason}", "upload a ZIP file or a folder of CSV files"),
    Code("format.unknown", E, "cannot recognise the format: {reason}",
         "send either OneRoster CSV (with manifest.csv) or the six Apple School Manager files "
         "(students.csv, staff.csv, courses.csv, classes.csv, rosters.csv, locations.csv)"),
    Code("internal.error", E, "the validator failed on this upload ({reason})",
         "this is a rostergate bug; the operators have the details"),
    # -- archive (zip safety) --------------------------------------------------------------
    Code("archive.not_a_zip", E, "the upload is not a readable ZIP archive ({reason})",
         "compress the CSV files into one .zip and upload it again"),
    Code("archive.empty", E, "the ZIP archive holds no files", "put the CSV files at the root of the ZIP"),
    Code("archive.path_traversal", E, "entry '{value}' points outside the archive ('..')",
         "create the ZIP from the folder that holds the CSV files"),
    Code("archive.absolute_path", E, "entry '{value}' has an absolute path or drive letter",
         "create the ZIP from the folder that holds the CSV files"),
    Code("archive.backslash_path", E, "entry '{value}' uses backslashes in its name",
         "use a ZIP tool that writes '/' separators (any current tool does)"),
    Code("archive.duplicate_name", E, "the ZIP holds '{value}' more than once",
         "keep exactly one copy of each file"),
    Code("archive.case_collision", E, "entry '{value}' differs from '{other}' only by letter case",
         "keep one of the two files, with the exact lower/upper case the format requires"),
    Code("archive.encrypted", E, "entry '{value}' is encrypted", "upload the ZIP without a password"),
    Code("archive.unsupported_entry", E, "entry '{value}' cannot be unpacked ({reason})",
         "re-create the ZIP with standard 'deflate' compression and plain files only"),
    Code("archive.unsupported_compression", E, "entry '{value}' is compressed with {method}, which is not accepted",
         "re-create the ZIP with standard (deflate) compression: the default of Windows 'Send to > Compressed "
         "folder', macOS 'Compress' and zip; in 7-Zip choose Method 'Deflate'"),
    Code("archive.overlapping_entries", E, "entry '{value}' overlaps another entry in the ZIP ({reason})",
         "this ZIP is malformed or hostile; re-create it with a standard ZIP tool"),
    Code("archive.too_many_entries", E, "the ZIP holds more than {limit} entries",
         "send only the CSV files of one roster"),
    Code("archive.entry_too_large", E, "entry '{value}' unpacks to more than {limit} bytes",
         "split the file or contact the operators to raise the limit"),
    Code("archive.too_large", E, "the ZIP unpacks to more than {limit} bytes",
         "split the data or contact the operators to raise the limit"),
    Code("archive.compression_ratio", E, "entry '{value}' expands more than {limit}:1 (possible zip bomb)",
         "re-create the ZIP with a standard ZIP tool from the real CSV files"),
    Code("archive.size_mismatch", E, "entry '{value}' does not unpack to the size its header declares",
         "the ZIP is damaged or hostile; re-create it"),
    Code("archive.crc_mismatch", E, "entry '{value}' is damaged (checksum mismatch)",
         "the upload was probably cut off; upload the ZIP again"),
    Code("archive.nested_zip", W, "entry '{value}' is a ZIP inside the ZIP; it is not unpacked",
         "put the CSV files themselves at the root of the ZIP"),
    Code("archive.nested_folder", W, "files were inside the folder '{value}/'; they were read from there",
         "Apple School Manager forbids folders: zip the files themselves, not their folder"),
    Code("archive.too_deep", E, "entry '{value}' is nested in folders",
         "put all CSV files at the root of the ZIP (at most one enclosing folder is tolerated)"),
    # -- text decoding -----------------------------------------------------------------------
    Code("text.utf8_bom", W, "the file starts with a UTF-8 byte order mark (BOM); it was ignored",
         "save as 'UTF-8' without BOM (Excel: 'CSV UTF-8' adds one)"),
    Code("text.encoding_converted", W, "the file is encoded as {value}, not UTF-8; it was converted",
         "save the file as UTF-8 so that names with accents arrive unchanged"),
    Code("text.encoding_rejected", E, "the file is encoded as {value}, not UTF-8",
         "save the file as UTF-8"),
    Code("text.encoding_invalid", E, "the file is not valid UTF-8 (bad byte at offset {offset})",
         "save the file as UTF-8"),
    Code("text.binary", E, "the file holds binary data, not text", "upload the CSV file itself"),
    Code("text.delimiter", W, "values are separated by {value} instead of commas",
         "export with ',' as the separator"),
    # -- CSV structure -----------------------------------------------------------------------
    # The {advice} of these rows depends on the dialect (csvio.Dialect: OneRoster's RFC 4180 or
    # Apple's, asm.md §1.1); the defaults are the dialect-neutral wording.
    Code("csv.empty_file", E, "the file is empty (not even a header row)", "{advice}",
         defaults=(("advice", "write the header row"),)),
    Code("csv.parse_error", E, "cannot parse the file as CSV ({reason})", "check quotes and separators"),
    Code("csv.row_width_mismatch", E, "the row has {actual} values, the header has {expected}",
         "quote values that contain the separator and give every row one value per column"),
    Code("csv.header.width_mismatch", E, "every row has {actual} values but the header names {expected} columns",
         "make the header and the rows agree: one name per column and one value per column on every row"),
    Code("csv.header.trailing_separator", E,
         "the header ends with {count} separator(s) naming no column, so every row is {count} value(s) short",
         "remove the separator(s) at the end of the header row"),
    Code("csv.trailing_separator", E,
         "every row ends with {count} extra separator(s): empty values the header has no column for",
         "remove the separator(s) at the end of each row (spreadsheet programs sometimes add them)"),
    Code("csv.bare_quote", E, "the value holds a double quote that is not escaped", "{advice}",
         defaults=(("advice", "enclose a value that holds a double quote in double quotes, and escape the quote"),)),
    Code("csv.unterminated_quote", E,
         "a quoted value starts here and is never closed, so the rest of the file ({lines} line(s)) "
         "reads as one value", "close the quoted value; {advice}",
         defaults=(("advice", "a double quote inside a value must be escaped"),)),
    Code("csv.cr_line_ends", W, "{count} line(s) end with a carriage return alone (old Mac OS line ends)",
         "{advice}", defaults=(("advice", "save the file with LF or CRLF line ends"),)),
    Code("csv.line_break_in_field", E, "the value contains a line break",
         "remove line breaks from values (OneRoster forbids them; Apple needs them escaped)"),
    Code("csv.header.duplicate_column", E, "the column appears {count} times in the header (positions {positions}); "
         "its values are not checked", "keep each column once",
         defaults=(("count", "more than one"), ("positions", "?"))),
    Code("csv.header.empty_column", E, "the header has an empty column name at position {position}",
         "remove the unnamed column (often a stray separator or an Excel index column)"),
    # -- Apple School Manager (asm.md §1) ---------------------------------------------------
    Code("asm.file.missing", E, "{value} is missing", "ASM expects all six files in every upload (asm.md §1.1)"),
    Code("asm.file.name_case", E, "the file is named '{value}' but must be '{expected}'",
         "file names are case-sensitive: rename it to {expected}"),
    Code("asm.file.unexpected", E, "'{value}' is not one of the six ASM files",
         "remove it from the ZIP, or check its name (the asm profile ignores it with a warning)"),
    Code("asm.file.header_only", W, "the file has a header but no rows",
         "an empty file tells Apple that everything in it was removed; check the export"),
    Code("asm.header.missing_column", E, "the header lacks the column '{column}'",
         "use the header row of Apple's template unchanged: {expected}"),
    Code("asm.header.unknown_column", W, "the column '{column}' is not in Apple's template and is ignored",
         "remove the column or check its spelling (headers are lower-case)"),
    Code("asm.header.column_limit", E, "the column '{column}' is outside the range Apple allows",
         "Apple allows {limit}; rename the column or move its values"),
    Code("asm.header.order", W, "the columns are not in Apple's template order",
         "use the template order: {expected}"),
    Code("asm.value.required", E, "a value is required", "fill in {column} on every row"),
    Code("asm.value.invalid_id", E, "is not a valid identifier",
         "identifiers may hold only letters, digits and '-' (no spaces)"),
    Code("asm.value.id_characters", W, "uses '_' or '.', which Apple does not document for identifiers",
         "Apple documents letters, digits and '-'; such ids usually work but are not guaranteed"),
    Code("asm.value.too_long", E, "the value is longer than {limit} characters", "shorten it"),
    Code("asm.value.password_policy", E, "password_policy must be 4, 6, 8 or empty",
         "use 4 (four-digit passcode), 6 (six-digit) or 8 (standard password), or leave it empty"),
    Code("asm.value.duplicate_id", E, "appears more than once in {column}",
         "each row must have its own {column}"),
    Code("asm.value.person_in_both", E, "is used in both students.csv and staff.csv",
         "person_id must be unique across students and staff"),
    Code("asm.value.duplicate_email", W, "the e-mail address is used by more than one person",
         "give every person their own address (required for federated authentication)"),
    Code("asm.value.duplicate_roster", W, "this student is listed in this class more than once",
         "keep one rosters.csv row per class and student"),
    Code("asm.class.too_many_instructors", E, "the class has {count} instructors; Apple allows at most 15",
         "keep at most 15 instructors per class"),
    Code("asm.class.no_instructor", W, "the class has no instructor",
         "add the teacher's person_id in instructor_id, or check the export's teacher assignments"),
    Code("asm.student.no_class", W, "the student is not in any class (no rosters.csv row)",
         "check the export; students without classes are usually a filtering mistake"),
    Code("asm.reference.missing_record", E, "does not reference any {target_column} in {target}",
         "add the record to {target} or correct the value"),
    # -- OneRoster: manifest (oneroster.md §4) ------------------------------------------------
    Code("oneroster.manifest.missing", E, "manifest.csv is missing",
         "every OneRoster upload needs manifest.csv at the root of the ZIP"),
    Code("oneroster.manifest.invalid_header", E, "the manifest header must be 'propertyName,value'",
         "write 'propertyName,value' as the first line"),
    Code("oneroster.manifest.duplicate_property", E, "this property appears more than once",
         "keep one row per property"),
    Code("oneroster.manifest.unknown_property", E, "is not a manifest property of OneRoster {version}",
         "remove the row or correct its spelling (property names are case-sensitive)"),
    Code("oneroster.manifest.missing_property", E, "the manifest lacks '{value}'",
         "add a row '{value},{expected}'"),
    Code("oneroster.manifest.invalid_value", E, "is not a valid value for {property}",
         "use one of: {expected}"),
    Code("oneroster.manifest.version_excel", E, "manifest.version is '1' instead of '1.0'",
         "spreadsheet programs turn 1.0 into 1: edit manifest.csv in a text editor"),
    Code("oneroster.manifest.unsupported_version", E, "is not a supported oneroster.version",
         "use 1.1 or 1.2 (a numbered version other than these is not checked any further)"),
    Code("oneroster.manifest.version_guessed", W,
         "no supported oneroster.version: the upload is checked as OneRoster {value}, because {reason}",
         "write the version in manifest.csv (oneroster.version,{value}) so that nothing has to be guessed"),
    Code("oneroster.manifest.file_missing", E, "manifest.csv marks {value} as '{mode}' but the file is not in the upload",
         "add {value}, or mark it 'absent'"),
    Code("oneroster.manifest.file_unexpected", E, "{value} is in the upload but manifest.csv marks it '{mode}'",
         "mark it 'bulk' or 'delta' in manifest.csv, or leave the file out"),
    # -- OneRoster: files and headers (oneroster.md §1, §2, §6) -------------------------------
    Code("oneroster.file.unknown", E, "'{value}' is not a OneRoster {version} file",
         "remove it from the upload, or check its name (the asm profile ignores it with a warning)"),
    Code("oneroster.file.name_case", E, "the file is named '{value}' but must be '{expected}'",
         "file names are case-sensitive: rename it to {expected}"),
    Code("oneroster.file.no_rows", E, "the file has a header but no data rows",
         "files without data are not permitted: leave the file out and mark it 'absent' in manifest.csv"),
    Code("oneroster.asm.required_file", E, "{value} is required for Apple School Manager",
         "include orgs.csv, users.csv, courses.csv, classes.csv and enrollments.csv"),
    Code("oneroster.header.missing_column", E, "the header lacks the column '{column}'",
         "every defined column must be present, even when empty: {expected}"),
    Code("oneroster.header.column_case", E, "is the column '{column}' with the wrong letter case",
         "header names are case-sensitive"),
    Code("oneroster.header.order", E, "the columns are not in the order the standard defines",
         "use exactly: {expected}"),
    Code("oneroster.header.unknown_column", E, "'{column}' is not a column of {file}",
         "remove it, or name an extension column 'metadata.<name>' and put it after the defined columns"),
    Code("oneroster.header.metadata_position", E, "the extension column '{column}' comes before a defined column",
         "move metadata.* columns to the right of all defined columns"),
    Code("oneroster.header.users_1_2_0", W, "users.csv uses the OneRoster 1.2.0 header (with resourceSourcedIds)",
         "accepted; OneRoster 1.2.1 removed resourceSourcedIds"),
    # -- OneRoster: values (oneroster.md §3, §5, §7) ------------------------------------------
    Code("oneroster.value.required", E, "a value is required", "fill in {column} on every row"),
    Code("oneroster.value.invalid_guid", E, "is not a valid sourcedId",
         "use 1-255 characters from A-Z a-z 0-9 . - _ / @"),
    Code("oneroster.value.invalid_date", E, "is not a date", "write dates as YYYY-MM-DD (e.g. 2026-08-15)"),
    Code("oneroster.value.invalid_datetime", E, "is not an ISO 8601 date-time",
         "write e.g. 2026-08-15T12:00:00.000Z"),
    Code("oneroster.value.impossible_datetime", E, "is not a real date and time (a month, day, hour, minute "
         "or second out of range, or year 0000)", "write a real UTC date-time, e.g. 2026-08-15T12:00:00.000Z"),
    Code("oneroster.value.datetime_loose", W, "is a date-time without the 'T' and time of ISO 8601",
         "accepted in 1.1; write e.g. 2026-08-15T12:00:00.000Z, which every reader takes"),
    Code("oneroster.value.datetime_not_canonical", W, "is not in the canonical form YYYY-MM-DDTHH:MM:SS.sssZ",
         "write UTC with milliseconds, e.g. 2026-08-15T12:00:00.000Z"),
    Code("oneroster.value.invalid_year", E, "is not a four-digit year",
         "write the year in which the school year ends, e.g. 2027"),
    Code("oneroster.value.invalid_boolean", E, "is not 'true' or 'false'", "write true or false in lower case"),
    Code("oneroster.value.boolean_case", E, "must be written in lower case",
         "spreadsheet programs write TRUE/FALSE: use true or false"),
    Code("oneroster.value.invalid_enum", E, "is not an allowed value", "use one of: {expected}"),
    Code("oneroster.value.invalid_number", E, "is not a number", "write a plain decimal number"),
    Code("oneroster.value.invalid_list", E, "the list has an empty item",
         "separate items with single commas and no trailing comma"),
    Code("oneroster.value.padded_list_item", W, "the list has spaces around its items",
         "write lists without spaces after commas, e.g. \"a,b\""),
    Code("oneroster.value.invalid_user_ids", E, "is not a list of {{type:identifier}} items",
         "write e.g. \"{{LDAP:12}},{{LTI:15}}\""),
    Code("oneroster.value.invalid_score_scale", E, "is not a list of {{label:value}} pairs",
         "write e.g. \"{{A:94}},{{B:85}}\" (oneroster.md §7.11)"),
    Code("oneroster.value.invalid_case_id", E, "is not a urn:uuid: identifier, which source 'case' requires",
         "write the CASE item's UUID as urn:uuid:<uuid>, or set source to unknown"),
    Code("oneroster.value.unknown_grade", W, "is not a CEDS grade code",
         "use IT, PR, PK, TK, KG, 01-13, PS, UG or Other"),
    Code("oneroster.value.grade_leading_zero", W, "has lost its leading zero",
         "write {expected}; spreadsheet programs drop the zero when the column is not text"),
    Code("oneroster.value.list_length_mismatch", E, "{column} and {other} have different numbers of items",
         "subjects and subjectCodes are paired item by item"),
    Code("oneroster.value.date_range", W, "{column} is after {other}", "check the dates"),
    Code("oneroster.value.duplicate_sourced_id", E, "appears more than once in sourcedId",
         "every row needs its own sourcedId"),
    Code("oneroster.status.forbidden_in_bulk", E, "{column} must be empty in a bulk file",
         "leave status and dateLastModified empty, or mark the file 'delta' in manifest.csv"),
    Code("oneroster.status.required_in_delta", E, "{column} is required in a delta file",
         "fill in status (active|tobedeleted) and dateLastModified, or mark the file 'bulk'"),
    # -- OneRoster: references and semantics (oneroster.md §8) --------------------------------
    Code("oneroster.reference.missing_target_file", E,
         "refers to {target}, which is not in the upload", "include {target} (and mark it in manifest.csv)"),
    Code("oneroster.reference.missing_record", E, "does not reference any sourcedId in {target}",
         "add the record to {target} or correct the value"),
    Code("oneroster.reference.not_a_school", E, "is an org of type '{org_type}', not 'school'",
         "point {column} at an org of type school"),
    Code("oneroster.reference.not_a_school_year", W, "is an academic session of type '{session_type}', not 'schoolYear'",
         "point schoolYearSourcedId at a session of type schoolYear"),
    Code("oneroster.lineitem.min_above_max", E, "resultValueMin is above resultValueMax",
         "correct the line item's range: the minimum must not exceed the maximum"),
    Code("oneroster.result.score_above_max", E, "the score is above its line item's resultValueMax ({limit})",
         "correct the score or the line item's range"),
    Code("oneroster.result.score_below_min", E, "the score is below its line item's resultValueMin ({limit})",
         "correct the score or the line item's range"),
    Code("oneroster.enrollment.multiple_primary", E, "this class already has a primary teacher",
         "set primary=true for one teacher per class only"),
    Code("oneroster.enrollment.primary_not_teacher", W, "primary=true on a '{role}' enrollment",
         "primary is meaningful for teachers only"),
    Code("oneroster.reference.parent_cycle", W, "following parentSourcedId from here never reaches the top",
         "break the loop: the top-level record must have an empty parentSourcedId"),
    Code("oneroster.roles.primary_org_without_role", E,
         "has no roles.csv row for this user",
         "add a roles.csv row for this user and org, or correct primaryOrgSourcedId"),
    Code("oneroster.roles.profile_of_other_user", E, "this userProfile belongs to another user",
         "point userProfileSourcedId at a profile of the same user (userProfiles.csv userSourcedId)"),
    Code("oneroster.roles.multiple_primary", E, "this user already has a primary role in this org",
         "mark one role per user and org as primary"),
    Code("oneroster.asm.role_unsupported", W, "this role is not imported by Apple School Manager",
         "Apple imports students and teachers only"),
    Code("oneroster.asm.org_type_unsupported", W, "this org type is not used by Apple School Manager",
         "Apple imports orgs of type school and district"),
    Code("oneroster.asm.delta_file", W, "{value} is marked 'delta'",
         "Apple expects a full set (bulk) on every upload"),
    Code("oneroster.asm.invalid_id", E, "would become an Apple School Manager identifier, which it cannot be",
         "Apple's identifiers hold only letters, digits and '-' (no spaces, '@' or '/'): change the sourcedId "
         "in the SIS (it becomes the record's id in Apple School Manager)"),
    Code("oneroster.asm.id_characters", W, "uses '_' or '.', which Apple does not document for identifiers",
         "Apple documents letters, digits and '-'; such ids usually work but are not guaranteed"),
    Code("oneroster.asm.too_long", E, "is longer than the {limit} characters Apple allows in {asm_column}",
         "shorten it in the SIS"),
    # -- conversion to ASM (formats/convert/, docs/mapping.md) ---------------------------------
    Code("convert.missing_file", E, "{file} is not in the upload",
         "add it to the ZIP: a conversion needs orgs.csv and users.csv (OneRoster 1.2 also roles.csv, "
         "ASM input all six files, asm.md §1.1); without courses.csv, classes.csv or enrollments.csv "
         "their ASM files stay empty"),
    Code("convert.missing_column", E, "{file} has no {column} column, which the conversion needs",
         "export {file} with its full OneRoster header (header names are case-sensitive)"),
    Code("convert.unreadable", E, "cannot read {file}: {reason}",
         "fix the problems the validation reports for {file}, then upload again"),
    Code("convert.mapping.missing_column", W,
         "the mapping reads {column}, which {file} does not have, so the value stays empty",
         "correct the column name under [flows.mapping], or export {file} with the column"),
    Code("convert.asm.unknown_column", W, "column {column} is not an ASM column and is left out",
         "remove it, or correct its spelling to a column of Apple's template (headers are lower-case)"),
    Code("convert.asm.missing_column", W, "column {column} is missing and is written empty",
         "add the column of Apple's template to {file} if it should carry values"),
    Code("convert.dropped.location_reference", W,
         "names an org that is not in the output (unknown or deleted), which is ignored: the person keeps "
         "their other locations ({count} such reference(s) in all)",
         "add the org to orgs.csv, or remove it from the user's orgSourcedIds"),
    *(Code(f"convert.dropped.{reason}", W, _DROPPED.format(why=why), hint)
      for reason, (why, hint) in DROP_REASONS.items()),
    Code("convert.dropped.role", W, _DROPPED.format(why=ROLE_DROPPED[0]), ROLE_DROPPED[1], family=True),
)

CATALOGUE: dict[str, Code] = {row.code: row for row in _ROWS}
_FAMILIES: dict[str, Code] = {row.code: row for row in _ROWS if row.family}


def lookup(code: str) -> Code:
    """The catalogue row of ``code``, or of the family it belongs to (``KeyError`` if none)."""
    row = CATALOGUE.get(code)
    if row is not None:
        return row
    for stem, family in _FAMILIES.items():
        if code.startswith(stem + "_") and len(code) > len(stem) + 1:
            return family
    raise KeyError(code)


MAX_VALUE = 200  # a report shows values, but a 3 MB "value" helps nobody


def _clip(text: str | None) -> str | None:
    if text is None or len(text) <= MAX_VALUE:
        return text
    return text[: MAX_VALUE - 1] + "…"


def issue(
    code: str,
    *,
    file: str | None = None,
    line: int | None = None,
    column: str | None = None,
    value: str | None = None,
    severity: Severity | None = None,
    **params: object,
) -> Issue:
    """Build an :class:`Issue` for catalogue ``code`` (``KeyError`` if unknown; see :func:`lookup`)."""
    row = lookup(code)
    value = _clip(value)
    column = _clip(column)
    fields = _Lenient(row.defaults)
    fields.update({k: _clip(v) if isinstance(v, str) else v for k, v in params.items() if v is not None})
    fields.update(file=file or "upload", column=column or "?", value="" if value is None else value)
    hint = row.hint.format_map(fields)
    return Issue(
        severity=severity or row.severity,
        code=code,
        message=f"{row.template.format_map(fields)}; {hint}",
        file=file,
        line=line,
        column=column,
        value=value,
        hint=hint,
    )
