"""JUnit XML: one testcase per notebook, for CI systems and test-report viewers."""

from __future__ import annotations

from xml.etree import ElementTree as ET

import json

from nbci.results import OK_STATUSES, RunResult


def junit_xml(run: RunResult) -> ET.ElementTree:
    """A ``testsuite`` with a ``testcase`` per notebook; non-passing ones carry a failure or error."""
    summary = run.summary()
    suite = ET.Element("testsuite", name="nbci", tests=str(summary["total"]), failures=str(summary["failed"]),
                       errors="0", skipped="0", time=f"{run.duration:.3f}")
    for result in run.notebooks:
        case = ET.SubElement(suite, "testcase", classname="notebooks", name=result.path,
                             time=f"{result.duration:.3f}")
        if result.cached_from:
            properties = ET.SubElement(case, "properties")
            ET.SubElement(properties, "property", name="nbci.cached_from", value=json.dumps(result.cached_from))
        if result.status in OK_STATUSES:
            continue
        error = result.error
        message = f"{result.status}: {error.ename}: {error.evalue}" if error else result.status
        failure = ET.SubElement(case, "failure", message=message[:1000], type=result.status)
        failure.text = "\n".join(error.traceback) if error and error.traceback else message
    return ET.ElementTree(suite)


def junit_bytes(run: RunResult) -> bytes:
    """The JUnit XML document, encoded."""
    return ET.tostring(junit_xml(run).getroot(), encoding="utf-8", xml_declaration=True)
