"""Helper processes: spread the per-notebook work of a run with many jobs over several processes.

One process can drive only so many kernels before its own CPU (message handling, executed copies)
is what they wait for. With more jobs than that, the coordinating process starts helpers (``python
-m nbci.helpers``), each running a ``runner.Runner`` for its group of workers, and keeps each fed
from the one ordered queue; results come back to the coordinator, which alone reports and writes
results.json.

Protocol, one line per message:
  coordinator -> helper: first the run's ``Config`` (pickled, base64) and the worker count as
      JSON; then ``{"jobs": [[INDEX, PATH, EXPECTED], ...]}`` and finally ``{"close": true}``.
  helper -> coordinator, JSON: ``{"started": INDEX}``, ``{"heartbeat": [PATH, CELL, SOURCE,
      ELAPSED, RSS]}``, ``{"finished": INDEX, "result": {...}, "log": TEXT}``, and last
      ``{"done": CPU_SECONDS}``.
Cancellation is a signal: the coordinator sends SIGTERM, the helper cancels its ``Runner`` (kills
every kernel at once), reports the notebooks that were running as cancelled, and exits. A helper
whose coordinator dies gets SIGTERM from the kernel (Linux) or sees its input end.

Results are JSON, never pickles: they hold what notebooks printed. A helper's own stderr is relayed
line by line, made inert, through the coordinator's.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import json
import os
import pickle
import signal
import sys
from dataclasses import dataclass, field
from typing import Deque, Dict, List, Optional, Set

from nbci import INSTALL_FOLDER
from nbci.config import Config
from nbci.kernels import prctl, without_runner_files
from nbci.report.workflow_commands import one_line
from nbci.results import CRASHED, CellError, NotebookResult
from nbci.runner import PREFETCH_PER_WORKER, Job, Runner, Sink, engine_cpu

LINE_LIMIT = 1 << 26  # bytes of one message: results are bounded well below this
CANCEL_GRACE = 10.0  # seconds a cancelled helper may take to report and exit before it is killed
PR_SET_PDEATHSIG = 1
HELPER_EXITED = "HelperExited"  # the ename of a notebook whose helper process died under it


@dataclass
class Helper:
    """One helper process as the coordinator sees it: the jobs it holds and what it reported."""

    process: asyncio.subprocess.Process
    workers: int
    held: Dict[int, Job] = field(default_factory=dict)  # sent, not finished
    started: Set[int] = field(default_factory=set)
    closed: bool = False
    cpu: Optional[float] = None

    @property
    def capacity(self) -> int:
        """Jobs it may hold: one running per worker plus those its kernels are started ahead for."""
        return self.workers * (1 + PREFETCH_PER_WORKER)

    def send(self, message: dict) -> None:
        if self.process.stdin is not None and not self.process.stdin.is_closing():
            self.process.stdin.write(json.dumps(message).encode() + b"\n")


class HelperGroup:
    """Runs a queue of jobs on helper processes of the given worker counts; results go to ``sink``."""

    def __init__(self, config: Config, sink: Sink, sizes: List[int]) -> None:
        self.config, self.sink, self.sizes = config, sink, sizes
        self.helpers: List[Helper] = []
        self.queue: Deque[Job] = collections.deque()
        self.cancelled = False
        self.cpu = 0.0  # CPU seconds the helpers reported

    def cancel(self, signum: Optional[int] = None) -> None:
        """Stop handing out jobs and tell every helper to cancel (signal-handler safe)."""
        self.cancelled = True
        for helper in self.helpers:
            if helper.process.returncode is None:
                helper.process.send_signal(signal.SIGTERM)

    async def run(self, queue: Deque[Job]) -> None:
        """Start the helpers, keep them fed until the queue is empty, and wait for all to end."""
        self.queue = queue
        payload = base64.b64encode(pickle.dumps(self.config)) + b"\n"
        for workers in self.sizes:
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "nbci.helpers", str(os.getpid()), stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, limit=LINE_LIMIT,
                env=without_runner_files(os.environ), cwd=INSTALL_FOLDER)
            process.stdin.write(payload + json.dumps(workers).encode() + b"\n")
            self.helpers.append(Helper(process, workers))
            if self.cancelled:  # a signal while starting: this one missed it
                process.send_signal(signal.SIGTERM)
        self._deal()
        await asyncio.gather(*(self._serve(helper) for helper in self.helpers))
        self.cpu = sum(helper.cpu or 0.0 for helper in self.helpers)

    def _deal(self) -> None:
        """Hand out jobs one at a time round the helpers, longest first, until each is full; close the
        helpers' queues once every job is running or done (until then a helper that dies can hand
        back the jobs it had not started)."""
        while self.queue and not self.cancelled:
            hungry = [h for h in self.helpers if h.process.returncode is None and not h.closed
                      and len(h.held) < h.capacity]
            if not hungry:
                break
            for helper in hungry:
                if self.queue:
                    self._give(helper, [self.queue.popleft()])
        waiting = any(len(h.held) > len(h.started) for h in self.helpers if h.process.returncode is None)
        if self.cancelled or not (self.queue or waiting):  # nothing a dying helper could hand back
            for helper in self.helpers:
                if not helper.closed:
                    helper.closed = True
                    helper.send({"close": True})

    def _give(self, helper: Helper, jobs: List[Job]) -> None:
        for job in jobs:
            helper.held[job.index] = job
        helper.send({"jobs": [[job.index, job.path, job.expected] for job in jobs]})

    async def _serve(self, helper: Helper) -> None:
        """Read one helper's messages until it exits, then account for what it still held."""
        relay = asyncio.ensure_future(relay_stderr(helper.process.stderr))
        try:
            while True:
                try:
                    line = await helper.process.stdout.readline()
                except ValueError:  # a message over LINE_LIMIT: a bug; the helper is killed below
                    break
                if not line:
                    break
                self._handle(helper, json.loads(line))
        finally:
            if helper.process.returncode is None and (self.cancelled or helper.cpu is None):
                await self._stop(helper)
            code = await helper.process.wait()
            await relay
        self._lost(helper, code)

    def _handle(self, helper: Helper, message: dict) -> None:
        if "finished" in message:
            job = helper.held.pop(message["finished"])
            helper.started.discard(job.index)
            self.sink.finished(job, NotebookResult.from_json(message["result"]), message["log"])
            self._deal()
        elif "started" in message:
            helper.started.add(message["started"])
            self.sink.started(helper.held[message["started"]])
            self._deal()
        elif "heartbeat" in message:
            self.sink.heartbeat(*message["heartbeat"])
        elif "done" in message:
            helper.cpu = message["done"]

    async def _stop(self, helper: Helper) -> None:
        """Give a helper ``CANCEL_GRACE`` seconds to end, then kill it."""
        try:
            await asyncio.wait_for(helper.process.wait(), CANCEL_GRACE)
        except asyncio.TimeoutError:
            helper.process.kill()

    def _lost(self, helper: Helper, code: int) -> None:
        """A helper ended holding jobs: those it ran failed with it; the rest go to the others."""
        if self.cancelled or not helper.held:
            return
        waiting = [job for index, job in helper.held.items() if index not in helper.started]
        for index in sorted(helper.started):
            self.sink.finished(helper.held[index], exited_result(helper.held[index], code), "")
        helper.held.clear()
        helper.closed = True
        self.queue.extendleft(reversed(waiting))
        self._deal()
        if not any(h.process.returncode is None and not h.closed for h in self.helpers):
            while self.queue:  # no helper left to run them: say so rather than drop them
                job = self.queue.popleft()
                self.sink.finished(job, exited_result(job, code), "")


def exited_result(job: Job, code: int) -> NotebookResult:
    """The result of a notebook whose helper process ended before it did."""
    return NotebookResult(job.path, CRASHED, error=CellError(
        HELPER_EXITED, f"nbci's helper process running it exited (code {code}); this is a bug in nbci"))


async def relay_stderr(stream: Optional[asyncio.StreamReader]) -> None:
    """Copy a helper's stderr lines to ours, one inert line each."""
    while stream is not None:
        try:
            line = await stream.readline()
        except ValueError:
            continue
        if not line:
            return
        print(f"nbci: {one_line(line.decode('utf-8', 'replace').rstrip())}", file=sys.stderr, flush=True)


# --- the helper process ------------------------------------------------------------------------


class ChannelSink(Sink):
    """Writes a ``Runner``'s events to the coordinator, one JSON line each."""

    def __init__(self, channel) -> None:
        self.channel = channel

    def send(self, message: dict) -> None:
        self.channel.write(json.dumps(message).encode() + b"\n")
        self.channel.flush()

    def started(self, job: Job) -> None:
        self.send({"started": job.index})

    def heartbeat(self, path, cell_index, source_line, elapsed, rss) -> None:
        self.send({"heartbeat": [path, cell_index, source_line, elapsed, rss]})

    def finished(self, job: Job, result: NotebookResult, log: str) -> None:
        self.send({"finished": job.index, "result": result.to_json(), "log": log})


async def serve(sink: ChannelSink) -> None:
    """Run the jobs the coordinator sends on stdin until it closes the queue, or a signal cancels."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=LINE_LIMIT)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    config: Config = pickle.loads(base64.b64decode(await reader.readline()))
    runner = Runner(config, sink, json.loads(await reader.readline()))
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, runner.cancel, signum)

    async def receive() -> None:
        while not runner.closed:
            line = await reader.readline()
            message = json.loads(line) if line else {"close": True}
            if "jobs" in message:
                runner.add(Job(index, path, expected) for index, path, expected in message["jobs"])
            if message.get("close"):
                runner.close()

    receiving = asyncio.ensure_future(receive())
    try:
        await runner.run()
    finally:
        receiving.cancel()
    sink.send({"done": engine_cpu()})


def die_with_parent(parent: int) -> None:
    """Get SIGTERM when the coordinator dies (Linux); exit now if it already has."""
    prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent:
        sys.exit(1)


def main() -> None:
    die_with_parent(int(sys.argv[1]))
    channel = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # anything printed by accident goes to the relayed stderr, not the channel
    sys.stdout = sys.stderr
    asyncio.run(serve(ChannelSink(channel)))


if __name__ == "__main__":
    main()
