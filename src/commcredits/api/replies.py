"""Answers of the live-call writer, delivered to the coroutines that wait for them.

The writer thread answers a whole batch (hundreds of requests) at once, after its commit. A
future per request wrapped for asyncio would cost three futures and a wake-up of the event loop
per answer, each wake-up a write to the loop's self-pipe. Here each event loop has one
:class:`LoopReplies`: the writer appends answers to its queue and wakes the loop only when no
wake-up is pending, and the loop, once awake, sets every answer that has arrived. A batch of
answers costs one wake-up per event loop, whatever its size.

A coroutine cancelled while waiting (its client went away) simply never reads its answer: the
request was already queued and is written all the same, as with any other way of asking.
"""

from __future__ import annotations

import asyncio
import weakref
from collections import deque
from collections.abc import Callable
from typing import Any

_REPLIES: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, LoopReplies] = (
    weakref.WeakKeyDictionary()
)


class LoopReplies:
    """The answers on their way to one event loop (see the module docstring)."""

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self.loop = loop
        self._ready: deque[tuple[asyncio.Future[Any], bool, Any]] = deque()
        self._woken = False

    def post(self, future: asyncio.Future[Any], ok: bool, value: Any) -> None:
        """From any thread: ``future`` gets ``value`` (a result, or else an exception)."""
        self._ready.append((future, ok, value))
        if not self._woken:
            # Cleared by the loop before it takes the queue: an answer appended after the
            # loop has emptied the queue finds it clear and wakes the loop again.
            self._woken = True
            try:
                self.loop.call_soon_threadsafe(self._deliver)
            except RuntimeError:  # the loop is closed: nobody is waiting any more
                self._ready.clear()

    def _deliver(self) -> None:
        self._woken = False
        ready = self._ready
        while ready:
            future, ok, value = ready.popleft()
            if future.done():  # cancelled: its caller went away
                continue
            if ok:
                future.set_result(value)
            else:
                future.set_exception(value)


class LoopReply:
    """One answer for a coroutine of the loop (a ``group_commit.Reply``)."""

    __slots__ = ("future", "replies")

    def __init__(self, replies: LoopReplies):
        self.replies = replies
        self.future: asyncio.Future[Any] = replies.loop.create_future()

    def set_result(self, result: Any, /) -> None:
        self.replies.post(self.future, True, result)

    def set_exception(self, exception: BaseException, /) -> None:
        self.replies.post(self.future, False, exception)


async def answer(send: Callable[[LoopReply], None]) -> Any:
    """Give ``send`` a reply for this coroutine and wait for what is set on it."""
    loop = asyncio.get_running_loop()
    replies = _REPLIES.get(loop)
    if replies is None:
        replies = _REPLIES[loop] = LoopReplies(loop)
    reply = LoopReply(replies)
    send(reply)
    return await reply.future
