"""The writer's answers on their way to the event loop (commcredits.api.replies): every answer
reaches its coroutine exactly once, whatever the timing, and a batch wakes the loop once."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine
from typing import Any

import pytest

from commcredits.api.replies import LoopReplies, LoopReply, answer


def _run(main: Callable[[], Coroutine[Any, Any, Any]]) -> Any:
    """``asyncio.run(main())`` on a thread of its own, as a server's event loop runs: the
    test process's own thread may already have a loop running (the browser tests' driver)."""
    outcome: list[tuple[bool, Any]] = []

    def run() -> None:
        try:
            outcome.append((True, asyncio.run(main())))
        except BaseException as exc:  # handed back to the test's thread
            outcome.append((False, exc))

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    ok, value = outcome[0]
    if not ok:
        raise value
    return value


def test_answers_sent_from_another_thread_while_the_loop_delivers_all_arrive() -> None:
    """A writer thread answering in bursts, racing the loop that is setting the previous
    burst: no answer is lost, none is set twice, each goes to its own coroutine."""

    async def main() -> list[Any]:
        replies: list[LoopReply] = []

        def send(reply: LoopReply) -> None:
            replies.append(reply)

        waiting = [asyncio.ensure_future(answer(send)) for _ in range(5_000)]
        await asyncio.sleep(0)  # every coroutine has queued its reply

        def writer() -> None:
            for n, reply in enumerate(replies):
                if n % 7 == 0:
                    reply.set_exception(ValueError(n))
                else:
                    reply.set_result(n)

        thread = threading.Thread(target=writer)
        thread.start()
        results = await asyncio.gather(*waiting, return_exceptions=True)
        thread.join()
        return results

    results = _run(main)
    for n, result in enumerate(results):
        if n % 7 == 0:
            assert isinstance(result, ValueError)
            assert result.args == (n,)
        else:
            assert result == n


def test_a_batch_of_answers_wakes_the_loop_once() -> None:
    async def main() -> int:
        loop = asyncio.get_running_loop()
        replies = LoopReplies(loop)
        wakeups = 0
        original = loop.call_soon_threadsafe

        def counting(callback: Any, *args: Any) -> Any:
            nonlocal wakeups
            wakeups += 1
            return original(callback, *args)

        loop.call_soon_threadsafe = counting  # type: ignore[method-assign,assignment]
        batch = [LoopReply(replies) for _ in range(500)]

        def writer() -> None:
            for reply in batch:
                reply.set_result(1)

        thread = threading.Thread(target=writer)
        thread.start()
        thread.join()  # the whole batch answered before the loop runs again
        assert sum(await asyncio.gather(*(r.future for r in batch))) == 500
        return wakeups

    assert _run(main) == 1


def test_an_answer_for_a_coroutine_that_went_away_is_dropped() -> None:
    async def main() -> None:
        replies = LoopReplies(asyncio.get_running_loop())
        gone, kept = LoopReply(replies), LoopReply(replies)
        gone.future.cancel()
        gone.set_result("late")
        kept.set_result("on time")
        assert await kept.future == "on time"
        assert gone.future.cancelled()

    _run(main)


def test_an_answer_after_the_loop_closed_raises_nothing() -> None:
    loop = asyncio.new_event_loop()
    replies = LoopReplies(loop)
    reply = LoopReply(replies)
    loop.close()
    reply.set_result(1)  # the writer thread must not fail for a server that stopped


@pytest.mark.parametrize("ok", [True, False])
def test_an_answer_set_before_the_coroutine_waits_is_not_lost(ok: bool) -> None:
    """A refusal found before anything is queued (a bad duration) is set at once, on the
    loop's own thread."""

    def send(reply: LoopReply) -> None:
        if ok:
            reply.set_result("now")
        else:
            reply.set_exception(LookupError("refused"))

    async def main() -> Any:
        return await answer(send)

    if ok:
        assert _run(main) == "now"
    else:
        with pytest.raises(LookupError):
            _run(main)
