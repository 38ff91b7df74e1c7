"""Gradebook semantics (oneroster.md §7.11, §8): every score outside its line item's range is reported."""

from __future__ import annotations

from rostergate.formats.validate.entry import validate_dir
from tests.formats.conformance.packages import minimal, with_gradebook, write


def test_every_score_above_its_line_items_maximum_is_reported_whatever_the_limits(tmp_path):
    package = with_gradebook(minimal("1.2"))
    item, result = package.tables["lineItems.csv"][0], package.tables["results.csv"][0]
    package.tables["lineItems.csv"] = [{**item, "sourcedId": f"li{n}", "resultValueMax": str(10 + n)}
                                       for n in range(12)]
    package.tables["results.csv"] = [{**result, "sourcedId": f"res{n}", "lineItemSourcedId": f"li{n}",
                                      "score": str(11 + n)} for n in range(12)]
    package.tables["lineItemLearningObjectiveIds.csv"][0]["lineItemSourcedId"] = "li0"
    result = validate_dir(write(package, tmp_path / "u"))
    above = [i for i in result.issues if i.code == "oneroster.result.score_above_max"]
    assert sorted(i.line for i in above) == list(range(2, 14))  # all twelve, one line each
    assert {i.code for i in result.issues} == {"oneroster.result.score_above_max"}
    assert "(10)" in next(i.message for i in above if i.line == 2)
