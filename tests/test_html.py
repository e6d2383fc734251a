"""``nbci run --html``: the site opened in a real headless browser (Debian's chromium, via playwright)."""

from __future__ import annotations

import base64
import datetime
import os
import shutil
import struct
import zlib
from pathlib import Path
from typing import Iterator, List

import nbformat
import pytest
from conftest import Project, Run

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
if CHROMIUM is None and os.environ.get("CI") != "true":
    pytest.skip("no chromium on PATH (apt-get install chromium); CI installs it", allow_module_level=True)

from playwright.sync_api import Browser, Page, sync_playwright  # noqa: E402

PNG_CELL = """\
import struct, zlib
from IPython.display import Image, display

def chunk(kind, data):
    return struct.pack('>I', len(data)) + kind + data + struct.pack('>I', zlib.crc32(kind + data))

rows = b''.join(b'\\x00' + b'\\xff\\x00\\x00' * 8 for _ in range(8))  # 8x8 red
png = (b'\\x89PNG\\r\\n\\x1a\\n' + chunk(b'IHDR', struct.pack('>IIBBBBB', 8, 8, 8, 2, 0, 0, 0))
       + chunk(b'IDAT', zlib.compress(rows)) + chunk(b'IEND', b''))
display(Image(data=png))"""
def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


PNG = (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", struct.pack(">IIBBBBB", 8, 8, 8, 2, 0, 0, 0))  # 8x8 red
       + png_chunk(b"IDAT", zlib.compress(b"".join(b"\x00" + b"\xff\x00\x00" * 8 for _ in range(8))))
       + png_chunk(b"IEND", b""))
HOSTILE_OUTPUT = ("from IPython.display import HTML, display\n"
                  "display(HTML('<img id=\"tracker\" src=\"http://127.0.0.1:9/t.png\">"
                  "<script>window.pwned = 1</script><b>bold output</b>'))\n"
                  "import base64\n"  # sizes written unquoted, a file name made a src: the page would run and fetch
                  "display({'image/png': base64.b64encode(png).decode()}, raw=True, metadata={"
                  "'image/png': {'width': '8 onerror=window.pwned=1', 'height': 8},"
                  " 'filenames': {'image/png': 'http://127.0.0.1:9/f.png'}})")
MARKDOWN = ("**bold md** ![near](pic.png) <img src=\"../top.png\"> ![out](../../outside.png) ![link](link.png) "
            "![abs]({outside}) ![fifo](fifo.png)")


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Run:
    project = Project(tmp_path_factory.mktemp("site"))
    project.write("a ok.ipynb", PNG_CELL, HOSTILE_OUTPUT)
    nb = project.write("sub/b.ipynb", "print('in a subfolder')")
    md = nb.read_text(encoding="utf-8").replace(
        '"cells": [', '"cells": [{"cell_type": "markdown", "id": "md", "metadata": {}, "source": '
        '"*hi*\\n\\n<script>document.title = \'pwned\'</script><img src=\\"https://example.invalid/x.png\\">"}, ', 1)
    nb.write_text(md, encoding="utf-8")
    outside = project.root.parent / "outside.png"  # a readable image, but not the repository's
    for image in (project.root / "sub" / "pic.png", project.root / "top.png", outside):
        image.write_bytes(PNG)
    (project.root / "sub" / "link.png").symlink_to(outside)
    os.mkfifo(project.root / "sub" / "fifo.png")
    copy = nbformat.read(str(nb), as_version=4)
    copy.cells.append(nbformat.v4.new_markdown_cell(MARKDOWN.format(outside=outside)))
    nbformat.write(copy, str(nb))
    project.write("z fails #1.ipynb", *[f"print({i})" for i in range(40)], "raise ValueError('broken on purpose')",
                  *[f"print('not reached', {i})" for i in range(40)])
    project.write("index.ipynb", "1 + 1")
    (project.root / "bad.ipynb").write_text("{ not json", encoding="utf-8")
    run = project.run("run", "--html", "--jobs", "2")
    assert run.code == 1, run.stderr
    return run


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield browser
        browser.close()


def open_page(browser: Browser, url: str, requests: List[str], **context) -> Page:
    page = browser.new_context(**context).new_page()
    page.on("request", lambda request: requests.append(request.url))
    page.goto(url)
    return page


def test_index_lists_failures_first_and_links_to_the_failing_cell(site: Run, browser: Browser) -> None:
    requests: List[str] = []
    page = open_page(browser, (site.output_dir / "index.html").as_uri(), requests,
                     viewport={"width": 1100, "height": 700})
    rows = page.locator("tbody tr")
    names = [rows.nth(i).locator("td").nth(1).inner_text().splitlines()[0] for i in range(rows.count())]
    assert names == ["bad.ipynb", "z fails #1.ipynb", "a ok.ipynb", "index.ipynb", "sub/b.ipynb"]
    assert "✗ 2 of 5 notebooks did not pass" in page.locator("h1").inner_text()
    assert "Notebook does not appear to be JSON" in rows.nth(0).inner_text()  # no page, the reason instead
    assert rows.nth(0).locator("td").nth(1).locator("a").count() == 0
    assert "cell 41: ValueError: broken on purpose" in rows.nth(1).inner_text()  # also code cell 41: said once
    rows.nth(1).locator("td").nth(1).locator("a").click()
    page.wait_for_load_state()
    assert page.url.endswith("/z%20fails%20%231.html#failure")
    anchor = page.locator("#failure")
    assert "ValueError: broken on purpose" in anchor.inner_text()
    assert page.evaluate("window.scrollY") > 500  # the browser scrolled down to the failing cell
    assert 0 <= anchor.evaluate("e => e.getBoundingClientRect().top") < 40
    assert "raise ValueError" in page.locator("#failure + .jp-Cell").inner_text()
    page.locator("a", has_text="all notebooks").click()
    page.wait_for_load_state()
    assert page.url.endswith("/index.html")
    assert all(url.startswith("file:") for url in requests), requests


def test_pages_embed_images_and_run_or_fetch_nothing_a_notebook_holds(site: Run, browser: Browser) -> None:
    requests: List[str] = []
    page = open_page(browser, (site.output_dir / "a ok.html").as_uri(), requests)
    images = page.locator("img[src^='data:image/png;base64,']")
    assert images.count() == 2 and images.evaluate_all("all => all.map(e => e.naturalWidth)") == [8, 8]
    assert page.locator("img[onerror]").count() == 0 and page.locator("img[width='8']").count() == 0
    assert page.locator("b", has_text="bold output").count() == 1  # HTML output kept, sanitized
    assert page.evaluate("document.scripts.length") == 0 and page.evaluate("window.pwned") is None
    sub = open_page(browser, (site.output_dir / "sub" / "b.html").as_uri(), requests)
    assert sub.title() != "pwned" and sub.locator("em", has_text="hi").count() == 1
    markdown = sub.locator(".jp-MarkdownCell").nth(1)
    assert markdown.locator("strong", has_text="bold md").count() == 1  # formatted, not tags shown as text
    assert "<" not in markdown.inner_text() and "bold md" in markdown.inner_text()
    pictures = markdown.locator("img")
    assert pictures.count() == 6  # the two inside the root embedded; out of it, by link or FIFO: no src at all
    assert pictures.evaluate_all("all => all.map(e => e.naturalWidth)") == [8, 8, 0, 0, 0, 0]
    assert pictures.evaluate_all("all => all.filter(e => e.hasAttribute('src')).length") == 2
    assert "in a subfolder" in sub.inner_text("body")
    sub.locator("a", has_text=".ipynb").click()  # the executed copy beside the page
    assert all(url.startswith("file:") for url in requests), requests
    assert [url for url in requests if url.endswith("/sub/b.ipynb")]


def test_index_reads_on_a_phone_in_light_and_dark(site: Run, browser: Browser) -> None:
    backgrounds = {}
    for scheme in ("light", "dark"):
        page = open_page(browser, (site.output_dir / "index.html").as_uri(), [],
                         viewport={"width": 375, "height": 700}, color_scheme=scheme)
        assert page.evaluate("document.documentElement.scrollWidth") <= 375  # no sideways scrolling
        backgrounds[scheme] = page.evaluate("getComputedStyle(document.body).backgroundColor")
    assert backgrounds == {"light": "rgb(255, 255, 255)", "dark": "rgb(13, 17, 23)"}


def test_site_files_sit_beside_the_copies(site: Run) -> None:
    out = site.output_dir
    assert (out / "index.ipynb.html").exists()  # a notebook named index never replaces the run's index
    assert "<table>" in (out / "index.html").read_text(encoding="utf-8")
    assert {p.relative_to(out).as_posix() for p in out.rglob("*.html")} == {
        "index.html", "index.ipynb.html", "a ok.html", "sub/b.html", "z fails #1.html"}
    page = (out / "z fails #1.html").read_text(encoding="utf-8")
    assert page.count('id="failure"') == 1 and 'class="nbci-time"' in page


def test_no_site_without_html(project: Project) -> None:
    project.write("a.ipynb", "1")
    run = project.run("run")
    assert run.code == 0 and not list(run.output_dir.rglob("*.html"))


def test_index_of_a_run_nbci_failed_in_says_so(tmp_path, browser: Browser) -> None:
    from nbci.config import Config
    from nbci.report.html import index_html
    from nbci.results import CellError, NotebookResult, RunResult

    run = RunResult([NotebookResult("ok.ipynb", "passed"), NotebookResult("gpu.ipynb", "skipped", skip_reason="x" * 10**6),
                     NotebookResult("broken\udcff.ipynb", "error", error=CellError("NbciInternalError", "copy unreadable"))],
                    problems=["internal error: KeyError: <b>'x'</b>", "could not write the JUnit report"])
    index = tmp_path / "index.html"
    index.write_text(index_html(run, Config(root=tmp_path), {}, {}, {}, datetime.datetime.now(datetime.timezone.utc)),
                     encoding="utf-8")
    page = open_page(browser, index.as_uri(), [])
    assert page.locator("h1").inner_text() == "✗ nbci failed: 2 internal problems; 1 of 3 notebooks did not pass"
    assert index.stat().st_size < 20_000  # a skip reason, the repository's text, shown clipped
    assert page.locator(".problems li").all_inner_texts() == ["internal error: KeyError: <b>'x'</b>",
                                                             "could not write the JUnit report"]
    error_row = page.locator("tbody tr").first
    assert error_row.get_attribute("class") == "bad"
    assert error_row.locator("td.status").inner_text() == "✗ error"
    assert "broken\ufffd.ipynb" in error_row.inner_text() and "NbciInternalError: copy unreadable" in error_row.inner_text()


# --- changed outputs (--check-outputs) ------------------------------------------------------------

BLUE_PNG = PNG.replace(png_chunk(b"IDAT", zlib.compress(b"".join(b"\x00" + b"\xff\x00\x00" * 8 for _ in range(8)))),
                       png_chunk(b"IDAT", zlib.compress(b"".join(b"\x00" + b"\x00\x00\xff" * 8 for _ in range(8)))))


def notebook_with(texts: List[str], png: bytes) -> nbformat.NotebookNode:
    """A notebook whose code cells printed ``texts`` (one each) and showed ``png`` last, after a Markdown
    heading that would take nbci's ``changed`` anchor."""
    image = nbformat.v4.new_output("display_data", {"image/png": base64.b64encode(png).decode("ascii")})
    cells = [nbformat.v4.new_markdown_cell("# changed")]
    for index, text in enumerate(texts):
        cells.append(nbformat.v4.new_code_cell(f"print(cell_{index})", id=f"text-{index}", execution_count=index + 1,
                                               outputs=[nbformat.v4.new_output("stream", name="stdout", text=text)]))
    cells.append(nbformat.v4.new_code_cell("show()", id="plot", execution_count=len(texts) + 1, outputs=[image]))
    return nbformat.v4.new_notebook(cells=cells, metadata={"kernelspec": {"name": "python3", "display_name": "Python 3",
                                                                           "language": "python"}})


def changed_site(root: Path) -> Run:
    """A run whose notebook's text and image changed, reported as ``--html`` reports it."""
    from nbci.config import Config
    from nbci.report.html import HtmlReporter
    from nbci.results import NotebookResult, OutputCheck, OutputDifference, RunResult

    committed = ["total: 42\nrows: 3\nmean: 1.5\n<script>window.pwned = 1</script>\n", "unchanged\n"]
    fresh = ["total: 43\nrows: 3\nmean: 1.5\n<script>window.pwned = 1</script>\nnew line\n", "unchanged\n"]
    nbformat.write(notebook_with(committed, PNG), str(root / "report.ipynb"))
    (root / "nbci-output").mkdir()
    nbformat.write(notebook_with(fresh, BLUE_PNG), str(root / "nbci-output" / "report.ipynb"))
    differences = [OutputDifference(1, "cell 2 (code cell 1)", "stdout", "changed", committed[0], fresh[0], line=9),
                   OutputDifference(1, "cell 2 (code cell 1)", '<b id="changed">x</b>', "missing", "gone\n"),
                   OutputDifference(3, "cell 4 (code cell 3)", "image/png", "changed", line=30)]
    results = [NotebookResult("report.ipynb", "changed", output_path="nbci-output/report.ipynb",
                              output_check=OutputCheck("warn", 3, differences)),
               NotebookResult("same.ipynb", "passed", output_check=OutputCheck("warn", 2))]
    config = Config(root=root, html=True, jobs=1)
    reporter = HtmlReporter(config, {})
    reporter.run_started([result.path for result in results], config)
    for result in results:
        reporter.notebook_finished(result, "")
    reporter.run_finished(RunResult(results), config)
    return Run(0, "", "", config.root, config.output_dir)


def test_a_changed_cell_shows_its_diff_and_both_images_side_by_side(tmp_path, browser: Browser) -> None:
    site = changed_site(tmp_path)
    requests: List[str] = []
    index = open_page(browser, (site.output_dir / "index.html").as_uri(), requests, viewport={"width": 1100, "height": 700})
    assert index.locator("h1").inner_text() == "✓ 1 notebook passed; 1 changed its outputs"
    row = index.locator("tbody tr").first
    assert row.get_attribute("class") == "changed" and row.locator("td.status").inner_text() == "≠ changed"
    assert "outputs changed in 2 cells (of 3 compared), first cell 2 (code cell 1)" in row.inner_text()
    row.locator("a", has_text="report.ipynb").click()
    page = index
    page.wait_for_load_state()
    assert page.url.endswith("/report.html#changed")
    assert page.locator("#changed").count() == 1  # the notebook's own heading does not take it
    assert page.locator("#changed").get_attribute("class") == "nbci-changed"
    assert "print(cell_0)" in page.locator("#changed + .jp-Cell").inner_text()
    diff = page.locator(".nbci-changes").first
    rows = diff.locator(".nbci-diff").first.locator(".nbci-row")
    assert rows.all_inner_texts() == ["@@ -1,4 +1,5 @@", "-total: 42", "+total: 43", " rows: 3", " mean: 1.5",
                                      " <script>window.pwned = 1</script>", "+new line"]
    assert diff.locator(".nbci-diff-title").all_inner_texts() == [
        "stdout changed", '<b id="changed">x</b> missing (committed, not produced now)']  # the notebook's key, as text
    assert rows.nth(1).locator("del").all_inner_texts() == ["2"] and rows.nth(2).locator("ins").all_inner_texts() == ["3"]
    assert [rows.nth(i).get_attribute("class") for i in (1, 2, 3)] == ["nbci-row nbci-del", "nbci-row nbci-add",
                                                                        "nbci-row nbci-same"]
    colours = rows.evaluate_all("all => all.slice(1, 4).map(e => getComputedStyle(e).backgroundColor)")
    assert len(set(colours)) == 3  # removed, added and unchanged lines each look their own
    images = page.locator(".nbci-changes").nth(1)
    assert images.locator(".nbci-no-text").inner_text() == "No text to show as a diff: see the images side by side."
    before, after = images.locator("figure.nbci-before"), images.locator("figure.nbci-after")
    assert before.locator("img").get_attribute("src") == "data:image/png;base64," + base64.b64encode(PNG).decode()
    assert after.locator("img").get_attribute("src") == "data:image/png;base64," + base64.b64encode(BLUE_PNG).decode()
    left, right = before.bounding_box(), after.bounding_box()
    assert left["y"] == right["y"] and left["x"] + left["width"] <= right["x"]  # side by side
    assert [img.evaluate("e => e.naturalWidth") for img in (before.locator("img"), after.locator("img"))] == [8, 8]
    assert page.evaluate("document.scripts.length") == 0 and page.evaluate("window.pwned") is None
    assert all(url.startswith("file:") for url in requests), requests
    for scheme in ("light", "dark"):  # removed and added text, and the marked characters, read in either scheme
        themed = open_page(browser, (site.output_dir / "report.html").as_uri(), requests, color_scheme=scheme)
        for selector in (".nbci-del", ".nbci-add", ".nbci-del del", ".nbci-add ins", ".nbci-hunk"):
            assert contrast(themed.locator(selector).first) >= 4.5, (scheme, selector)


def contrast(element) -> float:
    """The WCAG contrast ratio of ``element``'s text against its (or its nearest painted ancestor's) background."""
    colours = element.evaluate("""e => { const fg = getComputedStyle(e).color; let bg = 'rgba(0, 0, 0, 0)';
        for (let at = e; at && bg === 'rgba(0, 0, 0, 0)'; at = at.parentElement) bg = getComputedStyle(at).backgroundColor;
        return [fg, bg]; }""")

    def luminance(colour: str) -> float:
        channels = [int(c) / 255 for c in colour[colour.index("(") + 1:].rstrip(")").split(",")[:3]]
        r, g, b = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
        return 0.2126 * r + 0.7152 * g + 0.0722 * b

    light, dark = sorted(map(luminance, colours), reverse=True)
    return (light + 0.05) / (dark + 0.05)


def test_committed_images_come_only_from_the_source_inside_the_root_and_only_as_images(tmp_path) -> None:
    from nbci.report.output_diff import cell_images, committed_cell, committed_cells, data_uri

    root, outside = tmp_path / "repo", tmp_path / "elsewhere.ipynb"
    root.mkdir()
    nbformat.write(notebook_with(["a\n"], PNG), str(outside))
    (root / "link.ipynb").symlink_to(outside)
    os.mkfifo(root / "fifo.ipynb")
    nbformat.write(notebook_with(["a\n"], PNG), str(root / "real.ipynb"))
    assert committed_cells(str(root), "link.ipynb") is None and committed_cells(str(root), "fifo.ipynb") is None
    cells = committed_cells(str(root), "real.ipynb")
    injected = {"id": "injected", "cell_type": "code", "outputs": []}  # a parameters cell shifts the copy's cells by one
    assert committed_cell(cells, {"id": "plot"}, 3) is cells[2]
    assert cell_images(committed_cell(cells, {"id": "plot"}, 3)) == ["data:image/png;base64," + base64.b64encode(PNG).decode()]
    assert committed_cell(cells, injected, 0) is cells[0]  # no cell has its id: the same place
    assert data_uri("image/png", 'AAAA" onerror="x') is None and data_uri("image/png", ["iVBO", "Rw==\n"]) == \
        "data:image/png;base64,iVBORw=="
    assert data_uri("image/svg+xml", "<svg/>") == "data:image/svg+xml;base64,PHN2Zy8+" and data_uri("image/png", 3) is None


def test_a_block_of_changed_lines_marks_each_against_its_counterpart() -> None:
    from nbci.report.output_diff import diff_rows
    from nbci.results import OutputDifference

    rows = diff_rows(OutputDifference(0, "cell 1", "stdout", "changed", "n: 8\ntotal: 30\nmean: 3.75\n",
                                      "n: 8\ntotal: 31\nmean: 3.875\n"))
    assert [row["kind"] for row in rows] == ["hunk", "same", "del", "del", "add", "add"]
    assert [[text for text, differs in row["parts"] if differs] for row in rows[2:]] == [["0"], [], ["1"], ["8"]]


def test_long_changed_lines_are_marked_between_their_common_start_and_end() -> None:
    from nbci.report.output_diff import diff_rows
    from nbci.results import OutputDifference

    old, new = "ab" * 100_000, "ab" * 500 + "ba" + "ab" * 99_499  # two 200 000-character lines
    same = [f"{i}: {'xy' * 60}" for i in range(30)]
    rows = diff_rows(OutputDifference(0, "cell 1", "stdout", "changed", "\n".join([old, *same, "n: 1"]),
                                      "\n".join([new, *same, "n: 2"])))
    assert [row["kind"] for row in rows[:3]] == ["hunk", "del", "add"]
    for row, middle in zip(rows[1:3], ("ab", "ba")):
        assert [(len(text), differs) for text, differs in row["parts"]][:2] == [(1000, False), (2, True)]
        assert row["parts"][1][0] == middle and row["parts"][2][0].endswith("more characters]")
    assert [[text for text, differs in row["parts"] if differs] for row in rows[-2:]] == [["1"], ["2"]]
