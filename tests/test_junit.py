"""The JUnit report as test-report tools read it: a notebook nbci failed on, and a run nbci failed in."""

from __future__ import annotations

from junitparser import Error, Failure, JUnitXml, TestSuite

from nbci.report.junit import junit_bytes
from nbci.results import CellError, NotebookResult, RunResult


def test_what_nbci_itself_failed_on_is_an_error_not_a_failure(tmp_path) -> None:
    run = RunResult([NotebookResult("a.ipynb", "error", error=CellError("NbciInternalError", "copy unreadable")),
                     NotebookResult("b.ipynb", "failed", error=CellError("ValueError", "bad")),
                     NotebookResult("c.ipynb", "passed")], problems=["internal error: KeyError: 'x'", "bad\udcff"])
    path = tmp_path / "junit.xml"
    path.write_bytes(junit_bytes(run))
    parsed = JUnitXml.fromfile(str(path))
    suite = parsed if isinstance(parsed, TestSuite) else next(iter(parsed))
    assert (suite.tests, suite.failures, suite.errors) == (4, 1, 2)
    cases = {case.name: case for case in suite}
    [error] = cases["a.ipynb"].result
    assert isinstance(error, Error) and error.message == "NbciInternalError: copy unreadable"
    assert isinstance(cases["b.ipynb"].result[0], Failure)
    [nbci] = cases["nbci"].result
    assert isinstance(nbci, Error) and nbci.message == "nbci failed: 2 internal problems"
    assert nbci.text == "internal error: KeyError: 'x'\nbad\ufffd"
