"""Fixtures of the store contract suite: each test gets fresh stores of each kind.

``sqlite`` uses a file under ``tmp_path``. ``postgresql`` uses the server named by
``$SUBPLAN_TEST_POSTGRES_URL`` (``.ci/postgres.sh`` starts one) with a schema of its own
per test, dropped afterwards; without the variable those tests are skipped, saying so.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from postgres_server import postgres_url as require_postgres_url
from subplan._store._base import Store
from subplan._store._postgres import PostgresStore
from subplan._store._sqlite import SqliteStore


class Backend:
    """Opens stores of one kind at one fresh location, and closes them all at the end.

    Attributes:
        name: ``sqlite`` or ``postgresql``.
        spec: what a child process needs to open the same store (see ``open_spec``).
    """

    def __init__(self, name: str, spec: dict[str, str]) -> None:
        self.name = name
        self.spec = spec
        self._stores: list[Store] = []

    def open(self, *, create: bool = True, readonly: bool = False) -> Store:
        """Another store object (another connection) on the same data."""
        store = open_spec(self.spec, create=create, readonly=readonly)
        self._stores.append(store)
        return store

    def close_all(self) -> None:
        for store in self._stores:
            store.close()


def open_spec(spec: dict[str, str], *, create: bool = True, readonly: bool = False) -> Store:
    """Open the store a :attr:`Backend.spec` describes (also used by child processes)."""
    if spec["kind"] == "sqlite":
        return SqliteStore(Path(spec["path"]), create=create, readonly=readonly)
    return PostgresStore(spec["url"], schema=spec["schema"], create=create, readonly=readonly)


def _drop_schema(url: str, schema: str) -> None:
    import psycopg
    from psycopg import sql

    with psycopg.connect(url, autocommit=True) as admin:
        admin.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    """A fresh, empty location of each store kind."""
    if request.param == "sqlite":
        b = Backend("sqlite", {"kind": "sqlite", "path": str(tmp_path / "runs" / "state.db")})
        try:
            yield b
        finally:
            b.close_all()
        return
    url = require_postgres_url()
    schema = f"contract_{uuid.uuid4().hex[:16]}"
    b = Backend("postgresql", {"kind": "postgresql", "url": url, "schema": schema})
    try:
        yield b
    finally:
        b.close_all()
        _drop_schema(url, schema)


@pytest.fixture
def store(backend: Backend) -> Store:
    """A store on a fresh location (closed at the end of the test)."""
    return backend.open()


@pytest.fixture
def postgres_url() -> str:
    """The test server's URL, for PostgreSQL-only tests (skipped without a server)."""
    return require_postgres_url()


@pytest.fixture
def postgres_schema(postgres_url: str) -> Iterator[str]:
    """A schema name of its own for a PostgreSQL-only test, dropped afterwards."""
    schema = f"contract_{uuid.uuid4().hex[:16]}"
    try:
        yield schema
    finally:
        _drop_schema(postgres_url, schema)
