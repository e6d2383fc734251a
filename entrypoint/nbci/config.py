"""The run's configuration: one typed ``Config``, validated with actionable messages.

Every ``nbci run`` option can also come from an ``NBCI_<OPTION>`` environment variable
(``NBCI_NOTEBOOK_TIMEOUT`` for ``--notebook-timeout``): that is how the GitHub Action passes its
inputs without interpolating them into a shell script. An empty variable counts as unset;
options given on the command line win.
"""

from __future__ import annotations

import os
import re
import shlex
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Tuple

from nbci.errors import ConfigError
from nbci.masking import check_env_names
from nbci.outputs import Mask, read_sanitize_file
from nbci.files import OUTPUT_FOLDER
from nbci.settings import NotebookSettings, Rule, check_cache_input, check_cwd, check_tolerance
from nbci.shard import parse_shard

IF_NO_NOTEBOOKS = ("error", "warn", "ignore")
KERNEL_STARTS = ("spawn", "fork")
ENV_PREFIX = "NBCI_"
DEFAULT_PATTERNS = ("**/*.ipynb",)
DEFAULT_OUTPUT_DIR = OUTPUT_FOLDER


@dataclass
class Config:
    """Everything one ``nbci run`` needs; paths are absolute once validated."""

    root: Path
    patterns: List[str] = field(default_factory=lambda: list(DEFAULT_PATTERNS))
    excludes: List[str] = field(default_factory=list)
    if_no_notebooks: str = "error"
    jobs: int = field(default_factory=lambda: os.cpu_count() or 1)
    helpers: Optional[int] = None  # processes driving the kernels; None: one per WORKERS_PER_HELPER jobs
    timeout: Optional[float] = 600.0  # per cell, seconds; None: no limit
    notebook_timeout: Optional[float] = None  # whole notebook, seconds
    kernel: Optional[str] = None  # overrides every notebook's kernelspec
    allow_errors: bool = False
    output_dir: Path = Path(DEFAULT_OUTPUT_DIR)
    inplace: bool = False
    startup_timeout: float = 60.0
    kernel_start: str = "spawn"  # one of KERNEL_STARTS; "fork" falls back to "spawn" per kernel
    github: bool = False  # report to GitHub (outputs, summary, annotations)
    heartbeat: float = 30.0  # seconds between progress lines for a running notebook
    retries: int = 0
    retry_on: Optional[str] = None  # regex over "ename: evalue" of a failed cell
    memory_limit: Optional[int] = None  # bytes, the kernel's process tree
    durations: Optional[Path] = None  # a previous results.json, to order and shard by duration
    shard: Optional[str] = None  # "I/N"
    changed_since: Optional[str] = None  # a git ref
    junit: Optional[Path] = None
    html: bool = False  # write a page per notebook and index.html into the output folder
    cwd: str = "notebook"  # where kernels start: notebook (its folder), root, or a folder below the root
    parameters: Dict[str, Any] = field(default_factory=dict)  # the command line's, over the settings file's
    rules: List[Rule] = field(default_factory=list)  # the settings file's per-notebook entries
    cache_dir: Optional[Path] = None  # the execution cache's folder; None: no cache
    cache_max_age: Optional[float] = 7 * 86400.0  # seconds; None: no limit
    cache_inputs: List[str] = field(default_factory=list)  # globs whose files join every key
    no_cache: bool = False
    copy_names: Dict[str, str] = field(default_factory=dict)  # text notebooks' copies not named PATH.ipynb
    check_outputs: str = "off"  # off, warn or fail: compare fresh outputs with the committed ones
    check_cells: str = "all"  # all, or marked (nbval's --nbval-lax)
    default_masks: bool = True  # apply nbci.outputs.DEFAULT_MASKS before comparing
    image_tolerance: Optional[float] = None  # None: images are not compared
    nbval_sanitize_with: Optional[Path] = None  # an nbval sanitize file: more masks
    sanitize_masks: Tuple[Mask, ...] = ()  # read from nbval_sanitize_with by validate()
    update_outputs: bool = False  # write fresh outputs back into passed and changed .ipynb sources
    mask_env: List[str] = field(default_factory=list)  # variables whose values are masked (nbci.masking)
    coverage: bool = False  # measure the repository's code the kernels run (nbci.code_coverage)
    coverage_source: List[str] = field(default_factory=list)  # folders or packages; none: coverage.py's config
    coverage_fail_under: Optional[float] = None  # percent: a lower total fails the run
    coverage_sources: Optional[Any] = None  # nbci.code_coverage.Sources, resolved by validate()
    coverage_dir: Optional[Path] = None  # the run's temporary folder for the kernels' data files

    def __post_init__(self) -> None:
        self.root = Path(self.root).resolve()
        if not Path(self.output_dir).is_absolute():
            self.output_dir = self.root / self.output_dir
        self.output_dir = Path(os.path.normpath(self.output_dir))
        if self.cache_dir is not None:
            self.cache_dir = Path(os.path.normpath(self.root / self.cache_dir))

    @property
    def notebook_defaults(self) -> NotebookSettings:
        """The per-notebook settings every notebook starts from: this run's options."""
        return NotebookSettings(self.timeout, self.notebook_timeout, self.allow_errors, self.retries, self.kernel,
                                self.cwd, check_outputs=self.check_outputs, check_cells=self.check_cells,
                                image_tolerance=self.image_tolerance, default_masks=self.default_masks)

    @property
    def caching(self) -> bool:
        """Whether this run reads and writes the execution cache."""
        return self.cache_dir is not None and not self.no_cache

    def validate(self) -> "Config":
        """Raise ``ConfigError`` naming the option and a valid value; return self when fine."""
        if not self.root.is_dir():
            raise ConfigError(f"working directory {self.root} does not exist: pass an existing folder")
        if self.if_no_notebooks not in IF_NO_NOTEBOOKS:
            raise ConfigError(
                f"--if-no-notebooks must be one of {', '.join(IF_NO_NOTEBOOKS)}, not {self.if_no_notebooks!r}"
            )
        if self.jobs < 1:
            raise ConfigError(f"--jobs must be 1 or more, not {self.jobs}")
        for name, value in (("--timeout", self.timeout), ("--notebook-timeout", self.notebook_timeout),
                            ("--heartbeat", self.heartbeat)):
            if value is not None and value <= 0:
                raise ConfigError(f"{name} must be a positive number of seconds, not {value:g}")
        if self.retries < 0:
            raise ConfigError(f"--retries must be 0 or more, not {self.retries}")
        if self.kernel_start not in KERNEL_STARTS:
            raise ConfigError(f"--kernel-start must be one of {', '.join(KERNEL_STARTS)}, not {self.kernel_start!r}")
        if self.memory_limit is not None and self.memory_limit <= 0:
            raise ConfigError("--memory-limit must be positive, e.g. 2G or 512M")
        if self.retry_on is not None:
            try:
                re.compile(self.retry_on)
            except (re.error, OverflowError, RecursionError) as exc:
                raise ConfigError(f"--retry-on is not a valid regular expression ({exc}): {self.retry_on!r}")
        if self.durations is not None and not self.durations.exists():
            raise ConfigError(f"--durations {self.durations} does not exist: pass a results.json from an earlier run, "
                              "or a folder of them")
        if self.shard is not None:
            self.shard = str(parse_shard(self.shard))
        check_cwd(self.cwd, "--cwd")
        self.validate_output_checks()
        for pattern in self.cache_inputs:
            check_cache_input(pattern, "--cache-inputs")
        check_env_names(self.mask_env, "--mask-env")
        self.validate_coverage()
        return self

    def validate_coverage(self) -> None:
        """Check ``--coverage-fail-under`` and resolve what ``--coverage`` measures."""
        fail_under = self.coverage_fail_under
        if fail_under is not None and not 0 <= fail_under <= 100:
            raise ConfigError(f"--coverage-fail-under must be a percentage from 0 to 100, not {fail_under:g}")
        if self.coverage:
            from nbci.code_coverage import resolve_sources

            self.coverage_sources = resolve_sources(self.root, self.coverage_source)

    def validate_output_checks(self) -> None:
        """Check the ``--check-outputs`` family and ``--update-outputs``; read the sanitize file."""
        if self.image_tolerance is not None:
            check_tolerance(self.image_tolerance, "--image-tolerance")
        if self.nbval_sanitize_with is not None:
            self.sanitize_masks = read_sanitize_file(self.nbval_sanitize_with)
        if self.update_outputs:
            clash = [name for name, given in (("--inplace", self.inplace), ("-p/--parameters", bool(self.parameters)))
                     if given]
            if clash:
                raise ConfigError(f"--update-outputs writes outputs of a plain run back into the sources: "
                                  f"it cannot be combined with {', '.join(clash)}")


def split_list(text: str) -> List[str]:
    """Split an action input into items: by newlines and spaces, with shell-style quotes kept."""
    items: List[str] = []
    for line in text.split("\n"):  # not splitlines(): "\f" or "\x1c" may be part of a quoted path
        try:
            items.extend(shlex.split(line, comments=False))
        except ValueError as exc:
            raise ConfigError(f"cannot split {line!r} into paths ({exc}): close the quote") from None
    return items


def parse_size(text: str) -> int:
    """Parse ``512M``, ``2G``, ``1.5GiB`` or a plain number of bytes into bytes."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kKmMgGtT]?)(?:i?[bB])?\s*", text)
    if not match:
        raise ConfigError(f"--memory-limit {text!r} is not a size: use a number with K, M or G, e.g. 2G")
    number, unit = match.groups()
    scale = {"": 1, "k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40}[unit.lower()]
    return int(Decimal(number) * scale)  # exact, and no overflow to infinity


def env_options(environ: Mapping[str, str]) -> dict:
    """The ``NBCI_*`` variables that are set and not empty, keyed by option dest (``notebook_timeout``)."""
    return {
        key[len(ENV_PREFIX):].lower(): value
        for key, value in environ.items()
        if key.startswith(ENV_PREFIX) and value.strip()
    }
