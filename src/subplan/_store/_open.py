"""Open the state store a ``--store`` value (or ``$SUBPLAN_STORE``) names."""

from __future__ import annotations

import os
import re
from pathlib import Path
from urllib.parse import unquote

from .._errors import ConfigError
from ._base import Store
from ._url import redact

__all__ = ["STORE_ENV", "open_store", "redact"]

STORE_ENV = "SUBPLAN_STORE"
"""The environment variable naming the store when none is given."""

_FORMS = (
    "a file path, sqlite:PATH, sqlite:///ABSOLUTE/PATH or postgresql://USER@HOST[:PORT]/DATABASE"
)
_URL = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")


def _sqlite_path(spec: str) -> Path:
    rest = spec[len("sqlite:") :]
    if rest.startswith("///"):
        # sqlite:///abs/path, or SQLAlchemy's sqlite:////abs/path
        return Path("/" + unquote(rest).lstrip("/"))
    if rest.startswith("//") or not rest:
        raise ConfigError(f"malformed SQLite store {spec!r}: use {_FORMS}")
    return Path(rest)


def open_store(
    spec: str | None,
    runs_dir: Path,
    *,
    create: bool = True,
    readonly: bool = False,
) -> Store:
    """Open the store that ``spec`` names.

    Args:
        spec: a file path or ``sqlite:PATH`` / ``sqlite:///ABS/PATH`` (SQLite), or a
            ``postgresql://`` (or ``postgres://``) URL. None or ``""``: ``$SUBPLAN_STORE``
            when set, else SQLite at ``runs_dir / "state.db"``.
        runs_dir: the runs directory (home of the default store).
        create: create the store (file, schema) when missing.
        readonly: open for reading only (``status``, ``report``); implies not creating.

    Returns:
        A :class:`~subplan._store._base.Store`; close it when done.

    Raises:
        ConfigError: a spec of no supported form (the message lists them).
        StoreError: the store cannot be opened (its subclasses say why).

    Example:
        >>> import tempfile
        >>> store = open_store(None, Path(tempfile.mkdtemp()))
        >>> store.kind, store.location.endswith("state.db")
        ('sqlite', True)
        >>> store.close()
    """
    raw: object = spec
    if isinstance(raw, os.PathLike):  # a Path passed by an untyped caller
        spec = os.fspath(raw)
    if not spec:
        spec = os.environ.get(STORE_ENV) or None
    create = create and not readonly
    if not spec:
        from ._sqlite import SqliteStore

        return SqliteStore(runs_dir / "state.db", create=create, readonly=readonly)
    match = _URL.match(spec)
    scheme = spec.split(":", 1)[0].lower() if ":" in spec else ""
    if scheme == "sqlite":
        from ._sqlite import SqliteStore

        return SqliteStore(_sqlite_path(spec), create=create, readonly=readonly)
    if match is not None:
        if scheme in ("postgresql", "postgres"):
            from ._postgres import PostgresStore

            return PostgresStore(spec, create=create, readonly=readonly)
        raise ConfigError(f"unsupported store {redact(spec)!r}: use {_FORMS}")
    from ._sqlite import SqliteStore

    return SqliteStore(Path(spec), create=create, readonly=readonly)
