"""A kernel's IOPub channel read with bounded memory: oversized outputs are cut before decoding.

A notebook printing hundreds of MB sends stream messages that large, and decoding one costs a few
times its size (bytes, JSON, str). nbci keeps at most ``STREAM_CAP`` characters of stream output
per cell anyway, so a longer stream message is cut to its first ``STREAM_CAP`` bytes before it is
decoded, and any other output message over ``OUTPUT_CAP`` becomes a one-line note. The signature is
checked on the whole message first. ZeroMQ receives each part of a message whole, once, so a part
over ``MESSAGE_CAP`` bytes is refused as it arrives (``ZMQ_MAXMSGSIZE``): ZeroMQ drops that
connection and reconnects, and the cell being run gets a note saying that output was lost.
"""

from __future__ import annotations

import json
import re
from hmac import compare_digest
from typing import Any, Dict, List, Optional

import zmq
import zmq.asyncio
from jupyter_client.asynchronous import AsyncKernelClient
from jupyter_client.channels import AsyncZMQSocketChannel
from queue import Empty
from zmq.utils.monitor import parse_monitor_message

STREAM_CAP = 4 * 2**20  # bytes of one stream message, and characters of stream output per cell
OUTPUT_CAP = 32 * 2**20  # bytes of any other output message (an image, a big HTML table)
MESSAGE_CAP = 64 * 2**20  # bytes of one part of any IOPub message that nbci receives at all
OUTPUT_TYPES = ("display_data", "execute_result", "update_display_data", "error")
STREAM_NAME = re.compile(rb'"name"\s*:\s*"(stdout|stderr)"')
TEXT_START = re.compile(rb'"text"\s*:\s*"')


def json_string_prefix(body: bytes) -> str:
    """Decode the start of a JSON string's body cut at any byte (mid-escape, mid-UTF-8): the
    longest prefix that decodes to text that can be written as UTF-8."""
    for end in range(len(body), max(len(body) - 16, -1), -1):
        try:
            text = json.loads(b'"' + body[:end] + b'"')
            text.encode("utf-8")  # a lone surrogate from a cut "\ud83d\ude00" fails here
            return text
        except ValueError:
            continue
    return ""


def cut_stream(content: memoryview) -> Dict[str, Any]:
    """The content of a stream message kept to its first ``STREAM_CAP`` bytes, with a marker."""
    head = bytes(content[:256])
    name, start = STREAM_NAME.search(head), TEXT_START.search(head)
    kept = json_string_prefix(bytes(content[start.end():start.end() + STREAM_CAP])) if start else ""
    marker = (f"\n[nbci: stream output truncated: one message of {len(content) / 2**20:.0f} MiB, "
              f"the first {STREAM_CAP // 2**20} MiB kept]\n")
    return {"name": name.group(1).decode() if name else "stdout", "text": kept + marker}


def output_note(msg_type: str, size: int) -> Dict[str, Any]:
    """Stream content standing in for an output too large to keep."""
    return {"name": "stdout", "text": f"[nbci: a {msg_type} output of {size / 2**20:.0f} MiB was dropped: "
                                      f"outputs over {OUTPUT_CAP // 2**20} MiB are not kept]\n"}


RESET_ID = "nbci-iopub-reset"  # msg_id of the note that stands in for what a dropped connection lost
RESET_KEY = "nbci_reset"  # set on the note itself: a key no message deserialized from a kernel can carry


def reset_note(parent: Dict[str, Any]) -> Dict[str, Any]:
    """A stream message, child of ``parent``, saying that the IOPub connection dropped."""
    header = {"msg_type": "stream", "msg_id": RESET_ID, "session": "", "username": "", "date": "", "version": "5.3"}
    text = (f"[nbci: the connection to the kernel's output dropped (a message over {MESSAGE_CAP // 2**20} MiB "
            f"is refused, or the kernel exited); outputs sent around then are missing]\n")
    return {"header": header, "msg_type": "stream", "msg_id": RESET_ID, "parent_header": parent, "metadata": {},
            "buffers": [], "content": {"name": "stderr", "text": text}, RESET_KEY: True}


def connect_bounded(client: AsyncKernelClient) -> None:
    """Make ``client`` read IOPub through ``BoundedIOPubChannel``, refusing parts over ``MESSAGE_CAP``."""

    def connect_iopub(identity: Optional[bytes] = None) -> zmq.Socket:
        socket = client.context.socket(zmq.SUB)
        socket.linger = 1000
        socket.setsockopt(zmq.MAXMSGSIZE, MESSAGE_CAP)  # read when connecting: set before connect
        socket.setsockopt(zmq.SUBSCRIBE, b"")
        socket.connect(client._make_url("iopub"))
        return socket

    execute = client.execute

    def execute_noted(*args: Any, **kwargs: Any) -> Any:
        """Send an execute request; a note about a dropped connection goes to the cell it runs."""
        msg_id = execute(*args, **kwargs)
        if isinstance(msg_id, str) and isinstance(client._iopub_channel, BoundedIOPubChannel):
            client._iopub_channel.parent = {"msg_id": msg_id, "msg_type": "execute_request"}
        return msg_id

    client.iopub_channel_class = BoundedIOPubChannel
    client.connect_iopub = connect_iopub  # type: ignore[method-assign]
    client.execute = execute_noted  # type: ignore[method-assign]


class BoundedIOPubChannel(AsyncZMQSocketChannel):
    """``AsyncZMQSocketChannel`` that never decodes a stream message over ``STREAM_CAP`` bytes, nor
    another output message over ``OUTPUT_CAP`` bytes, and says when a refused message over
    ``MESSAGE_CAP`` dropped the connection, then connects again; smaller messages are read as usual."""

    def __init__(self, socket: zmq.asyncio.Socket, session: Any, loop: Any = None) -> None:
        super().__init__(socket, session, loop)
        self.monitor = socket.get_monitor_socket(zmq.EVENT_DISCONNECTED)
        self.parent: Dict[str, Any] = {}  # the header of the last execute request sent, for a note about a reset

    async def get_msg(self, timeout: Optional[float] = None) -> Dict[str, Any]:
        """The next message, or a note when the connection dropped; ``Empty`` after ``timeout``."""
        poller = zmq.asyncio.Poller()
        poller.register(self.socket, zmq.POLLIN)
        poller.register(self.monitor, zmq.POLLIN)
        ready = dict(await poller.poll(None if timeout is None else int(timeout * 1000)))
        if self.socket in ready:
            return await self._recv()
        if self.monitor in ready:
            parse_monitor_message(await self.monitor.recv_multipart())
            self.reconnect()
            return reset_note(self.parent)
        raise Empty

    def reconnect(self) -> None:
        """Connect again: ZeroMQ gives up on a connection that sent a part over its limit."""
        endpoint = self.socket.last_endpoint
        try:
            self.socket.disconnect(endpoint)
        except zmq.ZMQError:
            pass  # already forgotten
        self.socket.connect(endpoint)

    def close(self) -> None:
        """Close the socket and its monitor."""
        if self.socket is not None:
            try:
                self.socket.disable_monitor()
            except zmq.ZMQError:
                pass
        self.monitor.close(linger=0)
        super().close()

    async def _recv(self, **kwargs: Any) -> Dict[str, Any]:
        frames = await self.socket.recv_multipart(copy=False)
        _, parts = self.session.feed_identities(frames, copy=False)
        size = sum(len(part) for part in parts[4:])
        if size <= STREAM_CAP:
            return self.session.deserialize([part.bytes for part in parts])
        header = self.session.unpack(parts[1].bytes)
        msg_type = header.get("msg_type")
        if msg_type == "stream":
            content = cut_stream(parts[4].buffer)
        elif msg_type in OUTPUT_TYPES and size > OUTPUT_CAP:
            content = output_note(msg_type, size)
        else:
            return self.session.deserialize([part.bytes for part in parts])
        self._verify(parts)
        header["msg_type"] = "stream"
        return self._deserialize([self.session.pack(header), parts[2].bytes, parts[3].bytes,
                                  self.session.pack(content)])

    def _verify(self, parts: List[Any]) -> None:
        """Check the signature of the message as received, before its content is replaced."""
        if self.session.auth is not None:
            expected = self.session.sign([part.buffer for part in parts[1:5]])
            if not compare_digest(parts[0].bytes, expected):
                raise ValueError("Invalid Signature on an IOPub message")

    def _deserialize(self, body: List[bytes]) -> Dict[str, Any]:
        """Deserialize header, parent, metadata and content, signed here after ``_verify``."""
        signature = self.session.sign(body) if self.session.auth is not None else b""
        return self.session.deserialize([signature] + body)
