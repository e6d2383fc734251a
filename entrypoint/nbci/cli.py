"""``nbci`` command line: parse into a ``Config``, run, report; the one place errors become exit codes.

Exit codes: 0 every notebook passed, 1 some notebook did not, 2 usage or configuration error,
128 + signal number when the run was interrupted (130 for Ctrl-C, 143 for SIGTERM).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import signal
import sys
from pathlib import Path
from typing import Callable, List, Mapping, NoReturn, Optional, Sequence

from nbci import __version__
from nbci.changes import select_changed
from nbci.config import (
    DEFAULT_OUTPUT_DIR, DEFAULT_PATTERNS, IF_NO_NOTEBOOKS, KERNEL_STARTS, Config, env_options, parse_size, split_list,
)
from nbci.discover import discover
from nbci.durations import expected_durations, run_order_durations
from nbci.errors import ConfigError, NbciError, NoNotebooksError
from nbci.report import Reporter
from nbci.report.console import ConsoleReporter
from nbci.report.junit import write_junit
from nbci.results import RunResult, write_results
from nbci.schedule import Scheduler
from nbci.shard import matrix, parse_shard, select_shard

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
TRUE, FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off", "")


class ArgumentParser(argparse.ArgumentParser):
    """argparse that reports a usage error as one line and exit code 2."""

    def error(self, message: str) -> NoReturn:
        raise ConfigError(f"{message} (see '{self.prog} --help')")


def seconds(text: str) -> Optional[float]:
    """A finite duration in seconds; ``0`` (however written) or ``none`` means no limit."""
    if str(text).strip().lower() == "none":
        return None
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if value < 0 or not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r}: seconds must be a finite number, not negative (0 for no limit)")
    return value or None


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} cannot be negative")
    return value


def jobs_count(text: str) -> int:
    if str(text).strip().lower() in ("auto", ""):
        return os.cpu_count() or 1
    value = positive_int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be 1 or more (or 'auto')")
    return value


def size(text: str) -> int:
    try:
        return parse_size(text)
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def boolean(text: str) -> bool:
    value = str(text).strip().lower()
    if value in TRUE:
        return True
    if value in FALSE:
        return False
    raise argparse.ArgumentTypeError(f"{text!r} is not true or false")


def add_discovery_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("notebooks", nargs="*", metavar="NOTEBOOK-OR-GLOB",
                        help="notebooks, folders or globs relative to the current directory (default: **/*.ipynb)")
    parser.add_argument("--exclude", action="append", default=[], metavar="GLOB",
                        help="skip notebooks matching GLOB (repeatable)")
    parser.add_argument("--output-dir", default=DEFAULT_OUTPUT_DIR, metavar="DIR",
                        help="where executed copies and results.json go; never searched for notebooks")
    parser.add_argument("--if-no-notebooks", choices=IF_NO_NOTEBOOKS, default="error",
                        help="what to do when nothing matches (default: error, exit 2)")


def add_run_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--jobs", "-j", type=jobs_count, default=os.cpu_count() or 1, metavar="N",
                        help="notebooks run in parallel (default: number of CPUs)")
    parser.add_argument("--timeout", type=seconds, default=600.0, metavar="SECONDS",
                        help="limit per cell (default 600; 0 for none)")
    parser.add_argument("--notebook-timeout", type=seconds, default=None, metavar="SECONDS",
                        help="limit per notebook (default none)")
    parser.add_argument("--kernel", default=None, metavar="NAME", help="kernel for every notebook, whatever its metadata says")
    parser.add_argument("--allow-errors", type=boolean, nargs="?", const=True, default=False, metavar="BOOL",
                        help="run every cell even after errors; errors do not fail the notebook")
    parser.add_argument("--inplace", type=boolean, nargs="?", const=True, default=False, metavar="BOOL",
                        help="write executed notebooks over their sources (results still go to --output-dir)")
    parser.add_argument("--retries", type=positive_int, default=0, metavar="N",
                        help="re-run a notebook up to N times after a transient failure (kernel death, failed start, --retry-on)")
    parser.add_argument("--retry-on", default=None, metavar="REGEX",
                        help="also retry failures whose 'ename: evalue' matches REGEX")
    parser.add_argument("--memory-limit", type=size, default=None, metavar="SIZE",
                        help="kill a kernel whose process tree uses more memory, e.g. 2G")
    parser.add_argument("--heartbeat", type=seconds, default=30.0, metavar="SECONDS",
                        help="progress line interval for a running notebook (default 30)")
    parser.add_argument("--kernel-start", choices=KERNEL_STARTS, default="spawn",
                        help="spawn: start kernels normally (default); fork: fork ipykernel kernels from a "
                             "pre-imported template when that keeps normal-start semantics (Linux, PYTHONHASHSEED set)")
    parser.add_argument("--junit", type=Path, default=None, metavar="FILE",
                        help="also write a JUnit XML report (default: OUTPUT_DIR/junit.xml)")
    parser.add_argument("--github", type=boolean, nargs="?", const=True, default=None, metavar="BOOL",
                        help="report to GitHub Actions (default: when GITHUB_ACTIONS=true)")


def add_selection_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--changed-since", default=None, metavar="REF",
                        help="only notebooks changed since git REF, or below a changed requirements file")
    parser.add_argument("--durations", type=Path, default=None, metavar="RESULTS_JSON",
                        help="a previous results.json, or a folder of them: balance shards, run the longest first "
                             "(a run without it orders by the results.json in --output-dir, if any)")


def add_list_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", type=boolean, nargs="?", const=True, default=False, metavar="BOOL",
                        help="print a JSON array of paths")
    parser.add_argument("--shards", type=positive_int, default=None, metavar="N",
                        help='print N shards as a JSON matrix: [{"shard": "1/N", "notebooks": [...]}, ...]')


def build_parser(environ: Mapping[str, str]) -> ArgumentParser:
    """The ``nbci`` parser, each subcommand's defaults taken from ``NBCI_*`` variables where set."""
    parser = ArgumentParser(prog="nbci", description="Prove that Jupyter notebooks still run.")
    parser.add_argument("--version", action="version", version=f"nbci {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=ArgumentParser)
    commands.required = True
    run = commands.add_parser("run", help="execute notebooks and report what broke")
    add_discovery_options(run)
    add_selection_options(run)
    run.add_argument("--shard", default=None, metavar="I/N", help="run only shard I of N (see 'list --shards')")
    add_run_options(run)
    listing = commands.add_parser("list", help="print the notebooks 'run' would execute")
    add_discovery_options(listing)
    add_selection_options(listing)
    add_list_options(listing)
    for command in (run, listing):
        apply_env_defaults(command, environ)
    return parser


def apply_env_defaults(parser: argparse.ArgumentParser, environ: Mapping[str, str]) -> None:
    """Let ``NBCI_<OPTION>`` variables set each option's default, converted like the option."""
    values = env_options(environ)
    for action in parser._actions:
        raw = values.get(action.dest)
        if raw is None or action.dest in ("help", "version"):
            continue
        if action.dest in ("notebooks", "exclude"):
            parser.set_defaults(**{action.dest: split_list(raw)})
            continue
        convert: Callable = action.type or str
        try:
            value = convert(raw)
        except (argparse.ArgumentTypeError, ValueError) as exc:
            raise ConfigError(f"NBCI_{action.dest.upper()}={raw!r}: {exc}") from None
        if action.choices and value not in action.choices:
            raise ConfigError(f"NBCI_{action.dest.upper()}={raw!r}: choose one of {', '.join(action.choices)}")
        parser.set_defaults(**{action.dest: value})


def make_config(args: argparse.Namespace, environ: Mapping[str, str]) -> Config:
    options = dict(vars(args))
    options.pop("command")
    github = options.pop("github", None)
    config = Config(
        root=Path.cwd(),
        patterns=options.pop("notebooks") or list(DEFAULT_PATTERNS),
        excludes=options.pop("exclude"),
        github=environ.get("GITHUB_ACTIONS") == "true" if github is None else github,
        **options,
    )
    return config.validate()


def find_notebooks(config: Config) -> List[str]:
    paths = discover(config.patterns, config.root, config.excludes, config.output_dir)
    if not paths and config.if_no_notebooks == "error":
        raise NoNotebooksError(
            f"no notebooks match {' '.join(config.patterns)} in {config.root}: "
            "check the patterns, or pass --if-no-notebooks warn|ignore"
        )
    return paths


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


def make_reporters(config: Config, environ: Mapping[str, str]) -> List[Reporter]:
    reporters: List[Reporter] = [ConsoleReporter()]
    if config.github:
        from nbci.report.github import GitHubReporter

        reporters.append(GitHubReporter(environ))
    return reporters


def execute_run(config: Config, paths: Sequence[str], reporters: Sequence[Reporter]) -> RunResult:
    """Run the notebooks on an event loop that turns SIGINT/SIGTERM into a clean cancellation."""
    expected = run_order_durations(paths, config.root, config.durations, config.output_dir)
    scheduler = Scheduler(config, reporters)
    async def main() -> RunResult:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            try:
                loop.add_signal_handler(signum, scheduler.cancel, signum)
            except (NotImplementedError, RuntimeError):
                pass
        return await scheduler.run(paths, expected)

    return asyncio.run(main())


def command_run(config: Config, environ: Mapping[str, str]) -> int:
    paths = find_notebooks(config)
    if not paths:
        if config.if_no_notebooks == "warn":
            print(f"nbci: warning: no notebooks match {' '.join(config.patterns)} in {config.root}", file=sys.stderr)
    paths = narrow(config, paths)
    reporters = make_reporters(config, environ)
    run = execute_run(config, paths, reporters) if paths else RunResult([])
    run.shard = config.shard
    write_results(run, config.output_dir / "results.json")
    write_junit(run, config.junit or config.output_dir / "junit.xml")
    for reporter in reporters:
        reporter.run_finished(run, config)
    if run.signal:
        return 128 + run.signal
    return EXIT_OK if run.ok else EXIT_FAILED


def command_list(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    """Print the selected notebooks: one per line, a JSON array (``--json``) or a shard matrix (``--shards``)."""
    options = vars(args)  # the namespace's own dict: what is popped here does not reach Config
    as_json, shards = options.pop("json"), options.pop("shards")
    config = make_config(args, environ)
    paths = narrow(config, find_notebooks(config))
    if shards is not None:
        print(json.dumps(matrix(paths, expected_durations(paths, config.root, config.durations), shards)))
    elif as_json:
        print(json.dumps(paths))
    else:
        for path in paths:
            print(path)
    return EXIT_OK


def main(argv: Optional[Sequence[str]] = None, environ: Optional[Mapping[str, str]] = None) -> int:
    environ = os.environ if environ is None else environ
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        args = build_parser(environ).parse_args(argv)
        if args.command == "list":
            return command_list(args, environ)
        return command_run(make_config(args, environ), environ)
    except NbciError as exc:
        one_line = str(exc).replace("\r", "\\r").replace("\n", "\\n")  # a path may hold a newline
        print(f"nbci: error: {one_line}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 128 + signal.SIGINT
