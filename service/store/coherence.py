"""Cache coherence between replicas: run lifecycle notifications and the staleness bound they give.

Why: a replica answers reads of served steps from memory, with no store round trip (``RunService.lease_cached``).
Served steps never change within one incarnation of one generation of a run, but another replica may delete the
run, create a namesake (a new ``generation``) or resume it (a new incarnation). Each of those commits publishes
the run id on the PostgreSQL channel ``lrserve_runs`` inside its own transaction (``pg_notify``: delivered only
if, and when, it commits; see ``sql.SqlStore``), and every replica's listener drops its cached entry of that run.

The staleness bound: the listener also notifies itself a ping every ``staleness / 4`` seconds. PostgreSQL delivers
notifications in commit order, so when the ping sent at ``t0`` comes back, every lifecycle commit made before
``t0`` has been handed to the subscribers. ``fresh()`` is true while the last returned ping was sent less than
``staleness`` seconds ago. Hence: **a replica answers from memory for at most ``staleness`` seconds after another
replica's delete, re-create or resume committed**, whatever happens to the listener — a lost connection or a
stalled thread stops the pings, memory is then not trusted, and reads go to the store until the listener is back
(which first drops every cached run: it may have missed notifications meanwhile).

A store that only one process writes (SQLite) needs none of this: ``AlwaysFresh``.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any, Protocol

log = logging.getLogger("lrserve.coherence")

CHANNEL = "lrserve_runs"
#: Run ids cannot contain a space (``RUN_ID_PATTERN``), so a ping can never be taken for a run.
PING_PREFIX = " ping "
#: Application name of the listener's connection (``pg_stat_activity``), so operators and tests can find it.
LISTENER_APPLICATION = "lrserve-listen"
RECONNECT_SECONDS = 0.5


class Coherence(Protocol):
    """What a cache asks before trusting memory, and how it hears of runs changed by other processes."""

    def fresh(self) -> bool:
        """True while every lifecycle commit made more than the staleness bound ago has been delivered."""

    def subscribe(self, on_run: Callable[[str], None], on_reset: Callable[[], None]) -> None:
        """Call ``on_run(run_id)`` for each delivered notification, ``on_reset()`` when some may have been lost.

        Bound methods are held weakly: a subscriber that is garbage-collected stops receiving.
        """

    def close(self) -> None: ...


class _Subscribers:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._items: list[tuple[weakref.WeakMethod[Any] | Any, weakref.WeakMethod[Any] | Any]] = []

    @staticmethod
    def _ref(fn: Callable[..., None]) -> weakref.WeakMethod[Any] | Any:
        return weakref.WeakMethod(fn) if hasattr(fn, "__self__") else (lambda: fn)

    def add(self, on_run: Callable[[str], None], on_reset: Callable[[], None]) -> None:
        with self._lock:
            self._items.append((self._ref(on_run), self._ref(on_reset)))

    def _live(self, index: int) -> list[Callable[..., None]]:
        with self._lock:
            pairs = [(ref[index](), ref) for ref in self._items]
            self._items = [ref for fn, ref in pairs if fn is not None]
            return [fn for fn, _ in pairs if fn is not None]

    def run_changed(self, run_id: str) -> None:
        for fn in self._live(0):
            fn(run_id)

    def reset(self) -> None:
        for fn in self._live(1):
            fn()


class AlwaysFresh:
    """The coherence of a store no other process writes: memory is always current."""

    def fresh(self) -> bool:
        return True

    def subscribe(self, on_run: Callable[[str], None], on_reset: Callable[[], None]) -> None:
        return None

    def close(self) -> None:
        return None


class PgListener:
    """``LISTEN lrserve_runs`` on a dedicated autocommit connection, in a daemon thread started on first use."""

    def __init__(self, dsn: str, staleness: float, connect_timeout: float = 5) -> None:
        if staleness <= 0:
            raise ValueError("staleness must be > 0")
        self._dsn = dsn
        self.staleness = staleness
        self._interval = staleness / 4
        self._connect_timeout = connect_timeout
        self._subscribers = _Subscribers()
        self._fresh_as_of = -float("inf")  # monotonic time the last returned ping was sent
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self._conn: Any = None
        #: pings sent and returned, notifications delivered, connections made (tests and /metrics read them)
        self.pings = 0
        self.delivered = 0
        self.connects = 0

    def fresh(self) -> bool:
        return time.monotonic() - self._fresh_as_of < self.staleness

    def subscribe(self, on_run: Callable[[str], None], on_reset: Callable[[], None]) -> None:
        self._subscribers.add(on_run, on_reset)
        with self._start_lock:
            if self._thread is None and not self._stop.is_set():
                self._thread = threading.Thread(target=self._loop, name="lrserve-listen", daemon=True)
                self._thread.start()

    def close(self) -> None:
        self._stop.set()
        conn = self._conn
        if conn is not None:
            # wakes the thread from its wait for notifications; it notices the stop flag either way
            with contextlib.suppress(Exception):
                conn.cancel_safe(timeout=1)
        thread = self._thread
        if thread is not None:
            thread.join(timeout=self._interval + self._connect_timeout + 2)

    # ---- the listener thread ---------------------------------------------------------------------------------------

    def _loop(self) -> None:
        import psycopg

        while not self._stop.is_set():
            try:
                with psycopg.connect(
                    self._dsn,
                    autocommit=True,
                    connect_timeout=int(max(1, self._connect_timeout)),
                    application_name=LISTENER_APPLICATION,
                ) as conn:
                    self._conn = conn
                    self.connects += 1
                    conn.execute(f"LISTEN {CHANNEL}")
                    # Whatever was committed while no one listened is unknown: forget every cached run.
                    self._subscribers.reset()
                    self._listen(conn)
            except psycopg.Error as e:
                if not self._stop.is_set():
                    log.warning("run notifications interrupted (%s); reads go to the store until they are back", e)
            finally:
                self._conn = None
            self._stop.wait(RECONNECT_SECONDS)

    def _listen(self, conn: Any) -> None:
        nonce = 0
        while not self._stop.is_set():
            nonce += 1
            token = f"{PING_PREFIX}{id(self)}:{nonce}"
            sent = time.monotonic()
            conn.execute("SELECT pg_notify(%s, %s)", (CHANNEL, token))
            deadline = sent + self._interval
            for note in conn.notifies(timeout=self._interval):
                payload: str = note.payload
                if payload.startswith(PING_PREFIX):
                    if payload == token:
                        self.pings += 1
                        self._fresh_as_of = sent  # everything committed before `sent` is delivered
                else:
                    self.delivered += 1
                    self._subscribers.run_changed(payload)
                if self._stop.is_set() or time.monotonic() >= deadline:
                    break
            remaining = deadline - time.monotonic()
            if remaining > 0:
                self._stop.wait(remaining)
