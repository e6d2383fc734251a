"""One ``nbci run`` or ``nbci list``, step by step: discover -> narrow -> schedule/execute -> report.

This module calls each stage in order and owns what holds across them: the job log (in GitHub mode
one stopped-commands region around the whole run, see ``report.workflow_commands.CommandLog``),
the output folder's checks and marker, and the rule that every report is written, each on its own,
whatever happened before it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
from dataclasses import dataclass
from typing import Iterator, List, Mapping, Optional, Sequence

from nbci.changes import select_changed
from nbci.code_coverage import data_folder, remove_data_folder
from nbci.code_coverage import report as report_coverage
from nbci.config import Config
from nbci.discover import find
from nbci.durations import expected_durations, run_order_durations
from nbci.errors import ConfigError, NoNotebooksError
from nbci.files import ensure_folder, inside, mark, write_atomic
from nbci.report import Reporter, printable
from nbci.report.console import ConsoleReporter
from nbci.report.junit import junit_bytes
from nbci.report.workflow_commands import CommandLog, one_line
from nbci.execute import describe
from nbci.results import ERROR, RunResult, results_json
from nbci.schedule import Scheduler
from nbci.settings import settings_for
from nbci.shard import matrix, parse_shard, select_shard
from nbci.text_notebooks import copy_names

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERNAL = 0, 1, 2, 3


@dataclass
class Outcome:
    """How a run ended: its results, with what nbci itself could not do (one line each)."""

    run: RunResult

    @property
    def problems(self) -> List[str]:
        return self.run.problems

    @property
    def exit_code(self) -> int:
        if self.run.signal:
            return 128 + self.run.signal
        if self.problems:
            return EXIT_INTERNAL
        return EXIT_OK if self.run.ok else EXIT_FAILED


@contextlib.contextmanager
def job_log(config: Config) -> Iterator[CommandLog]:
    """The log nbci writes to, open for the run. In GitHub mode its own stderr joins stdout, so one
    ordered stream passes through the stopped region (the runner reads both pipes, in no promised
    order); both are as they were again afterwards."""
    log = CommandLog(sys.stdout, github=config.github)
    saved_stream, saved_fd = sys.stderr, None
    if config.github:
        sys.stdout.flush()
        try:
            if sys.stdout.fileno() == 1 and sys.stderr.fileno() == 2:
                sys.stderr.flush()
                saved_fd = os.dup(2)
                os.dup2(1, 2)
        except (AttributeError, OSError, ValueError):  # not the process's own streams
            pass
        sys.stderr = sys.stdout
    log.open()
    try:
        yield log
    finally:
        sys.stdout.flush()
        log.close()
        sys.stderr = saved_stream
        if saved_fd is not None:
            os.dup2(saved_fd, 2)
            os.close(saved_fd)


def find_notebooks(config: Config) -> List[str]:
    found = find(config.patterns, config.root, config.excludes)
    if found.notebooks:
        return found.notebooks
    nothing = one_line(f"no notebooks match {' '.join(config.patterns)} in {config.root}{passed_over(found.not_notebooks)}")
    if config.if_no_notebooks == "error":
        raise NoNotebooksError(f"{nothing}: check the patterns, or pass --if-no-notebooks warn|ignore")
    if config.if_no_notebooks == "warn":
        print(f"nbci: warning: {nothing}", file=sys.stderr)
    return []


def passed_over(not_notebooks: List[str]) -> str:
    """Why the text files a glob matched did not count, for the "no notebooks match" line; "" for none."""
    if not not_notebooks:
        return ""
    count = len(not_notebooks)
    return (f" (the globs matched {count} text file{'' if count == 1 else 's'}, such as {not_notebooks[0]}, "
            f"and {'it is not' if count == 1 else 'none is'} a notebook: no jupytext header and no cell markers)")


def narrow(config: Config, paths: List[str]) -> List[str]:
    """The discovered paths this job runs: those changed since ``--changed-since``, then one ``--shard``."""
    if config.changed_since:
        changed = select_changed(paths, config.changed_since, config.root)
        print(f"nbci: {len(changed)} of {len(paths)} notebooks changed since {config.changed_since}", file=sys.stderr)
        paths = changed
    if config.shard:
        shard = select_shard(paths, expected_durations(paths, config.root, config.durations), parse_shard(config.shard))
        print(f"nbci: shard {config.shard} has {len(shard)} of {len(paths)} notebooks", file=sys.stderr)
        paths = shard
    return paths


def prepare_output_dir(config: Config, paths: Sequence[str]) -> None:
    """Check the output folder can hold copies without touching sources, create it, mark it."""
    out, root = config.output_dir, config.root
    if inside(root, out):
        raise ConfigError(f"--output-dir {out} is the working directory or holds it: executed copies would "
                          "overwrite the notebooks; pick a folder of its own such as nbci-output")
    inner = [path for path in paths if inside(root / path, out)]
    if inner:
        raise ConfigError(f"--output-dir {out} holds notebooks to run ({one_line(inner[0])}): its copies would "
                          "overwrite them; pick an empty folder such as nbci-output")
    try:
        if inside(out, root):
            ensure_folder(out, root)
        else:
            out.mkdir(parents=True, exist_ok=True)
            ensure_folder(out, out.parent)
        mark(out)
    except OSError as exc:
        raise ConfigError(f"--output-dir {out} cannot be used: {exc.strerror or exc}") from None


def list_notebooks(config: Config, as_json: bool, shards: Optional[int]) -> int:
    """Print the selected notebooks: one per line, a JSON array or a shard matrix."""
    paths = narrow(config, find_notebooks(config))
    if shards is not None:
        print(json.dumps(matrix(paths, expected_durations(paths, config.root, config.durations), shards)))
    elif as_json:
        print(json.dumps(paths))
    else:
        for path in paths:
            skip = settings_for(config.notebook_defaults, config.rules, path, {}).skip
            print(one_line(path) + (f"  (skipped: {one_line(skip)})" if skip else ""))
    return EXIT_OK


def run_notebooks(config: Config, environ: Mapping[str, str]) -> int:
    """Discover, run and report; return the exit code. Reports are written whatever happens."""
    with job_log(config) as log:
        found = find_notebooks(config)
        config.copy_names = copy_names(found)  # over every shard's notebooks, so that shards agree
        paths = narrow(config, found)
        prepare_output_dir(config, paths)
        if config.coverage:
            config.coverage_dir = data_folder()
        reporters = make_reporters(config, environ, log)
        scheduler = Scheduler(config, reporters)
        outcome = Outcome(RunResult([]))
        try:
            if paths:
                outcome.run = execute(config, paths, scheduler)
        except Exception as exc:  # a bug in nbci: say it in one line, keep what finished, list the rest
            outcome.run = scheduler.result()
            outcome.problems.append(f"internal error: {describe(exc)}")
        finally:
            outcome.run.shard = config.shard
            outcome.problems.extend(notebook_problems(outcome.run))
            write_reports(config, outcome, reporters)
            if config.coverage_dir is not None:
                remove_data_folder(config.coverage_dir)
        for problem in outcome.problems:
            print(f"nbci: error: {printable(one_line(problem))}", file=sys.stderr)
        return outcome.exit_code


def notebook_problems(run: RunResult) -> List[str]:
    """One line per notebook nbci itself failed on (status ``error``)."""
    return [f"nbci failed on {one_line(nb.path)}: {nb.error.message if nb.error else 'no reason recorded'}"
            for nb in run.notebooks if nb.status == ERROR]


def make_reporters(config: Config, environ: Mapping[str, str], log: CommandLog) -> List[Reporter]:
    reporters: List[Reporter] = [ConsoleReporter(log)]
    if config.html:
        from nbci.report.html import HtmlReporter

        reporters.append(HtmlReporter(config, environ))
    if config.github:
        from nbci.report.github import GitHubReporter

        reporters.append(GitHubReporter(environ, log))
    return reporters


def execute(config: Config, paths: Sequence[str], scheduler: Scheduler) -> RunResult:
    """Run the notebooks on an event loop that turns SIGINT/SIGTERM into a clean cancellation."""
    expected = run_order_durations(paths, config.root, config.durations, config.output_dir)

    async def main() -> RunResult:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            try:
                loop.add_signal_handler(signum, scheduler.cancel, signum)
            except (NotImplementedError, RuntimeError):
                pass
        return await scheduler.run(paths, expected)

    return asyncio.run(main())


def write_reports(config: Config, outcome: Outcome, reporters: Sequence[Reporter]) -> None:
    """results.json, JUnit and every reporter, each on its own: one failing never stops the others."""
    run = outcome.run

    def write_results() -> None:
        write_atomic(config.output_dir / "results.json", results_json(run))

    steps = [("the coverage report", lambda: outcome.problems.extend(report_coverage(config, run)))] \
        if config.coverage else []
    steps += [
        ("results.json", write_results),
        ("the JUnit report", lambda: write_junit(config, run)),
    ] + [(getattr(r, "name", type(r).__name__), lambda r=r: r.run_finished(run, config)) for r in reporters]
    known = len(outcome.problems)
    for name, step in steps:
        try:
            step()
        except (OSError, ValueError, RecursionError) as exc:
            outcome.problems.append(f"could not write {name}: {getattr(exc, 'strerror', None) or describe(exc)}")
        except Exception as exc:  # a bug in one reporter must not cost the others
            outcome.problems.append(f"internal error in {name}: {describe(exc)}")
    if len(outcome.problems) > known:  # results.json must not say ok while a later report failed
        try:
            write_results()
        except Exception:  # already counted among the problems
            pass


def write_junit(config: Config, run: RunResult) -> None:
    path = config.junit or config.output_dir / "junit.xml"
    if config.junit is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, junit_bytes(run))
