"""A worker's first run, made before any upload: a small made-up district through :func:`prepare`.

Importing the format code is not all a first run pays for: Arrow's compute kernels, pandas'
dispatch tables and our own cached lookups are set up on first use, and that made the first
upload after a start about 0.2 s slower than the next ones (20,000 students: 0.81 s against
0.62 s, ``bench/bench_latency.py``). The daemon's workers call :func:`warm_up` as they start
(``WorkerPool(preload=...)``), so that cost is paid there, not by the first district.

The district is made up (no person's data): one school, two classes, a teacher and
:data:`STUDENTS` students, OneRoster 1.1 (oneroster.md §4 manifest, §5 bulk files), converted to ASM.
"""

from __future__ import annotations

import tempfile
import zipfile
from pathlib import Path

import structlog

from rostergate.intake import SPOOL_DIR, UPLOAD_NAME
from rostergate.runs.stages import Prepared, prepare

log = structlog.get_logger("rostergate.workers")
_RUN_ID = "20000101-000000-000000"

#: students in the warm-up district: enough rows that pyarrow parses with its threads, as for a real
#: upload (a handful of rows left the first real run of 20,000 students 0.05-0.1 s slower)
STUDENTS = 15_000


def district(students: int = STUDENTS) -> dict[str, str]:
    """The made-up district: file name -> CSV text (a teacher, ``students`` students, two classes)."""
    users = ("sourcedId,status,dateLastModified,enabledUser,orgSourcedIds,role,username,userIds,givenName,"
             "familyName,middleName,identifier,email,sms,phone,agentSourcedIds,grades,password\n"
             "w-t1,,,true,w-sch,teacher,wteach,,Warm,Teacher,,9001,,,,,,\n"
             + "".join(f"w-s{i},,,true,w-sch,student,ws{i},,Warm,Student {i},,{10000 + i},,,,,09,\n"
                       for i in range(students)))
    enrollments = ("sourcedId,status,dateLastModified,classSourcedId,schoolSourcedId,userSourcedId,role,"
                   "primary,beginDate,endDate\n"
                   "w-e1,,,w-c1,w-sch,w-t1,teacher,true,,\nw-e2,,,w-c2,w-sch,w-t1,teacher,false,,\n"
                   + "".join(f"w-e{i}-{c},,,w-c{c},w-sch,w-s{i},student,false,,\n"
                             for i in range(students) for c in (1, 2)))
    return {**_FIXED, "users.csv": users, "enrollments.csv": enrollments}


_FIXED: dict[str, str] = {
    "manifest.csv": "propertyName,value\nmanifest.version,1.0\noneroster.version,1.1\n"
                    + "".join(f"file.{name},{mode}\n" for name, mode in (
                        ("academicSessions", "bulk"), ("categories", "absent"), ("classes", "bulk"),
                        ("classResources", "absent"), ("courses", "bulk"), ("courseResources", "absent"),
                        ("demographics", "absent"), ("enrollments", "bulk"), ("lineItems", "absent"),
                        ("orgs", "bulk"), ("resources", "absent"), ("results", "absent"), ("users", "bulk"))),
    "academicSessions.csv": "sourcedId,status,dateLastModified,title,type,startDate,endDate,parentSourcedId,"
                            "schoolYear\nw-year,,,2000-2001,schoolYear,2000-08-15,2001-06-30,,2001\n",
    "orgs.csv": "sourcedId,status,dateLastModified,name,type,identifier,parentSourcedId\n"
                "w-dist,,,Warm District,district,,\nw-sch,,,Warm School,school,W1,w-dist\n",
    "courses.csv": "sourcedId,status,dateLastModified,schoolYearSourcedId,title,courseCode,grades,orgSourcedId,"
                   "subjects,subjectCodes\nw-crs,,,w-year,Warm Course,WC1,09,w-sch,,\n",
    "classes.csv": "sourcedId,status,dateLastModified,title,grades,courseSourcedId,classCode,classType,location,"
                   "schoolSourcedId,termSourcedIds,subjects,subjectCodes,periods\n"
                   "w-c1,,,Warm Class 1,09,w-crs,WC1-1,scheduled,,w-sch,w-year,,,1\n"
                   "w-c2,,,Warm Class 2,09,w-crs,WC1-2,scheduled,,w-sch,w-year,,,2\n",
}


def warm_up() -> Prepared | None:
    """Run :func:`district` through :func:`prepare` in a private temporary folder (removed after); its result.

    Best effort: a warm-up that fails (no room in the temporary folder, say) is logged and
    costs the first real run its speed, never the worker (``None``).
    """
    try:
        with tempfile.TemporaryDirectory(prefix="rostergate-warm-up-") as tmp:
            run_dir = Path(tmp) / SPOOL_DIR / _RUN_ID
            run_dir.mkdir(parents=True)
            upload = run_dir / UPLOAD_NAME
            with zipfile.ZipFile(upload, "w", compression=zipfile.ZIP_DEFLATED) as archive:
                for name, text in district().items():
                    archive.writestr(name, text)
            return prepare(str(run_dir), str(upload), "oneroster", "asm", "strict")
    except Exception as exc:  # noqa: BLE001 - whatever it was, the worker works without the warm-up
        log.warning("worker_warm_up_failed", error=type(exc).__name__, detail=str(exc)[:200])
        return None
