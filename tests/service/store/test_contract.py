"""The ``Store`` contract (``lrserve.service.store.base``), run against every backend.

Tests taking ``store``/``store_url`` run once on SQLite and once on PostgreSQL (marked ``postgres``); the few
that concern one backend only say so in their name.
"""

from __future__ import annotations

import dataclasses
import math
import subprocess
import sys
import textwrap
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, func, insert, select

from lrserve.schemas.errors import Conflict, RunNotFound, Unavailable
from lrserve.service.store.base import NewEvent, RunRecord, iter_pages
from lrserve.service.store.sql import SqlStore, events, metadata, run_labels, translated

SPEC: dict[str, Any] = {"schedule": {"type": "StepLR", "step_size": 10, "gamma": 0.5}, "base_lrs": [0.1]}

MakeRun = Callable[..., RunRecord]


def created_event(**payload: Any) -> NewEvent:
    return NewEvent(kind="created", payload={"spec_hash": "abc", **payload}, actor="tester", reason="test")


@pytest.fixture
def make_run(store: SqlStore) -> MakeRun:
    """``make_run(run_id, labels)``: create a run with ``SPEC`` and a ``created`` first event."""

    def make(run_id: str, labels: dict[str, str] | None = None) -> RunRecord:
        record, created = store.create_run(run_id, SPEC, labels or {}, created_event())
        assert created
        return record

    return make


def _aware_utc(t: datetime) -> bool:
    return t.tzinfo is not None and t.utcoffset() == timedelta(0)


# -- schema ----------------------------------------------------------------------------------------------------


def test_migrate_twice_is_a_noop(store: SqlStore, make_run: MakeRun) -> None:
    make_run("r1", {"team": "a"})
    store.migrate()
    store.migrate()
    assert store.get_run("r1") is not None
    assert len(store.events("r1")) == 1


def test_migration_matches_the_tables_the_store_uses(store: SqlStore) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    with store.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), metadata)
    assert diff == []


def test_shared_says_whether_other_processes_write(store: SqlStore) -> None:
    assert store.shared is (store.engine.dialect.name == "postgresql")


# -- create / get ----------------------------------------------------------------------------------------------


def test_create_inserts_the_run_and_its_first_event(store: SqlStore) -> None:
    before = datetime.now(UTC)
    record, created = store.create_run("run-1", SPEC, {"team": "vision", "env": "prod"}, created_event(x=1))
    assert created
    assert record.run_id == "run-1"
    assert record.spec == SPEC
    assert record.labels == {"team": "vision", "env": "prod"}
    assert (record.revision, record.horizon, record.incarnation, record.last_seq) == (0, -1, 1, 1)
    assert store.get_run("run-1") == record
    [first] = store.events("run-1")
    assert (first.run_id, first.seq, first.kind, first.actor, first.reason) == ("run-1", 1, "created", "tester", "test")
    assert first.payload == {"spec_hash": "abc", "x": 1}
    for t in (record.created_at, record.updated_at, first.at):
        assert _aware_utc(t)
        assert before - timedelta(seconds=5) <= t <= datetime.now(UTC) + timedelta(seconds=5)


def test_create_is_idempotent(store: SqlStore, make_run: MakeRun) -> None:
    original = make_run("run-1", {"team": "a"})
    again, created = store.create_run("run-1", {"other": "spec"}, {"team": "b"}, created_event())
    assert not created
    assert again == original
    assert len(store.events("run-1")) == 1


def test_concurrent_creates_of_one_id_create_it_once(store_url: str, open_store: Callable[[str], SqlStore]) -> None:
    stores = [open_store(store_url) for _ in range(2)]
    stores[0].migrate()
    barrier = threading.Barrier(4)
    results: list[bool] = []
    errors: list[BaseException] = []

    def create(store: SqlStore) -> None:
        try:
            barrier.wait()
            results.append(store.create_run("same", SPEC, {}, created_event())[1])
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=create, args=(stores[i % 2],)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sorted(results) == [False, False, False, True]
    assert len(stores[0].events("same")) == 1


def test_unknown_runs(store: SqlStore) -> None:
    assert store.get_run("nope") is None
    assert store.events("nope") == []
    assert store.delete_run("nope") is False
    with pytest.raises(RunNotFound), store.transaction("nope"):
        pytest.fail("the block must not run")


def test_records_are_frozen(store: SqlStore, make_run: MakeRun) -> None:
    record = make_run("run-1")
    with pytest.raises(dataclasses.FrozenInstanceError):
        record.horizon = 5  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        store.events("run-1")[0].seq = 2  # type: ignore[misc]


# -- transactions ----------------------------------------------------------------------------------------------


def test_appends_get_consecutive_seqs(store: SqlStore, make_run: MakeRun) -> None:
    created = make_run("run-1")
    with store.transaction("run-1") as tx:
        assert tx.run == created
        appended = [tx.append(NewEvent("metric", {"step": i, "loss": 1.0 / (i + 1)})) for i in range(3)]
        assert [e.seq for e in appended] == [2, 3, 4]
        assert tx.run.last_seq == 4
        assert [e.seq for e in tx.events_after(1)] == [2, 3, 4]  # its own appends, before the commit
    with store.transaction("run-1") as tx:
        assert tx.run.last_seq == 4
        assert [e.seq for e in tx.events_after(2)] == [3, 4]
        assert tx.append(NewEvent("lease", {}, actor="worker-0", reason=None)).seq == 5
    stored = store.events("run-1")
    assert [e.seq for e in stored] == [1, 2, 3, 4, 5]
    assert stored[1:4] == appended
    run = store.get_run("run-1")
    assert run is not None
    assert run.last_seq == 5
    assert run.updated_at >= created.updated_at
    assert run.created_at == created.created_at


def test_update_changes_only_the_counters_given(store: SqlStore, make_run: MakeRun) -> None:
    make_run("run-1")
    with store.transaction("run-1") as tx:
        after = tx.update(horizon=100)
        assert (after.horizon, after.revision, after.incarnation) == (100, 0, 1)
        after = tx.update(revision=3, incarnation=2)
        assert (after.horizon, after.revision, after.incarnation) == (100, 3, 2)
        assert tx.run == after
    assert store.get_run("run-1") == after


def test_an_exception_rolls_everything_back(store: SqlStore, make_run: MakeRun) -> None:
    created = make_run("run-1")

    class Boom(Exception):
        pass

    def change_then_fail() -> None:
        with store.transaction("run-1") as tx:
            tx.append(NewEvent("metric", {"step": 1}))
            tx.update(horizon=50, revision=7)
            raise Boom

    with pytest.raises(Boom):
        change_then_fail()
    assert store.get_run("run-1") == created
    assert [e.seq for e in store.events("run-1")] == [1]
    with store.transaction("run-1") as tx:  # the seq that was rolled back is handed out again
        assert tx.append(NewEvent("metric", {"step": 1})).seq == 2


def test_a_swallowed_database_error_does_not_commit_the_block(store: SqlStore, make_run: MakeRun) -> None:
    make_run("run-1")
    with store.engine.begin() as conn:  # a row in the way of seq 2
        conn.execute(insert(events).values(run_id="run-1", seq=2, kind="x", at=datetime.now(UTC), payload="{}"))

    def swallow() -> None:
        with store.transaction("run-1") as tx:
            tx.update(horizon=10)
            with pytest.raises(Conflict):
                tx.append(NewEvent("metric", {}))

    with pytest.raises(Conflict):
        swallow()
    run = store.get_run("run-1")
    assert run is not None
    assert run.horizon == -1


def test_the_handle_is_dead_after_its_block(store: SqlStore, make_run: MakeRun) -> None:
    make_run("run-1")
    with store.transaction("run-1") as tx:
        pass
    with pytest.raises(RuntimeError):
        tx.append(NewEvent("metric", {}))
    with pytest.raises(RuntimeError):
        tx.update(horizon=1)


@pytest.mark.parametrize("stores", [1, 2], ids=["one-store", "two-stores"])
def test_transactions_on_one_run_serialize(store_url: str, open_store: Callable[[str], SqlStore], stores: int) -> None:
    """Two threads each do N read-modify-write increments; two stores stand for two server processes."""
    n = 50
    handles = [open_store(store_url) for _ in range(stores)]
    handles[0].migrate()
    handles[0].create_run("hot", SPEC, {}, created_event())
    barrier = threading.Barrier(2)
    errors: list[BaseException] = []

    def work(store: SqlStore) -> None:
        try:
            barrier.wait()
            for _ in range(n):
                with store.transaction("hot") as tx:
                    horizon = tx.run.horizon
                    tx.append(NewEvent("lease", {"from": horizon}))
                    tx.update(horizon=horizon + 1)
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=work, args=(handles[i % stores],)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    run = handles[-1].get_run("hot")
    assert run is not None
    assert run.horizon == -1 + 2 * n
    assert run.last_seq == 1 + 2 * n
    history = handles[-1].events("hot")
    assert [e.seq for e in history] == list(range(1, 2 * n + 2))
    assert [e.payload["from"] for e in history[1:]] == list(range(-1, 2 * n - 1))


# -- reading ---------------------------------------------------------------------------------------------------


def test_events_are_paged(store: SqlStore, make_run: MakeRun) -> None:
    make_run("run-1")
    with store.transaction("run-1") as tx:
        for i in range(24):
            tx.append(NewEvent("metric", {"i": i}))
    assert [e.seq for e in store.events("run-1", after=0, limit=10)] == list(range(1, 11))
    assert [e.seq for e in store.events("run-1", after=10, limit=10)] == list(range(11, 21))
    assert [e.seq for e in store.events("run-1", after=20, limit=10)] == [21, 22, 23, 24, 25]
    assert store.events("run-1", after=25, limit=10) == []
    assert [e.seq for e in store.events("run-1", after=22)] == [23, 24, 25]
    assert [e.seq for e in iter_pages(store, "run-1", page=7)] == list(range(1, 26))
    assert [e.seq for e in iter_pages(store, "run-1", page=5)] == list(range(1, 26))  # the last page is full


def test_list_runs_filters_by_every_label_and_pages_by_id(store: SqlStore, make_run: MakeRun) -> None:
    make_run("b-2", {"team": "vision", "env": "prod"})
    make_run("a-1", {"team": "vision", "env": "dev"})
    make_run("c-3", {"team": "vision", "env": "prod", "owner": "ann"})
    make_run("d-4", {"team": "speech", "env": "prod"})
    make_run("Z-5", {})

    def ids(**kwargs: Any) -> list[str]:
        return [r.run_id for r in store.list_runs(**kwargs)]

    assert ids(labels={}, limit=10, after=None) == ["Z-5", "a-1", "b-2", "c-3", "d-4"]  # bytewise: "Z" < "a"
    assert ids(labels={"team": "vision"}, limit=10, after=None) == ["a-1", "b-2", "c-3"]
    assert ids(labels={"team": "vision", "env": "prod"}, limit=10, after=None) == ["b-2", "c-3"]
    assert ids(labels={"env": "prod"}, limit=2, after=None) == ["b-2", "c-3"]
    assert ids(labels={"env": "prod"}, limit=2, after="c-3") == ["d-4"]
    assert ids(labels={"env": "prod"}, limit=2, after="d-4") == []
    assert ids(labels={"team": "nobody"}, limit=10, after=None) == []
    assert ids(labels={}, limit=0, after=None) == []
    [c3] = store.list_runs(labels={"owner": "ann"}, limit=10, after=None)
    assert c3 == store.get_run("c-3")
    assert c3.labels == {"team": "vision", "env": "prod", "owner": "ann"}


def test_delete_cascades_to_events_and_labels(store: SqlStore, make_run: MakeRun) -> None:
    make_run("run-1", {"team": "a"})
    make_run("run-2", {"team": "a"})
    with store.transaction("run-1") as tx:
        tx.append(NewEvent("metric", {}))
    assert store.delete_run("run-1") is True
    assert store.delete_run("run-1") is False
    assert store.get_run("run-1") is None
    assert store.events("run-1") == []
    with store.engine.connect() as conn:
        assert conn.scalar(select(func.count()).select_from(events).where(events.c.run_id == "run-1")) == 0
        assert conn.scalar(select(func.count()).select_from(run_labels).where(run_labels.c.run_id == "run-1")) == 0
    assert [r.run_id for r in store.list_runs(labels={"team": "a"}, limit=10, after=None)] == ["run-2"]
    again = make_run("run-1")  # the id is free again, and its history starts over
    assert again.last_seq == 1
    assert [e.seq for e in store.events("run-1")] == [1]


# -- values ----------------------------------------------------------------------------------------------------

ODD_VALUES: dict[str, Any] = {
    "nan": math.nan,
    "inf": math.inf,
    "-inf": -math.inf,
    "neg_zero": -0.0,
    "tiny": 5e-324,
    "third": 1 / 3,
    "big": 2**62,
    "nested": [[math.inf, None, True], {"x": [-math.inf]}],
    "text": 'ünïcødé \u2603 "quoted" \\ \n\t \u0000',
    "NaN": "NaN",
}


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return (math.isnan(a) and math.isnan(b)) or (a == b and math.copysign(1, a) == math.copysign(1, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and a == b


def test_non_finite_floats_and_odd_values_round_trip(store: SqlStore) -> None:
    spec = {**SPEC, "odd": ODD_VALUES}
    record, _ = store.create_run("run-1", spec, {}, NewEvent("created", ODD_VALUES))
    assert _same(record.spec, spec)
    with store.transaction("run-1") as tx:
        appended = tx.append(NewEvent("metric", {"loss": math.nan, "values": ODD_VALUES}))
    assert _same(appended.payload, {"loss": math.nan, "values": ODD_VALUES})
    first, second = store.events("run-1")
    assert _same(first.payload, ODD_VALUES)
    assert _same(second.payload, appended.payload)
    stored = store.get_run("run-1")
    assert stored is not None
    assert _same(stored.spec, spec)
    assert isinstance(second.payload["values"]["NaN"], str)


def test_timestamps_come_back_aware_utc(store: SqlStore, make_run: MakeRun) -> None:
    created = make_run("run-1")
    with store.transaction("run-1") as tx:
        tx.append(NewEvent("metric", {}))
    run = store.get_run("run-1")
    assert run is not None
    listed = store.list_runs(labels={}, limit=1, after=None)[0]
    stamps = [created.created_at, run.created_at, run.updated_at, listed.updated_at]
    stamps += [e.at for e in store.events("run-1")]
    assert all(_aware_utc(t) for t in stamps)
    assert run.created_at == created.created_at  # microseconds survive the trip
    assert run.updated_at > run.created_at


# -- errors ----------------------------------------------------------------------------------------------------


def test_an_integrity_error_becomes_conflict(store: SqlStore) -> None:
    orphan = {"run_id": "nope", "seq": 1, "kind": "x", "at": datetime.now(UTC), "payload": "{}"}
    with pytest.raises(Conflict), translated(), store.engine.begin() as conn:
        conn.execute(insert(events).values(**orphan))


def test_a_closed_postgres_port_is_unavailable() -> None:
    store = SqlStore("postgresql+psycopg://postgres@127.0.0.1:1/lrserve")
    try:
        calls: list[Callable[[], object]] = [
            store.ping,
            store.migrate,
            lambda: store.get_run("r"),
            lambda: store.create_run("r", SPEC, {}, created_event()),
            lambda: store.list_runs(labels={}, limit=5, after=None),
            lambda: store.events("r"),
            lambda: store.delete_run("r"),
            lambda: store.transaction("r").__enter__(),
        ]
        for call in calls:
            with pytest.raises(Unavailable) as info:
                call()
            assert info.value.status == 503
            assert "unavailable" in info.value.detail
            assert "\n" not in info.value.detail
    finally:
        store.close()


def test_sqlite_read_only_file_is_unavailable_for_writes(
    sqlite_url: str, open_store: Callable[[str], SqlStore]
) -> None:
    # Tests run as root, which chmod does not stop: the file is opened read-only by URL instead (what a
    # read-only mount gives too).
    writable = open_store(sqlite_url)
    writable.migrate()
    writable.create_run("run-1", SPEC, {}, created_event())
    path = sqlite_url.removeprefix("sqlite:///")
    read_only = open_store(f"sqlite:///file:{path}?mode=ro&uri=true")
    assert read_only.get_run("run-1") is not None
    with pytest.raises(Unavailable, match="readonly"):
        read_only.create_run("run-2", SPEC, {}, created_event())
    with pytest.raises(Unavailable), read_only.transaction("run-1") as tx:
        tx.append(NewEvent("metric", {}))
    with pytest.raises(Unavailable):
        read_only.delete_run("run-1")
    assert len(writable.events("run-1")) == 1


def test_sqlite_in_an_immutable_folder_is_unavailable(tmp_path: Path, open_store: Callable[[str], SqlStore]) -> None:
    """A folder the server cannot write (chmod does not stop root, ``chattr +i`` does): every call is a 503."""
    folder = tmp_path / "ro"
    folder.mkdir()
    url = f"sqlite:///{folder / 'lrserve.db'}"
    seed = open_store(url)
    seed.migrate()
    seed.create_run("run-1", SPEC, {}, created_event())
    seed.close()
    frozen = [str(folder / "lrserve.db"), str(folder)]
    if subprocess.run(["chattr", "+i", *frozen], capture_output=True).returncode != 0:
        pytest.skip("chattr +i is not possible here (needs root and a file system that supports it)")
    try:
        store = open_store(url)
        with pytest.raises(Unavailable):
            store.create_run("run-2", SPEC, {}, created_event())
        with pytest.raises(Unavailable):
            store.ping()
    finally:
        subprocess.run(["chattr", "-i", *frozen], check=True)


def test_sqlite_full_file_is_unavailable(sqlite_url: str, open_store: Callable[[str], SqlStore]) -> None:
    store = open_store(sqlite_url)
    store.migrate()
    store.create_run("run-1", SPEC, {}, created_event())
    store.engine.dispose()

    @event.listens_for(store.engine, "connect")
    def _cap_size(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.execute("PRAGMA max_page_count = 1")  # "full" at its current size

    def fill() -> None:
        with store.transaction("run-1") as tx:
            for _ in range(200):
                tx.append(NewEvent("metric", {"blob": "x" * 1000}))

    with pytest.raises(Unavailable, match="full"):
        fill()
    assert len(store.events("run-1")) == 1


@pytest.mark.postgres
def test_postgres_connections_killed_under_the_pool_are_replaced(
    pg_empty_url: str,
    open_store: Callable[[str], SqlStore],
    pg_terminate_connections: Callable[[str], int],
) -> None:
    """What a PostgreSQL restart does to the pool: the next call just works (pool_pre_ping)."""
    store = open_store(pg_empty_url)
    store.migrate()
    store.create_run("run-1", SPEC, {}, created_event())
    killed = pg_terminate_connections(str(store.engine.url.database))
    assert killed >= 1
    assert store.get_run("run-1") is not None
    with store.transaction("run-1") as tx:
        tx.append(NewEvent("metric", {}))
    store.ping()


# -- migrations by several processes ---------------------------------------------------------------------------

_MIGRATE_SCRIPT = textwrap.dedent(
    """
    import pathlib, sys, time
    from lrserve.service.store.sql import SqlStore
    store = SqlStore(sys.argv[1])
    go = pathlib.Path(sys.argv[2])
    print("ready", flush=True)
    while not go.exists():
        time.sleep(0.002)
    store.migrate()
    store.close()
    print("migrated", flush=True)
    """
)


def test_processes_migrating_a_fresh_database_at_once_all_succeed(
    store_url: str, open_store: Callable[[str], SqlStore], tmp_path: Path
) -> None:
    go = tmp_path / "go"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _MIGRATE_SCRIPT, store_url, str(go)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    try:
        for p in procs:
            assert p.stdout is not None
            assert p.stdout.readline().strip() == "ready"
        go.touch()
        outcomes = [p.communicate(timeout=60) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    for p, (out, err) in zip(procs, outcomes, strict=True):
        assert p.returncode == 0, err
        assert out.strip() == "migrated"
    store = open_store(store_url)
    store.migrate()
    assert store.create_run("run-1", SPEC, {}, created_event())[1]
