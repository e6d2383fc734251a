"""Publish the executed notebooks: one commit per run on a branch of this or another repository.

The commit is built in a scratch repository under RUNNER_TEMP from the branch's current tip (an
orphan commit when the branch is missing): the published files are added or replaced, everything
else on the branch stays as it was. It is pushed without force; when the branch moved meanwhile,
the same files are committed again on the new tip, a few times, then the step fails.
The checkout's git configuration and credentials are never used: the scratch repository has its
own, and the token reaches git only as an HTTP header in its environment (masked in the log).

Environment:
  NBCI_PUBLISH_BRANCH      the branch to commit to (empty: publish nothing)
  NBCI_PUBLISH_REPOSITORY  owner/name of the repository (default: GITHUB_REPOSITORY)
  NBCI_PUBLISH_TOKEN       token that may push there (empty: git's own credentials)
  NBCI_PUBLISH_NOTEBOOKS   ``passed`` (default: passed, flaky and cached ones) or ``all``
  NBCI_HTML                ``true``: also each published notebook's page and index.html
  NBCI_RESULTS             the run's results.json;  NBCI_OUTPUT_DIR  its output folder
  GITHUB_EVENT_NAME, GITHUB_SHA, GITHUB_SERVER_URL, GITHUB_RUN_ID, RUNNER_TEMP
  GITHUB_REF_NAME, GITHUB_EVENT_PATH
                           the branch being built and the event (its repository's default branch):
                           neither is ever publish-branch of this repository, whose sources they hold
Outputs: ``commit`` (the published commit; empty when skipped or unchanged).
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Mapping, Optional

from common import StepError, main, required, wc

PUBLISH_EVENTS = ("push", "workflow_dispatch", "schedule")
PASSING = ("passed", "flaky", "cached")
BOT = ("github-actions[bot]", "41898282+github-actions[bot]@users.noreply.github.com")
PUSH_ATTEMPTS = 3  # pushes tried, each on the branch's newest tip, before the step gives up
TIP_REF = "refs/nbci/tip"
REPOSITORY = re.compile(r"[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+")
TOKEN = re.compile(r"[A-Za-z0-9_.~+/=-]+")
INDEX_PAGE = "index.html"


@dataclass(frozen=True)
class Target:
    """Where the files go: a branch of a repository, and the token that may push to it."""

    repository: str
    branch: str
    url: str
    token: str = field(default="", repr=False)


@dataclass(frozen=True)
class Entry:
    """One file to publish: its path on the branch and the file it is read from."""

    path: str
    source: Path


def skip_reason(environ: Mapping[str, str]) -> Optional[str]:
    """Why this run publishes nothing (one line), or None when it publishes."""
    event = environ.get("GITHUB_EVENT_NAME", "")
    if event not in PUBLISH_EVENTS:
        return (f"publish-branch: nothing published on a {wc.one_line(event or 'unknown')} event; "
                f"only {', '.join(PUBLISH_EVENTS)} runs publish")
    return None


def target(environ: Mapping[str, str]) -> Target:
    """The validated branch, repository and token; a StepError names the bad input."""
    branch = required(environ, "NBCI_PUBLISH_BRANCH")
    repository = environ.get("NBCI_PUBLISH_REPOSITORY") or required(environ, "GITHUB_REPOSITORY")
    token = environ.get("NBCI_PUBLISH_TOKEN", "")
    if branch.startswith(("-", "refs/")) or not valid_branch(branch):
        raise StepError(f"publish-branch {wc.one_line(branch)!r} is no valid branch name: name one like gh-pages")
    if not REPOSITORY.fullmatch(repository) or any(part in (".", "..") for part in repository.split("/")):
        raise StepError(f"publish-repository {wc.one_line(repository)!r} is not owner/name")
    if repository.lower() == environ.get("GITHUB_REPOSITORY", "").lower() and branch in source_branches(environ):
        raise StepError(f"publish-branch {wc.one_line(branch)!r} holds this repository's sources (the default branch, "
                        "or the one being built): name a branch of its own, like gh-pages")
    if token and not TOKEN.fullmatch(token):
        raise StepError("publish-token holds characters no token has: pass the secret itself")
    server = (environ.get("GITHUB_SERVER_URL") or "https://github.com").rstrip("/")
    return Target(repository, branch, f"{server}/{repository}.git", token)


def source_branches(environ: Mapping[str, str]) -> List[str]:
    """The branches of this repository that hold its sources: the one being built and the default one."""
    branches = [environ.get("GITHUB_REF_NAME", "")]
    try:
        event = json.loads(Path(environ["GITHUB_EVENT_PATH"]).read_text(encoding="utf-8"))
        branches.append(str(event["repository"]["default_branch"]))
    except (KeyError, TypeError, OSError, ValueError):
        pass  # no event file, or an event without its repository: the branch being built alone
    return [branch for branch in branches if branch]


def valid_branch(branch: str) -> bool:
    proc = subprocess.run(["git", "check-ref-format", f"refs/heads/{branch}"], capture_output=True)
    return proc.returncode == 0


def safe_path(path: str) -> bool:
    """True for a relative path git can hold: no empty, ``.``, ``..`` or ``.git`` part."""
    parts = path.split("/")
    return all(part not in ("", ".", "..") and part.lower() != ".git" for part in parts) and "\0" not in path


def entries(results: Path, output_dir: Path, which: str, html: bool) -> List[Entry]:
    """The executed copies (and their pages, and the index, with ``html``) of the notebooks to publish."""
    if which not in ("passed", "all"):
        raise StepError(f"publish-notebooks must be passed or all, not {wc.one_line(which)!r}")
    root = output_dir.resolve()
    found: Dict[str, Entry] = {}
    for result in json.loads(results.read_text(encoding="utf-8"))["notebooks"]:
        if which == "all" or result.get("status") in PASSING:
            for source in files_of(result, root, html):
                add(found, source, root)
    if html and found:
        add(found, root / INDEX_PAGE, root)
    return sorted(found.values(), key=lambda entry: entry.path)


def files_of(result: Mapping[str, object], root: Path, html: bool) -> List[Path]:
    """A result's executed copy, and with ``html`` its page (``a.html``, or ``index.ipynb.html``)."""
    if not isinstance(result.get("output_path"), str):
        return []
    copy = Path(os.path.abspath(Path(os.getcwd(), str(result["output_path"]))))
    if not html or copy.suffix != ".ipynb":
        return [copy]
    page = copy.with_suffix(".html")
    if page == root / INDEX_PAGE:
        page = root / f"{result.get('path')}.html"
    return [copy, page]


def add(found: Dict[str, Entry], source: Path, root: Path) -> None:
    """Add ``source`` when it is a regular file (no link) inside ``root`` whose path git can hold."""
    real = Path(os.path.realpath(source.parent)) / source.name
    relative = real.relative_to(root).as_posix() if root in real.parents else None
    if relative and safe_path(relative) and real.is_file() and not real.is_symlink():
        found[relative] = Entry(relative, real)
    else:
        print(f"not published: {wc.one_line(str(source))} (no regular file inside the output folder)", flush=True)


def credentials(token: str) -> str:
    """The token as HTTP basic credentials, as GitHub takes it from git."""
    return base64.b64encode(f"x-access-token:{token}".encode()).decode()


def git_environment(environ: Mapping[str, str], target: Target, scratch: Path) -> Dict[str, str]:
    """git's environment: the scratch repository, the bot as author, no prompt, the token as a header."""
    env = {key: value for key, value in environ.items() if not key.startswith(("GIT_DIR", "GIT_WORK", "GIT_INDEX"))}
    env.update(GIT_DIR=str(scratch / "git"), GIT_INDEX_FILE=str(scratch / "index"), GIT_TERMINAL_PROMPT="0",
               GIT_AUTHOR_NAME=BOT[0], GIT_AUTHOR_EMAIL=BOT[1], GIT_COMMITTER_NAME=BOT[0], GIT_COMMITTER_EMAIL=BOT[1])
    settings = [("credential.helper", ""), ("core.hooksPath", os.devnull), ("http.extraheader", "")]
    server = target.url[: target.url.index("/", target.url.index("://") + 3) + 1]  # https://github.com/
    settings.append((f"http.{server}.extraheader", ""))  # an empty value drops headers configured before
    if target.token:
        settings.append((f"http.{server}.extraheader", f"AUTHORIZATION: basic {credentials(target.token)}"))
    count = int(environ.get("GIT_CONFIG_COUNT") or 0)
    for number, (key, value) in enumerate(settings, count):
        env[f"GIT_CONFIG_KEY_{number}"], env[f"GIT_CONFIG_VALUE_{number}"] = key, value
    env["GIT_CONFIG_COUNT"] = str(count + len(settings))
    return env


@dataclass
class Scratch:
    """A bare scratch repository that builds the commit and pushes it."""

    target: Target
    env: Dict[str, str]
    blobs: Dict[str, str] = field(default_factory=dict)  # path on the branch -> blob id

    def git(self, *args: str, data: bytes = b"", check: bool = True) -> subprocess.CompletedProcess:
        """Run git with arguments (never a shell), ``data`` on its standard input."""
        proc = subprocess.run(["git", *args], env=self.env, input=data, capture_output=True)
        if check and proc.returncode != 0:
            raise StepError(git_failure(args[0], proc))
        return proc

    def out(self, *args: str, data: bytes = b"") -> str:
        return self.git(*args, data=data).stdout.decode().strip()

    def remote_tip(self) -> Optional[str]:
        """The branch's commit on the remote, or None when the branch does not exist."""
        ref = f"refs/heads/{self.target.branch}"
        listed = self.out("ls-remote", "--heads", "--", self.target.url, ref)
        # ls-remote matches the pattern's tail: a/refs/heads/NAME is no match for NAME
        tips = [line.split()[0] for line in listed.splitlines() if line.split()[1:] == [ref]]
        return tips[0] if tips else None

    def fetch_tip(self) -> Optional[str]:
        """Fetch the branch's newest commit (not its history); None when the branch is missing."""
        if self.remote_tip() is None:
            return None
        self.git("fetch", "--quiet", "--no-tags", "--depth=1", "--", self.target.url,
                 f"+refs/heads/{self.target.branch}:{TIP_REF}")
        return self.out("rev-parse", "--verify", f"{TIP_REF}^{{commit}}")

    def store(self, files: List[Entry]) -> None:
        """Write each file's content into the scratch repository, read once."""
        for entry in files:
            self.blobs[entry.path] = self.out("hash-object", "-w", "--stdin", data=entry.source.read_bytes())

    def commit(self, tip: Optional[str], message: str) -> Optional[str]:
        """A commit of ``tip``'s tree with the stored files added or replaced; None when nothing changed."""
        self.git("read-tree", tip) if tip else self.git("read-tree", "--empty")
        lines = b"".join(b"100644 %s\t%s\0" % (blob.encode(), os.fsencode(path)) for path, blob in self.blobs.items())
        self.git("update-index", "--add", "--replace", "-z", "--index-info", data=lines)
        tree = self.out("write-tree")
        if tip and tree == self.out("rev-parse", f"{tip}^{{tree}}"):
            return None
        parent = ["-p", tip] if tip else []
        return self.out("commit-tree", "--no-gpg-sign", tree, *parent, "-F", "-", data=message.encode())

    def push(self, commit: str) -> subprocess.CompletedProcess:
        """Push ``commit`` to the branch, fast-forward only."""
        return self.git("push", "--quiet", "--no-verify", "--", self.target.url,
                        f"{commit}:refs/heads/{self.target.branch}", check=False)


def git_failure(command: str, proc: subprocess.CompletedProcess) -> str:
    """git's failure in a few lines, none of them a workflow command."""
    lines = [line.strip() for line in proc.stderr.decode("utf-8", "replace").splitlines() if line.strip()]
    return "\n".join([f"git {command} failed (exit code {proc.returncode})",
                      *(wc.one_line(line) for line in lines[-5:])])


def message(environ: Mapping[str, str], count: int, which: str) -> str:
    """The commit message: the source commit and the run (never a notebook's name)."""
    sha = environ.get("GITHUB_SHA", "unknown")
    run = "{}/{}/actions/runs/{}".format(environ.get("GITHUB_SERVER_URL", "https://github.com"),
                                         environ.get("GITHUB_REPOSITORY", ""), environ.get("GITHUB_RUN_ID", ""))
    kind = "notebooks that passed" if which == "passed" else "notebooks"
    return f"Executed notebooks of {sha}\n\n{count} files: the {kind} of {sha}, executed by {run}\n"


def publish_commit(scratch: Scratch, text: str) -> str:
    """Commit on the branch's tip and push; on a moved branch, again on its new tip. Return the commit."""
    for attempt in range(1, PUSH_ATTEMPTS + 1):
        tip = scratch.fetch_tip()
        commit = scratch.commit(tip, text)
        if commit is None:
            print("publish: the branch already holds these files; nothing to commit", flush=True)
            return ""
        proc = scratch.push(commit)
        if proc.returncode == 0:
            print(f"publish: {commit} on {scratch.target.branch} of {scratch.target.repository}", flush=True)
            return commit
        if scratch.remote_tip() == tip:
            raise StepError(git_failure("push", proc))
        print(f"publish: {scratch.target.branch} moved during push {attempt}; committing again on its new tip",
              flush=True)
    raise StepError(f"{scratch.target.branch} of {scratch.target.repository} moved during each of "
                    f"{PUSH_ATTEMPTS} pushes; nothing was forced: run the job again")


def publish(environ: Mapping[str, str]) -> Dict[str, str]:
    """Publish the run's files as one commit; return the step outputs."""
    reason = skip_reason(environ)
    if reason:
        print(wc.annotation("notice", reason, title="notebook-ci: not published"), flush=True)
        return {"commit": ""}
    where = target(environ)
    if where.token:  # masked before git can print anything
        for secret in (where.token, credentials(where.token)):
            print(wc.command("add-mask", secret), flush=True)
    which = environ.get("NBCI_PUBLISH_NOTEBOOKS") or "passed"
    files = entries(Path(required(environ, "NBCI_RESULTS")), Path(required(environ, "NBCI_OUTPUT_DIR")),
                    which, environ.get("NBCI_HTML") == "true")
    if not files:
        print("publish: no executed notebook to publish", flush=True)
        return {"commit": ""}
    scratch_dir = Path(required(environ, "RUNNER_TEMP")) / "nbci-publish"
    shutil.rmtree(scratch_dir, ignore_errors=True)
    scratch_dir.mkdir(parents=True)
    scratch = Scratch(where, git_environment(environ, where, scratch_dir))
    scratch.git("init", "--quiet", "--bare")
    scratch.store(files)
    print(f"publish: {len(files)} files to {where.branch} of {where.repository}", flush=True)
    return {"commit": publish_commit(scratch, message(environ, len(files), which))}


if __name__ == "__main__":
    sys.exit(main("Publish the executed notebooks", publish))
