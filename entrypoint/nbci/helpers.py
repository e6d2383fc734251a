"""Helper processes: spread the per-notebook work of a run with many jobs over several processes.

One process can drive only so many kernels before its own CPU (message handling, executed copies)
is what they wait for. With more jobs than that, the coordinating process starts helpers (``python
-m nbci.helpers``), each running a ``runner.Runner`` for its group of workers, and keeps each fed
from the one ordered queue; results come back to the coordinator, which alone reports and writes
results.json.

Protocol, one line per message:
  coordinator -> helper: first the run's ``Config`` (pickled, base64), then ``{"workers": N, "key":
      HEX}`` (a random key for this helper); then ``{"jobs": [[INDEX, PATH, EXPECTED], ...]}`` and
      finally ``{"close": true}``.
  helper -> coordinator, ``MAC JSON`` (MAC: HMAC-SHA256 of the JSON with the key, so a line a kernel
      writes into the pipe through ``/proc`` is told apart and ignored): ``{"started": INDEX}``,
      ``{"heartbeat": [PATH, CELL, SOURCE, ELAPSED, RSS]}``, ``{"finished": INDEX, "result": {...},
      "log": TEXT}``, and last ``{"done": CPU_SECONDS}``.
The coordinator reads a helper until its output ends, and at most ``DRAIN_GRACE`` seconds after the
helper exited (a process left behind may hold the pipe open). A helper whose ``Runner`` fails reports
the notebooks it was running as nbci's errors, kills its kernels and exits; the coordinator hands the
ones it had not started to the other helpers.
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
import hashlib
import hmac
import json
import os
import pickle
import signal
import sys
import time
from dataclasses import dataclass, field
from typing import AsyncIterator, Deque, Dict, List, Optional, Set

from nbci import INSTALL_FOLDER
from nbci.config import Config
from nbci.kernels import prctl, without_runner_files
from nbci.report.workflow_commands import one_line
from nbci.results import CRASHED, CellError, NotebookResult
from nbci.runner import PREFETCH_PER_WORKER, Job, Runner, Sink, engine_cpu, internal_error_result

LINE_LIMIT = 1 << 26  # bytes of one message: results are bounded well below this
CANCEL_GRACE = 10.0  # seconds a cancelled helper may take to report and exit before it is killed
PR_SET_PDEATHSIG = 1
HELPER_EXITED = "HelperExited"  # the ename of a notebook whose helper process died under it
DRAIN_GRACE = 5.0  # seconds the coordinator still reads a helper that exited
EXIT_POLL = 0.5  # seconds between looks at whether a silent helper is still alive
ALIVE_INTERVAL = 5.0  # seconds between a helper's "alive" messages
SILENCE_LIMIT = 60.0  # seconds without a message after which a helper (stopped, hung) is killed


@dataclass
class Helper:
    """One helper process as the coordinator sees it: the jobs it holds and what it reported."""

    process: asyncio.subprocess.Process
    workers: int
    held: Dict[int, Job] = field(default_factory=dict)  # sent, not finished
    started: Set[int] = field(default_factory=set)
    closed: bool = False
    cpu: Optional[float] = None
    key: bytes = field(default_factory=lambda: os.urandom(32))  # signs its messages
    ignored: int = 0  # lines on its channel that it did not sign
    silenced: bool = False  # killed for saying nothing for SILENCE_LIMIT seconds

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
            helper = Helper(process, workers)
            process.stdin.write(payload + json.dumps({"workers": workers, "key": helper.key.hex()}).encode() + b"\n")
            self.helpers.append(helper)
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
            async for line in helper_lines(helper):
                message = verified(helper.key, line)
                if message is None or not self._handle(helper, message):
                    helper.ignored += 1
        finally:
            if helper.process.returncode is None and (self.cancelled or helper.cpu is None):
                await self._stop(helper)
            code = await helper.process.wait()
            await asyncio.wait({relay}, timeout=DRAIN_GRACE)
            relay.cancel()
        if helper.ignored:
            print(f"nbci: warning: ignored {helper.ignored} line(s) on a helper's channel that it did not write "
                  "(a notebook's process wrote into it)", file=sys.stderr, flush=True)
        self._lost(helper, code)

    def _handle(self, helper: Helper, message: dict) -> bool:
        """Act on one verified message; False when it is not one the protocol knows."""
        if "finished" in message and message["finished"] in helper.held:
            job = helper.held.pop(message["finished"])
            helper.started.discard(job.index)
            self.sink.finished(job, NotebookResult.from_json(message["result"]), message.get("log", ""))
            self._deal()
        elif "started" in message and message["started"] in helper.held:
            helper.started.add(message["started"])
            self.sink.started(helper.held[message["started"]])
            self._deal()
        elif "heartbeat" in message:
            self.sink.heartbeat(*message["heartbeat"])
        elif "done" in message:
            helper.cpu = float(message["done"])
        elif "alive" in message:
            pass
        else:
            return False
        return True

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
            self.sink.finished(helper.held[index], exited_result(helper.held[index], code, helper.silenced), "")
        helper.held.clear()
        helper.closed = True
        self.queue.extendleft(reversed(waiting))
        self._deal()
        if not any(h.process.returncode is None and not h.closed for h in self.helpers):
            while self.queue:  # no helper left to run them: say so rather than drop them
                job = self.queue.popleft()
                self.sink.finished(job, exited_result(job, code), "")


def exited_result(job: Job, code: int, silenced: bool = False) -> NotebookResult:
    """The result of a notebook whose helper process ended before it did."""
    why = (f"said nothing for {SILENCE_LIMIT:g} s (stopped or hung) and was killed" if silenced
           else f"exited (code {code}); this is a bug in nbci unless the notebook killed it")
    return NotebookResult(job.path, CRASHED, error=CellError(HELPER_EXITED, f"nbci's helper process running it {why}"))


async def helper_lines(helper: Helper) -> AsyncIterator[bytes]:
    """The lines a helper writes, until its output ends or ``DRAIN_GRACE`` seconds after it exited
    (never waiting on a pipe that something it left behind holds open); none past ``LINE_LIMIT``.
    A helper silent for ``SILENCE_LIMIT`` seconds (stopped by a notebook, or hung) is killed."""
    process = helper.process
    while True:
        reading = asyncio.ensure_future(process.stdout.readline())
        heard = time.monotonic()
        while not reading.done():
            exited = process.returncode is not None
            await asyncio.wait({reading}, timeout=DRAIN_GRACE if exited else EXIT_POLL)
            if exited and not reading.done():
                reading.cancel()
                return
            if not exited and not reading.done() and time.monotonic() - heard > SILENCE_LIMIT:
                helper.silenced = True
                process.kill()
        try:
            line = reading.result()
        except ValueError:  # a line over LINE_LIMIT: not one a helper writes; the helper is stopped after
            return
        if not line:
            return
        yield line


def verified(key: bytes, line: bytes) -> Optional[dict]:
    """The message a helper signed with ``key`` on this line, or None for any other line."""
    mac, _, payload = line.rstrip(b"\n").partition(b" ")
    if not hmac.compare_digest(mac, sign(key, payload)):
        return None
    try:
        message = json.loads(payload)
    except ValueError:
        return None
    return message if isinstance(message, dict) else None


def sign(key: bytes, payload: bytes) -> bytes:
    return hmac.new(key, payload, hashlib.sha256).hexdigest().encode()


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

    def __init__(self, channel, key: bytes = b"") -> None:
        self.channel, self.key = channel, key

    def send(self, message: dict) -> None:
        payload = json.dumps(message).encode()
        self.channel.write(sign(self.key, payload) + b" " + payload + b"\n")
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
    start = json.loads(await reader.readline())
    sink.key = bytes.fromhex(start["key"])
    runner = Runner(config, sink, start["workers"])
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, runner.cancel, signum)

    async def receive() -> None:
        while not runner.closed:
            jobs = parse_jobs(await reader.readline())
            if jobs:
                runner.add(jobs)
            else:  # closed, ended, or a line the coordinator did not write: finish what it has
                runner.close()

    async def keep_alive() -> None:
        while True:
            await asyncio.sleep(ALIVE_INTERVAL)
            sink.send({"alive": True})

    receiving, alive = asyncio.ensure_future(receive()), asyncio.ensure_future(keep_alive())
    try:
        await runner.run()
    except Exception as exc:  # it cannot go on: what it was running is nbci's error, the rest goes back
        runner.cancel()
        for job in list(runner.held.values()):
            sink.finished(job, internal_error_result(job.path, exc), "")
        raise
    finally:
        receiving.cancel()
        alive.cancel()
    sink.send({"done": engine_cpu()})


def parse_jobs(line: bytes) -> List[Job]:
    """The jobs a coordinator's line hands over; none for ``close``, the end of input, or a line that is
    not a message (something else wrote into the pipe: the helper then ends, and the coordinator gives
    what it had not started to the others)."""
    try:
        return [Job(int(index), str(path), float(expected)) for index, path, expected in json.loads(line)["jobs"]]
    except (ValueError, TypeError, KeyError):
        if line and line.strip() != b'{"close": true}':
            print("nbci: warning: a helper read a line its coordinator did not write; it ends after its "
                  "running notebooks", file=sys.stderr, flush=True)
        return []


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
