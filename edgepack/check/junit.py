"""``--junit FILE``: one test case per target × budget (and regression threshold).

CI systems (GitHub Actions reporters, GitLab, Jenkins, Azure) render JUnit XML natively, so a
failed budget shows up as a failed test named ``android.max_size_kb`` whose message carries the
measured figure and the limit. A budget that could not be judged here is a *skipped* case with
its reason, never a pass.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

from edgepack.check.baseline import write_atomically
from edgepack.check.results import CheckRun, Row, TargetCheck


def junit_xml(run: CheckRun) -> str:
    suites = ET.Element("testsuites", name="edgepack check")
    for target in run.targets:
        suites.append(_suite(target))
    _count(suites, run.rows)
    ET.indent(suites)
    return ET.tostring(suites, encoding="unicode", xml_declaration=True) + "\n"


def write_junit(run: CheckRun, path: Path) -> None:
    write_atomically(path, junit_xml(run), "--junit")


def _suite(target: TargetCheck) -> ET.Element:
    suite = ET.Element("testsuite", name=f"edgepack.{target.name}")
    properties = ET.SubElement(suite, "properties")
    facts = {
        "profile": target.profile,
        "artifact": target.artifact,
        "raw_bytes": str(target.sizes.raw_bytes),
        "compressed_bytes": str(target.sizes.compressed_bytes),
        "size_counts": target.size_counts,
    }
    for name, value in facts.items():
        ET.SubElement(properties, "property", name=name, value=value)
    for row in target.rows:
        suite.append(_case(row))
    _count(suite, list(target.rows))
    return suite


def _case(row: Row) -> ET.Element:
    case = ET.Element("testcase", classname=f"edgepack.{row.target}", name=row.name)
    message = message_for(row)
    if row.status == "fail":
        ET.SubElement(case, "failure", message=message, type=row.kind).text = message
    elif row.status == "skipped":
        ET.SubElement(case, "skipped", message=message)
    else:
        ET.SubElement(case, "system-out").text = message
    return case


def message_for(row: Row) -> str:
    """``size 147.2 KB, limit ≤ 150 KB (baseline 140 KB, +5.1%)``: the figure and the limit."""
    what = "regression" if row.kind == "regression" else "budget"
    text = f"{row.target} {row.name}: {row.measured_text()}, {what} {row.limit_text()}"
    if row.baseline is not None and row.measured is not None:
        text += f" (baseline {row.baseline_text()}, {row.delta_text()})"
    if row.note:
        text += f"; {row.note}"
    return text


def _count(element: ET.Element, rows: list[Row]) -> None:
    element.set("tests", str(len(rows)))
    element.set("failures", str(sum(row.status == "fail" for row in rows)))
    element.set("skipped", str(sum(row.status == "skipped" for row in rows)))
    element.set("errors", "0")
