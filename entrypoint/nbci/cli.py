"""``nbci`` command line: parse into a ``Config``, run, report; the one place errors become exit codes.

Exit codes: 0 every notebook passed, 1 some notebook did not, 2 usage or configuration error,
3 nbci could not do its own work (a report it could not write, an internal error), 128 + signal
number when the run was interrupted (130 for Ctrl-C, 143 for SIGTERM).
"""

from __future__ import annotations

import argparse
import math
import os
import signal
import sys
from pathlib import Path
from typing import Iterator, List, Mapping, NoReturn, Optional, Sequence, Set

from nbci import __version__
from nbci.cache import parse_age
from nbci.config import (
    DEFAULT_OUTPUT_DIR, DEFAULT_PATTERNS, IF_NO_NOTEBOOKS, KERNEL_STARTS, Config, env_options, parse_size, split_list,
)
from nbci.errors import ConfigError, NbciError
from nbci.outputs import MODES, SCOPES
from nbci.kernels import harden_process
from nbci.parameters import command_line_parameters
from nbci.settings import DEFAULT_FILE, SettingsFile, find_settings_file, load_settings
from nbci.pipeline import EXIT_INTERNAL, EXIT_USAGE, list_notebooks, run_notebooks
from nbci.report.workflow_commands import one_line
from nbci.shard import MAX_SHARDS

# repeatable: a list of items, split like the action's inputs
LIST_OPTIONS = ("notebooks", "exclude", "cache_inputs", "mask_env", "coverage_source")
FILE_EXCLUDED = ("help", "version", "config", "parameter", "parameters_file", "parameters_yaml", "github")
# Options that name files or folders, or overwrite sources, stay with whoever runs nbci (the command
# line, the workflow): the settings file is part of the repository, which a pull request may change.
FILE_REFUSED = ("output_dir", "junit", "cache_dir", "durations", "inplace", "no_cache", "changed_since", "shard",
                "retry_on",  # a regular expression runs in nbci itself, over what notebooks print
                "nbval_sanitize_with", "update_outputs")
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


def shard_count(text: str) -> int:
    value = positive_int(text)
    if not 1 <= value <= MAX_SHARDS:
        raise argparse.ArgumentTypeError(f"must be between 1 and {MAX_SHARDS} (GitHub's matrix limit)")
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


def age(text: str) -> Optional[float]:
    try:
        return parse_age(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def boolean(text: str) -> bool:
    value = str(text).strip().lower()
    if value in TRUE:
        return True
    if value in FALSE:
        return False
    raise argparse.ArgumentTypeError(f"{text!r} is not true or false")


def output_mode(text: str) -> str:
    """A ``--check-outputs`` mode; ``false`` (a settings file's bare ``off``, as YAML reads it) is ``off``."""
    return "off" if str(text).strip().lower() in ("false", "off") else str(text)


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
    parser.add_argument("--helpers", type=positive_int, default=None, metavar="N",
                        help="processes that drive the kernels (default: one per 4 jobs, none for one job; "
                             "0 drives every kernel from nbci's own process)")
    parser.add_argument("--timeout", type=seconds, default=600.0, metavar="SECONDS",
                        help="limit per cell (default 600; 0 for none)")
    parser.add_argument("--notebook-timeout", type=seconds, default=None, metavar="SECONDS",
                        help="limit per notebook (default none)")
    parser.add_argument("--kernel", default=None, metavar="NAME", help="kernel for every notebook, whatever its metadata says")
    parser.add_argument("--cwd", default="notebook", metavar="notebook|root|DIR",
                        help="where each kernel starts: its notebook's folder (default), the working directory, "
                             "or a folder below it")
    parser.add_argument("-p", "--parameter", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"),
                        help="set a parameter (papermill's way; VALUE is YAML: 5 is a number, abc text; repeatable)")
    parser.add_argument("--parameters", dest="parameters_file", default=None, metavar="FILE",
                        help="parameters from a YAML file of name: value lines (-p wins)")
    parser.add_argument("--parameters-yaml", default=None, metavar="YAML",
                        help="parameters as a YAML mapping in one argument, e.g. '{rows: 100}' (-p wins)")
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
    parser.add_argument("--html", type=boolean, nargs="?", const=True, default=False, metavar="BOOL",
                        help="also write the run as a static site in the output dir: a page per notebook "
                             "(a/b.ipynb -> a/b.html) and index.html")
    parser.add_argument("--junit", type=Path, default=None, metavar="FILE",
                        help="also write a JUnit XML report (default: OUTPUT_DIR/junit.xml)")
    parser.add_argument("--github", type=boolean, nargs="?", const=True, default=None, metavar="BOOL",
                        help="report to GitHub Actions (default: when GITHUB_ACTIONS=true)")
    parser.add_argument("--cache-dir", type=Path, default=None, metavar="DIR",
                        help="reuse passed results while nothing they depend on changed (the execution cache's folder)")
    parser.add_argument("--cache-max-age", type=age, default=7 * 86400.0, metavar="AGE",
                        help="reuse results at most this old, e.g. 7d (the default), 12h; 0 for no limit")
    parser.add_argument("--cache-inputs", action="append", default=[], metavar="GLOB",
                        help="files whose contents join every cache key (files read by subprocesses; repeatable)")
    parser.add_argument("--no-cache", type=boolean, nargs="?", const=True, default=False, metavar="BOOL",
                        help="neither read nor write the execution cache")
    parser.add_argument("--mask-env", action="append", default=[], metavar="NAME",
                        help="replace this variable's value by *** in everything nbci writes (repeatable; "
                             "variables named like secrets, *_TOKEN, *_PASSWORD, ..., are masked anyway)")
    add_output_check_options(parser)
    add_coverage_options(parser)


def add_coverage_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--coverage", type=boolean, nargs="?", const=True, default=False, metavar="BOOL",
                        help="measure which of the repository's code the notebooks run (coverage.py in each "
                             "kernel's environment); writes coverage.xml, coverage.json and coverage.data")
    parser.add_argument("--coverage-source", action="append", default=[], metavar="PKG_OR_DIR",
                        help="what --coverage measures (repeatable; default: coverage.py's own source setting, "
                             "else the working directory)")
    parser.add_argument("--coverage-fail-under", type=float, default=None, metavar="PERCENT",
                        help="fail the run when the combined coverage is below PERCENT")


def add_output_check_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--check-outputs", type=output_mode, choices=MODES, default="off",
                        help="compare fresh outputs with the committed ones: warn (a change does not fail the run) "
                             "or fail (default: off)")
    parser.add_argument("--check-cells", choices=SCOPES, default="all",
                        help="cells compared: all (nbval's default) or marked with NBVAL_CHECK_OUTPUT (--nbval-lax)")
    parser.add_argument("--default-masks", type=boolean, nargs="?", const=True, default=True, metavar="BOOL",
                        help="mask addresses, dates, UUIDs, ANSI codes, progress bars and timings before "
                             "comparing (default: true)")
    parser.add_argument("--nbval-sanitize-with", type=Path, default=None, metavar="FILE",
                        help="more masks from an nbval sanitize file (regex:/replace: lines)")
    parser.add_argument("--image-tolerance", type=float, default=None, metavar="RMS",
                        help="compare images as pixels: the root-mean-square channel difference allowed, 0-255 "
                             "(default: images are not compared; needs Pillow)")
    parser.add_argument("--update-outputs", type=boolean, nargs="?", const=True, default=False, metavar="BOOL",
                        help="write fresh outputs back into the .ipynb sources of notebooks that passed or changed")


def add_selection_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--changed-since", default=None, metavar="REF",
                        help="only notebooks changed since git REF, or below a changed requirements file")
    parser.add_argument("--durations", type=Path, default=None, metavar="RESULTS_JSON",
                        help="a previous results.json, or a folder of them: balance shards, run the longest first "
                             "(a run without it orders by the results.json in --output-dir, if any)")


def add_list_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", type=boolean, nargs="?", const=True, default=False, metavar="BOOL",
                        help="print a JSON array of paths")
    parser.add_argument("--shards", type=shard_count, default=None, metavar="N",
                        help='print N shards as a JSON matrix: [{"shard": "1/N", "notebooks": [...]}, ...]')


def add_config_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", default=None, metavar="FILE",
                        help=f"settings file (default: {DEFAULT_FILE} in the working directory, when there)")


def build_parser(environ: Mapping[str, str], settings: Optional[SettingsFile] = None) -> ArgumentParser:
    """The ``nbci`` parser: each subcommand's defaults taken from the settings file's ``defaults``,
    then from ``NBCI_*`` variables where set."""
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
        add_config_option(command)
    if settings is not None:
        apply_file_defaults(run, listing, settings)
    for command in (run, listing):
        apply_env_defaults(command, environ)
    return parser


def apply_file_defaults(run: argparse.ArgumentParser, listing: argparse.ArgumentParser,
                        settings: SettingsFile) -> None:
    """Let the settings file's ``defaults`` set options' defaults, converted like the option."""
    actions = {action.dest: action for action in run._actions if action.dest not in FILE_EXCLUDED + FILE_REFUSED}
    listed = {action.dest for action in listing._actions}
    for dest, (value, at) in settings.defaults.items():
        action = actions.get(dest)
        if dest in FILE_REFUSED:
            raise ConfigError(f"{at}: {dest.replace('_', '-')} cannot be set in the settings file (it names files, "
                              "writes over sources or runs in nbci): pass it on the command line or as an action input")
        if action is None:
            names = ", ".join(sorted(a.option_strings[-1].lstrip("-") for a in actions.values() if a.option_strings))
            raise ConfigError(f"{at}: unknown option {dest.replace('_', '-')!r} in defaults: use one of {names}")
        converted = file_value(action, value, at)
        run.set_defaults(**{dest: converted})
        if dest in listed:
            listing.set_defaults(**{dest: converted})


def file_value(action: argparse.Action, value: object, at: str) -> object:
    """A settings-file value in the option's own type (a YAML list for the repeatable ones)."""
    if action.dest in LIST_OPTIONS and isinstance(value, list):
        return [str(item) for item in value]
    text = str(value).lower() if isinstance(value, bool) else str(value)
    return option_value(action, text, f"{at}: defaults {action.dest.replace('_', '-')}")


def option_value(action: argparse.Action, raw: str, label: str) -> object:
    """``raw`` converted like the option on the command line; ``ConfigError`` starting with ``label``."""
    if action.dest in LIST_OPTIONS:
        return split_list(raw)
    try:
        value = (action.type or str)(raw)
    except (argparse.ArgumentTypeError, ValueError) as exc:
        raise ConfigError(f"{label}: {exc}") from None
    if action.choices and value not in action.choices:
        raise ConfigError(f"{label}: choose one of {', '.join(action.choices)}")
    return value


def apply_env_defaults(parser: argparse.ArgumentParser, environ: Mapping[str, str]) -> None:
    """Let ``NBCI_<OPTION>`` variables set each option's default, converted like the option."""
    values = env_options(environ)
    for action in parser._actions:
        raw = values.get(action.dest)
        if raw is None or action.dest in ("help", "version", "parameter"):
            continue
        parser.set_defaults(**{action.dest: option_value(action, raw, f"NBCI_{action.dest.upper()}={raw!r}")})


def make_config(args: argparse.Namespace, environ: Mapping[str, str], settings: Optional[SettingsFile] = None) -> Config:
    options = dict(vars(args))
    options.pop("command")
    options.pop("config", None)
    github = options.pop("github", None)
    if "parameter" in options:
        options["parameters"] = command_line_parameters(options.pop("parameter"), options.pop("parameters_file"),
                                                        options.pop("parameters_yaml"))
    config = Config(
        rules=settings.rules if settings is not None else [],
        root=Path.cwd(),
        patterns=options.pop("notebooks") or list(DEFAULT_PATTERNS),
        excludes=options.pop("exclude"),
        github=environ.get("GITHUB_ACTIONS") == "true" if github is None else github,
        **options,
    )
    return config.validate()


def command_list(args: argparse.Namespace, environ: Mapping[str, str], settings: Optional[SettingsFile]) -> int:
    """``nbci list``: one path per line, a JSON array (``--json``) or a shard matrix (``--shards``)."""
    options = vars(args)  # the namespace's own dict: what is popped here does not reach Config
    as_json, shards = options.pop("json"), options.pop("shards")
    return list_notebooks(make_config(args, environ, settings), as_json, shards)


def read_settings(argv: Sequence[str], environ: Mapping[str, str]) -> Optional[SettingsFile]:
    """The settings file this invocation uses (``--config``, ``NBCI_CONFIG``, or ``.nbci.yml``), parsed."""
    early = argparse.ArgumentParser(add_help=False)
    early.add_argument("--config", default=environ.get("NBCI_CONFIG") or None)
    known, _ = early.parse_known_args([arg for arg in argv if arg not in ("-h", "--help")])
    path = find_settings_file(known.config, Path.cwd())
    return load_settings(path, Path.cwd()) if path is not None else None


def all_actions(parser: argparse.ArgumentParser) -> Iterator[argparse.Action]:
    """Every option of ``parser`` and of its subcommands."""
    for action in parser._actions:
        yield action
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                yield from all_actions(sub)


def bare_flags(parser: argparse.ArgumentParser, argv: Sequence[str]) -> List[str]:
    """``argv`` with a bare BOOL flag followed by a path (``--html nb.ipynb``) written ``--html=true``,
    so the path stays a path; ``--html false`` and ``--html=false`` keep their value. An abbreviation that
    argparse would take for one option (``--htm``) counts as that option."""
    actions = list(all_actions(parser))
    options = {option for action in actions for option in action.option_strings}
    flags = {option for action in actions if action.type is boolean for option in action.option_strings}
    out: List[str] = []
    for index, arg in enumerate(argv):
        following = argv[index + 1] if index + 1 < len(argv) else None
        if arg == "--":
            return out + list(argv[index:])
        bare = following is not None and following.strip().lower() not in TRUE + FALSE
        flag = full_option(arg, options) in flags
        out.append(f"{arg}=true" if flag and bare and not following.startswith("-") else arg)
    return out


def full_option(arg: str, options: Set[str]) -> str:
    """The option ``arg`` names: itself, or the one option it is a prefix of (``--htm``: ``--html``)."""
    if arg in options or not arg.startswith("--"):
        return arg
    matches = [option for option in options if option.startswith(arg)]
    return matches[0] if len(matches) == 1 else arg


def main(argv: Optional[Sequence[str]] = None, environ: Optional[Mapping[str, str]] = None) -> int:
    harden_process()  # kernels run as our user: they must not read our environment (the runner's files)
    environ = os.environ if environ is None else environ
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        settings = read_settings(argv, environ)
        parser = build_parser(environ, settings)
        args = parser.parse_args(bare_flags(parser, argv))
        if args.command == "list":
            return command_list(args, environ, settings)
        return run_notebooks(make_config(args, environ, settings), environ)
    except NbciError as exc:
        print(f"nbci: error: {one_line(str(exc))}", file=sys.stderr)  # a path may hold a newline
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 128 + signal.SIGINT
    except Exception as exc:  # a bug in nbci: one line and exit 3, never 1 ("a notebook failed")
        print(f"nbci: error: internal error: {one_line(f'{type(exc).__name__}: {exc}')}", file=sys.stderr)
        return EXIT_INTERNAL
