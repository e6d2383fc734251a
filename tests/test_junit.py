"""The JUnit report as test-report tools read it: a notebook nbci failed on, and a run nbci failed in."""

from __future__ import annotations

from junitparser import Error, Failure, JUnitXml, TestSuite

from nbci.report.junit import junit_bytes
from nbci.results import CellError, NotebookResult, OutputCheck, OutputDifference, RunResult


def read_suite(run: RunResult, folder) -> TestSuite:
    """``run``'s JUnit file as a test-report reader parses it."""
    path = folder / "junit.xml"
    path.write_bytes(junit_bytes(run))
    parsed = JUnitXml.fromfile(str(path))
    return parsed if isinstance(parsed, TestSuite) else next(iter(parsed))


def test_what_nbci_itself_failed_on_is_an_error_not_a_failure(tmp_path) -> None:
    run = RunResult([NotebookResult("a.ipynb", "error", error=CellError("NbciInternalError", "copy unreadable")),
                     NotebookResult("b.ipynb", "failed", error=CellError("ValueError", "bad")),
                     NotebookResult("c.ipynb", "passed")], problems=["internal error: KeyError: 'x'", "bad\udcff"])
    suite = read_suite(run, tmp_path)
    assert (suite.tests, suite.failures, suite.errors) == (4, 1, 2)
    cases = {case.name: case for case in suite}
    [error] = cases["a.ipynb"].result
    assert isinstance(error, Error) and error.message == "NbciInternalError: copy unreadable"
    assert isinstance(cases["b.ipynb"].result[0], Failure)
    [nbci] = cases["nbci"].result
    assert isinstance(nbci, Error) and nbci.message == "nbci failed: 2 internal problems"
    assert nbci.text == "internal error: KeyError: 'x'\nbad\ufffd"


def test_changed_outputs_fail_as_output_mismatch_or_are_a_property_when_they_warn(tmp_path) -> None:
    def changed(path: str, mode: str) -> NotebookResult:
        difference = OutputDifference(2, "cell 3 (code cell 2)", "stdout", "changed", "42\x07", "43")
        return NotebookResult(path, "changed", output_check=OutputCheck(mode, 2, [difference]))

    suite = read_suite(RunResult([changed("strict.ipynb", "fail"), changed("lax.ipynb", "warn")]), tmp_path)
    assert (suite.tests, suite.failures, suite.errors) == (2, 1, 0)
    cases = {case.name: case for case in suite}
    [failure] = cases["strict.ipynb"].result
    assert isinstance(failure, Failure) and failure.type == "OutputMismatch"
    assert failure.message == "outputs changed in 1 cell (of 2 compared), first cell 3 (code cell 2)"
    assert failure.text == "cell 3 (code cell 2): stdout changed (- committed, + fresh)\n@@ -1 +1 @@\n-42\ufffd\n+43"
    assert cases["lax.ipynb"].result == []
    [prop] = cases["lax.ipynb"]._elem.findall("properties/property")
    assert (prop.get("name"), prop.get("value")) == ("nbci.outputs_changed", failure.message)
