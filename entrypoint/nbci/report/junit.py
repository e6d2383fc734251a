"""JUnit XML: one testcase per notebook, for CI systems and test-report viewers.

Each testcase names its notebook in ``name`` and ``file`` (the path from the working directory, which
GitLab's test report shows as the file and links to when it is the repository root).

A notebook that did not pass has a ``failure`` whose message is ``ename: evalue`` and whose type is
its status, the traceback as its text, and the failing cell's source in the testcase's
``system-out``; one nbci itself failed on (status ``error``) has an ``error`` instead. A notebook whose
outputs changed (``--check-outputs``) has a ``failure`` of type ``OutputMismatch`` listing each changed
output's diff in fail mode, and a property ``nbci.outputs_changed`` saying which cells in warn mode. When nbci
failed in the run (``RunResult.problems``), a last testcase named ``nbci`` carries an ``error``
listing the problems, so no report reader shows the run as green. Characters XML cannot hold (control characters a notebook may print) are replaced,
so every reader (GitLab, Jenkins, the GitHub test-report actions) can parse the file.
"""

from __future__ import annotations

import json
import re
from xml.etree import ElementTree as ET

from nbci.report import changed_note, changes, diff_lines, difference_title, problems_headline
from nbci.results import ERROR, OK_STATUSES, NotebookResult, RunResult

DIFF_LINES = 40  # of each changed output's diff
DIFF_CHARS = 1000  # of a diff line
NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def xml_text(text: str) -> str:
    """``text`` with every character XML 1.0 cannot carry replaced by U+FFFD."""
    return NOT_XML.sub("\ufffd", text)


def junit_xml(run: RunResult) -> ET.ElementTree:
    """A ``testsuite`` with a ``testcase`` per notebook; non-passing ones carry a failure."""
    summary = run.summary()
    errors = summary["statuses"].get(ERROR, 0)
    suite = ET.Element("testsuite", name="nbci", tests=str(summary["total"] + bool(run.problems)),
                       failures=str(summary["failed"] - errors), errors=str(errors + bool(run.problems)),
                       skipped=str(summary["skipped"]), time=f"{run.duration:.3f}")
    for result in run.notebooks:
        case = ET.SubElement(suite, "testcase", classname="notebooks", name=xml_text(result.path),
                             file=xml_text(result.path), time=f"{result.duration:.3f}")
        if result.cached_from:
            properties = ET.SubElement(case, "properties")
            ET.SubElement(properties, "property", name="nbci.cached_from", value=json.dumps(result.cached_from))
        if result.skip_reason:
            ET.SubElement(case, "skipped", message=xml_text(result.skip_reason[:1000]))
        if changes(result) and result.error is None:
            add_changes(case, result)
            continue
        if result.status in OK_STATUSES:
            continue
        error = result.error
        message = error.message if error else result.status
        kind = "error" if result.status == ERROR else "failure"
        failure = ET.SubElement(case, kind, message=xml_text(message[:1000]), type=result.status)
        failure.text = xml_text("\n".join(error.traceback) if error and error.traceback else message)
        if error and error.source:
            ET.SubElement(case, "system-out").text = xml_text(f"{error.cell_name}:\n{error.source}")
    if run.problems:
        case = ET.SubElement(suite, "testcase", classname="nbci", name="nbci", time="0.000")
        ET.SubElement(case, "error", message=problems_headline(run), type="nbci").text = xml_text("\n".join(run.problems))
    return ET.ElementTree(suite)


def add_changes(case: ET.Element, result: NotebookResult) -> None:
    """A failure of type ``OutputMismatch`` with each changed output's diff, or, where the notebook
    passed (``--check-outputs warn``), a property saying which outputs changed."""
    note = xml_text(changed_note(result)[:1000])
    if result.ok:
        properties = case.find("properties")
        properties = ET.SubElement(case, "properties") if properties is None else properties
        ET.SubElement(properties, "property", name="nbci.outputs_changed", value=note)
        return
    failure = ET.SubElement(case, "failure", message=note, type="OutputMismatch")
    failure.text = xml_text("\n\n".join("\n".join([f"{difference_title(difference)} (- committed, + fresh)",
                                                    *diff_lines(difference, DIFF_LINES, DIFF_CHARS)])
                                        for difference in changes(result)))


def junit_bytes(run: RunResult) -> bytes:
    """The JUnit XML document, encoded."""
    return ET.tostring(junit_xml(run).getroot(), encoding="utf-8", xml_declaration=True)
