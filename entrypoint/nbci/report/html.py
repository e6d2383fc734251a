"""The run as a small static site (``--html``): a page per executed notebook, and ``index.html``.

Pages are rendered with nbconvert's HTML exporter (JupyterLab's look, nbci's template in
``templates/nbci``) in worker processes started at the run's beginning, at low priority, while the
run goes on; the coordinating process only hands over paths and writes the index at the end.
Notebooks are untrusted: pages are sanitized (``page.py``), run no script and fetch nothing; the
index is built here from escaped text, with relative links only, so the site works from ``file://``
and on GitHub Pages alike. A run nbci itself failed in says so at the top of the index.

With ``--check-outputs``, a changed cell shows its committed and fresh outputs as a diff, images
side by side (``output_diff.py``); the first one is the page's ``#changed``, and the index counts
each notebook's changed cells.
"""

from __future__ import annotations

import datetime
import html
import multiprocessing
import os
import posixpath
import signal
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional

from nbci import INSTALL_FOLDER
from nbci.config import Config
from nbci.files import ensure_folder, write_atomic
from nbci.kernels import runner_files_hidden
from nbci.report import Reporter, changed_count, changed_note, changes, masked_note, printable, problems_headline
from nbci.code_coverage import closing_line
from nbci.results import NotebookResult, OutputDifference, RunResult
from nbci.text import clip, counted
from nbci.text_notebooks import copy_name

TEMPLATES = Path(__file__).parent / "templates"
INDEX = "index.html"
RENDER_WAIT = 60.0  # seconds the index waits for pages still rendering, plus RENDER_WAIT_PER_PAGE each
RENDER_WAIT_PER_PAGE = 5.0
# Marks from fonts every system has (emoji may be missing on a CI machine or an old phone).
STATUS_MARKS = {"passed": "✓", "cached": "✓", "flaky": "⚠", "skipped": "–", "invalid": "⚠", "cancelled": "■", "changed": "≠"}  # else ✗


def mark(status: str) -> str:
    return STATUS_MARKS.get(status, "✗")


@dataclass
class Page:
    """What one notebook's page is made from: its executed copy, where the page goes, its banner."""

    copy: str  # absolute path of the executed copy
    target: str  # absolute path of the page
    output_dir: str  # the run's output folder, which holds the page
    root: str  # the run's root: a Markdown image is embedded only from inside it
    folder: str  # the notebook's folder, relative to the root: where its Markdown images are
    banner: Dict[str, Any] = field(default_factory=dict)  # status, path, failure, hrefs
    failing_cell: Optional[int] = None
    failure: Optional[str] = None  # "cell 3 (code cell 2): ValueError: bad"
    source: str = ""  # the notebook, relative to the root: where its committed outputs are
    changes: List[OutputDifference] = field(default_factory=list)  # outputs that differ from the committed ones


def page_path(config: Config, notebook_path: str) -> Path:
    """Where a notebook's page goes, beside its executed copy: ``a/b.ipynb`` -> ``OUTPUT_DIR/a/b.html``,
    ``a.py`` -> ``a.py.html`` (``a.py.text.html`` beside an ``a.py.ipynb``); never over index.html."""
    stem = copy_name(notebook_path, config.copy_names)[: -len(".ipynb")]
    name = f"{stem}.html"
    if name == INDEX:
        name = f"{notebook_path}.html"
    return config.output_dir / name


def href(target: Path, base: Path) -> str:
    """A relative link from a page in ``base`` to ``target``, each path segment percent-encoded
    (a file name's bytes that are not UTF-8 as themselves, so the link finds the file)."""
    relative = Path(os.path.relpath(target, base)).as_posix()
    return "/".join(urllib.parse.quote(part, safe="", errors="surrogateescape") for part in relative.split("/"))


def failure_text(result: NotebookResult) -> Optional[str]:
    """``cell 3 (code cell 2): ValueError: bad value``, clipped; None when the result has no error."""
    error = result.error
    if error is None:
        return None
    where = f"{error.cell_name}: " if error.cell_name else ""
    return clip(f"{where}{error.message}".replace("\n", " "), 300)


def copy_path(config: Config, result: NotebookResult) -> Optional[Path]:
    """The executed copy of ``result`` on disk, or None when there is none."""
    if not result.output_path:
        return None
    path = Path(result.output_path)
    return path if path.is_absolute() else config.root / path


class HtmlReporter(Reporter):
    """Renders a page as each notebook finishes; writes ``index.html`` when the run is over."""

    name = "the HTML report"

    def __init__(self, config: Config, environ: Mapping[str, str]) -> None:
        self.config = config
        self.environ = environ
        self.started = datetime.datetime.now(datetime.timezone.utc)
        self._pool = None
        self._pending: Dict[str, Any] = {}  # notebook path -> AsyncResult of its page
        self.problems: Dict[str, str] = {}  # notebook path -> why its page is missing

    def run_started(self, paths: List[str], config: Config) -> None:
        """Start the render workers now, before any thread or helper exists, from ``INSTALL_FOLDER``
        (multiprocessing starts them in the current folder, which is the repository's), without the
        runner's files in their environment (and their resource tracker's), where kernels could read them."""
        if not paths:
            return
        context = multiprocessing.get_context("spawn")
        here = os.getcwd()
        os.chdir(INSTALL_FOLDER)
        try:
            with runner_files_hidden():
                self._pool = context.Pool(max(1, min(4, self.config.jobs // 4)), initializer=quiet_worker)
        finally:
            os.chdir(here)

    def notebook_finished(self, result: NotebookResult, log: str) -> None:
        copy = copy_path(self.config, result)
        if copy is None or self._pool is None:
            return
        target = page_path(self.config, result.path)
        failure = failure_text(result)
        banner = {"status": f"{mark(result.status)} {result.status}", "path": result.path, "bad": not result.ok,
                  "failure": failure, "changed": changed_note(result) or None, "index_href": href(self.config.output_dir / INDEX, target.parent),
                  "ipynb_href": href(copy, target.parent)}
        page = Page(str(copy), str(target), str(self.config.output_dir), str(self.config.root),
                    posixpath.dirname(result.path), banner, result.error.cell_index if result.error else None, failure,
                    result.path, changes(result))
        self._pending[result.path] = self._pool.apply_async(render_page, (page,))

    def run_finished(self, run: RunResult, config: Config) -> None:
        pages = self._collect()
        write_atomic(config.output_dir / INDEX, index_html(run, config, pages, self.problems, self.environ,
                                                           self.started))

    def _collect(self) -> Dict[str, Path]:
        """Wait (bounded) for the pages; the notebooks whose page exists, by path."""
        deadline = time.monotonic() + RENDER_WAIT + RENDER_WAIT_PER_PAGE * len(self._pending)
        pages: Dict[str, Path] = {}
        for path, pending in self._pending.items():
            try:
                problem = pending.get(max(0.0, deadline - time.monotonic()))
            except multiprocessing.TimeoutError:
                problem = "rendering took too long and was stopped"
            except Exception as exc:  # a worker that died, or a bug in nbconvert
                problem = f"{type(exc).__name__}: {exc}"
            if problem:
                self.problems[path] = clip(problem.replace("\n", " "), 300)
            else:
                pages[path] = page_path(self.config, path)
        if self._pool is not None:
            self._pool.terminate()
            self._pool.join()
        return pages


def quiet_worker() -> None:
    """A render worker: low priority, deaf to the terminal's Ctrl-C (nbci decides), silent."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        os.nice(10)
    except (AttributeError, OSError):
        pass
    devnull = os.open(os.devnull, os.O_WRONLY)
    for fd in (1, 2):
        os.dup2(devnull, fd)


_EXPORTER = None  # one per worker process: building it (templates, filters) costs more than a page


def exporter():
    """This worker's HTML exporter (``page.PageExporter``), with nbci's template, sanitizing."""
    global _EXPORTER
    if _EXPORTER is None:
        from nbci.report.page import PageExporter

        _EXPORTER = PageExporter(template_name="nbci", extra_template_basedirs=[str(TEMPLATES)],
                                 sanitize_html=True, embed_images=True)
    return _EXPORTER


def render_page(page: Page) -> Optional[str]:
    """Write ``page.target`` from the executed copy; None when done, else why not (one line)."""
    try:
        import nbformat

        nb = nbformat.read(page.copy, as_version=4)
        mark_cells(nb, page)
        resources = {"metadata": {"name": Path(page.copy).stem}, "nbci": {"root": page.root, "folder": page.folder}}
        body, _ = exporter().from_notebook_node(nb, resources=resources)
        target = Path(page.target)
        ensure_folder(target.parent, Path(page.output_dir))
        write_atomic(target, printable(body))
    except Exception as exc:  # whatever the notebook holds, the run goes on
        return f"{type(exc).__name__}: {exc}"
    return None


def mark_cells(nb: Any, page: Page) -> None:
    """Put what the template shows into the copy's metadata, after dropping what the notebook put there,
    and keep of each output's metadata only what the template may safely read."""
    from nbci.report.output_diff import page_changes
    from nbci.report.page import page_metadata

    nb.metadata["nbci_page"] = page.banner
    changed = page_changes(page.changes, nb.cells, page.root, page.source) if page.changes else {}
    for index, cell in enumerate(nb.cells):
        for output in cell.get("outputs", []):
            output.pop("svg_filename", None)
            output["metadata"] = page_metadata(output.get("metadata"))
        mark: Dict[str, Any] = {}
        if index == page.failing_cell:
            mark["failure"] = page.failure or "this cell failed"
        if index in changed:
            mark["changed"] = changed[index]
        seconds = cell_seconds(cell.get("metadata", {}).get("execution"))
        if cell.get("cell_type") == "code" and seconds is not None:
            mark["seconds"] = f"{seconds:.2f} s"
        cell.setdefault("metadata", {})["nbci"] = mark


def cell_seconds(execution: Any) -> Optional[float]:
    """A code cell's run time from nbclient's timing metadata, or None when unknown."""
    if not isinstance(execution, dict):
        return None
    try:
        start = datetime.datetime.fromisoformat(str(execution["iopub.execute_input"]).replace("Z", "+00:00"))
        end = datetime.datetime.fromisoformat(str(execution["shell.execute_reply"]).replace("Z", "+00:00"))
    except (KeyError, ValueError, TypeError):
        return None
    seconds = (end - start).total_seconds()
    return seconds if seconds >= 0 else None


# --- index.html ---------------------------------------------------------------------------------


def index_html(run: RunResult, config: Config, pages: Dict[str, Path], problems: Dict[str, str],
               environ: Mapping[str, str], started: datetime.datetime) -> str:
    """The site's front page: the run's headline, then one row per notebook, failures first."""
    summary = run.summary()
    failed = summary["failed"]
    icon = "✓" if run.ok else "✗"
    headline = (f"{failed} of {counted(summary['total'], 'notebook')} did not pass" if failed
                else f"{counted(summary['passed'], 'notebook')} passed"
                + (f", {summary['skipped']} skipped" if summary["skipped"] else ""))
    if summary["changed"]:
        headline += f"; {changed_count(summary['changed'])}"
    if run.problems:
        headline = f"{problems_headline(run)}" + (f"; {headline}" if failed else "")
    counts = ", ".join(f"{n} {status}" for status, n in summary["statuses"].items()) or "none run"
    when = started.strftime("%Y-%m-%d %H:%M UTC")
    rows = sorted(run.notebooks, key=lambda nb: (nb.ok, not changes(nb), nb.path))
    body = "\n".join(index_row(nb, config, pages.get(nb.path), problems.get(nb.path)) for nb in rows)
    e = html.escape
    problems = "".join(f"<li>{e(clip(problem, 1000))}</li>" for problem in run.problems)
    coverage = coverage_html(run)
    return printable(f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="color-scheme" content="light dark">
<title>{e(icon)} nbci: {e(headline)}</title>
<style>{INDEX_CSS}</style>
</head>
<body>
<header>
<h1>{e(icon)} {e(headline)}</h1>
<p class="meta">{e(counts)} &middot; {summary['duration']:.1f} s{' &middot; cancelled' if run.cancelled else ''}
 &middot; {e(when)}{github_links(environ)}</p>
{f'<ul class="problems">{problems}</ul>' if problems else ""}
{coverage}
</header>
<main>
<table>
<thead><tr><th>Status</th><th>Notebook</th><th>Duration</th><th>Peak memory</th><th>Copy</th></tr></thead>
<tbody>
{body}
</tbody>
</table>
</main>
<footer><p>Executed copies, <a href="results.json">results.json</a> and <a href="junit.xml">junit.xml</a> are in this folder.
Pages show each notebook as run; they load nothing from the network and run no script (math shows as its LaTeX source).</p></footer>
</body>
</html>
""")


def coverage_html(run: RunResult) -> str:
    """The front page's coverage line, linking the coverage report; "" without ``--coverage``."""
    if run.coverage is None:
        return ""
    line = html.escape(closing_line(run.coverage))
    return f'<p class="meta"><a href="coverage/index.html">{line}</a></p>' if "html" in run.coverage.get("reports", {}) \
        else f'<p class="meta">{line}</p>'


def index_row(result: NotebookResult, config: Config, page: Optional[Path], problem: Optional[str]) -> str:
    e = html.escape
    icon = mark(result.status)
    name = e(result.path)
    if page is not None:
        name = f'<a href="{e(href(page, config.output_dir) + anchor(result))}">{name}</a>'
    detail = failure_text(result) if not result.ok else result.skip_reason and clip(f"skipped: {result.skip_reason}", 300)
    notes = [e(detail)] if detail else []
    notes += [e(changed_note(result))] if changes(result) else []
    notes += [e(masked_note(result))] if result.masked else []
    notes += [f"no page: {e(problem)}"] if problem else []
    extra = f'<div class="detail">{"<br>".join(notes)}</div>' if notes else ""
    copy = copy_path(config, result)
    copy_link = f'<a href="{e(href(copy, config.output_dir))}">.ipynb</a>' if copy is not None else ""
    memory = f"{result.peak_rss / 2**20:.0f} MiB" if result.peak_rss else ""
    status_class = "bad" if not result.ok else "changed" if changes(result) else "ok"
    return (f'<tr class="{status_class}"><td class="status">{e(icon)} {e(result.status)}</td>'
            f"<td>{name}{extra}</td><td class=\"num\">{result.duration:.1f} s</td>"
            f'<td class="num">{memory}</td><td>{copy_link}</td></tr>')


def anchor(result: NotebookResult) -> str:
    """Where a row's link lands on the notebook's page: the failing cell, else the first changed one."""
    if not result.ok and result.error and result.error.cell_index is not None:
        return "#failure"
    return "#changed" if changes(result) else ""


def github_links(environ: Mapping[str, str]) -> str:
    """`` · commit 1a2b3c4 · run 42`` linked on the server, when nbci runs in GitHub Actions."""
    server, repo = environ.get("GITHUB_SERVER_URL", ""), environ.get("GITHUB_REPOSITORY", "")
    if not server.startswith("https://") or not repo:
        return ""
    e = html.escape
    base = f"{server}/{repo}"
    parts = []
    sha = environ.get("GITHUB_SHA", "")
    if sha:
        parts.append(f'commit <a href="{e(base)}/commit/{e(urllib.parse.quote(sha))}">{e(sha[:7])}</a>')
    run_id = environ.get("GITHUB_RUN_ID", "")
    if run_id:
        parts.append(f'<a href="{e(base)}/actions/runs/{e(urllib.parse.quote(run_id))}">run {e(run_id)}</a>')
    return "".join(f" &middot; {part}" for part in parts)


INDEX_CSS = """
:root { color-scheme: light dark; --fg: #1f2328; --bg: #fff; --muted: #59636e; --line: #d1d9e0;
  --bad-bg: #ffebe9; --bad-fg: #82071e; --changed-bg: #fff8c5; --changed-fg: #7d4e00; --link: #0969da; }
@media (prefers-color-scheme: dark) {
  :root { --fg: #e6edf3; --bg: #0d1117; --muted: #9198a1; --line: #3d444d; --bad-bg: #3c1618;
    --bad-fg: #ffa198; --changed-bg: #2e2a12; --changed-fg: #e3b341; --link: #4493f8; }
}
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; color: var(--fg); background: var(--bg);
  margin: 0 auto; padding: 1rem; max-width: 70rem; line-height: 1.45; }
h1 { font-size: 1.4rem; margin: 0.2rem 0; overflow-wrap: anywhere; }
a { color: var(--link); }
.meta, footer { color: var(--muted); font-size: 0.9rem; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; padding: 0.45rem 0.5rem; border-bottom: 1px solid var(--line); vertical-align: top; }
td { overflow-wrap: anywhere; }
tr.bad { background: var(--bad-bg); }
tr.bad .status, .detail, .problems { color: var(--bad-fg); }
tr.changed { background: var(--changed-bg); }
tr.changed .status, tr.changed .detail { color: var(--changed-fg); }
.detail { font-size: 0.85rem; margin-top: 0.2rem; }
.num { text-align: right; white-space: nowrap; }
.status { white-space: nowrap; }
@media (max-width: 40rem) {
  thead { display: none; }
  table, tbody, tr, td { display: block; width: auto; }
  tr { border-bottom: 1px solid var(--line); padding: 0.4rem 0; }
  td { border: none; padding: 0.1rem 0.3rem; }
  .num { text-align: left; }
}
"""
