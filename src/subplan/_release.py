"""One base for the held things that give themselves back at the end of a ``with``."""

from __future__ import annotations

from types import TracebackType
from typing import Self

__all__ = ["ReleasedOnExit"]


class ReleasedOnExit:
    """A context manager that is its own value and calls ``release()`` on exit.

    Subclasses define ``release()``; it must be idempotent if it can run twice.
    """

    __slots__ = ()

    def release(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()
