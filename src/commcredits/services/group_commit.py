"""Group commit: many requests, one durable commit.

A durable commit costs a disk flush (milliseconds on many disks), so one transaction per call
request caps a hot organization at a few hundred requests per second. The :class:`GroupCommitter`
runs one writer thread: requests queue up while a batch is being written, and the next batch
takes all of them (up to ``max_batch``) into one transaction, each request in a savepoint of its
own, with one :class:`AccountSession` per organization shared by the batch (the lock is taken
once, and money is sized in memory under it). Every caller gets its answer only after the
commit that made it durable, so an acknowledged charge survives a crash exactly as before.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy.exc import DBAPIError

from commcredits.adapters.clock import Clock
from commcredits.services.account import AccountSession
from commcredits.store.database import Store, TransientConflict, UnitOfWork, is_retryable

T = TypeVar("T")


@dataclass
class Batch:
    """What the requests of one batch share: the transaction and the locked accounts."""

    uow: UnitOfWork
    now: datetime
    sessions: dict[str, AccountSession] = field(default_factory=dict)

    def session(self, org_id: str) -> AccountSession:
        if org_id not in self.sessions:
            self.sessions[org_id] = AccountSession(self.uow, org_id, self.now)
        return self.sessions[org_id]


@dataclass
class _Request:
    work: Callable[[Batch], Any]
    future: Future[Any]


class GroupCommitter:
    def __init__(self, store: Store, clock: Clock, *, max_batch: int = 256, attempts: int = 5):
        self.store = store
        self.clock = clock
        self.max_batch = max_batch
        self.attempts = attempts
        self._queue: queue.Queue[_Request | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()

    def run(self, work: Callable[[Batch], T]) -> T:
        """Run ``work`` in the next batch and return its result once it is committed."""
        self._ensure_thread()
        request = _Request(work, Future())
        self._queue.put(request)
        result: T = request.future.result()
        return result

    def _ensure_thread(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        with self._start_lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._loop, name="commcredits-group-commit", daemon=True
                )
                self._thread.start()

    def close(self) -> None:
        """Stop the writer once the requests already queued are written."""
        if self._thread is not None and self._thread.is_alive():
            self._queue.put(None)
            self._thread.join(timeout=10)

    def _loop(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch = [first]
            stopping = False
            while len(batch) < self.max_batch:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    stopping = True
                    break
                batch.append(item)
            self._write(batch)
            if stopping:
                return

    def _write(self, requests: list[_Request]) -> None:
        for attempt in range(1, self.attempts + 1):
            try:
                outcomes = self._attempt(requests)
            except (DBAPIError, TransientConflict) as exc:
                if attempt < self.attempts and is_retryable(exc):
                    continue
                for request in requests:
                    request.future.set_exception(exc)
                return
            except BaseException as exc:  # the batch could not be written at all
                for request in requests:
                    request.future.set_exception(exc)
                return
            for request, (ok, value) in zip(requests, outcomes, strict=True):
                if ok:
                    request.future.set_result(value)
                else:
                    request.future.set_exception(value)
            return

    def _attempt(self, requests: list[_Request]) -> list[tuple[bool, Any]]:
        outcomes: list[tuple[bool, Any]] = []
        with self.store.unit_of_work() as uow:
            batch = Batch(uow, self.clock.now())
            for request in requests:
                states = {org: s.snapshot() for org, s in batch.sessions.items()}
                known = set(batch.sessions)
                try:
                    with uow.conn.begin_nested():
                        outcomes.append((True, request.work(batch)))
                except (DBAPIError, TransientConflict):
                    raise  # the whole batch runs again
                except Exception as exc:  # this request alone failed: undo its steps
                    for org, state in states.items():
                        batch.sessions[org].restore(state)
                    for org in set(batch.sessions) - known:
                        del batch.sessions[org]  # opened by the failed request only
                    outcomes.append((False, exc))
            for session in batch.sessions.values():
                session.close()
            uow.commit()
        return outcomes
