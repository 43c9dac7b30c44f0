"""Who changed what: files changed outside a subplan's own set, and files changed twice."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["OverlapReport", "overlaps"]


@dataclass(frozen=True, slots=True)
class OverlapReport:
    """Which subplans changed which files, and where they strayed or collided.

    Attributes:
        changed: every subplan's changed files, sorted; subplans in id order.
        outside: for each subplan that changed files outside its own set, those files.
        shared: for each file changed by two or more subplans, their ids, sorted.
    """

    changed: Mapping[str, tuple[str, ...]]
    outside: Mapping[str, tuple[str, ...]]
    shared: Mapping[str, tuple[str, ...]]

    @property
    def ok(self) -> bool:
        """No subplan strayed outside its set and no file was changed twice."""
        return not self.outside and not self.shared

    def lines(self) -> list[str]:
        """The flags as one line each, for a report (empty when :attr:`ok`).

        Example:
            >>> overlaps({"a": ["x.py", "y.py"]}, {"a": ["x.py"]}).lines()
            ['a changed 1 file outside its own set: y.py']
        """
        out = []
        for sid, files in self.outside.items():
            noun = "file" if len(files) == 1 else "files"
            out.append(f"{sid} changed {len(files)} {noun} outside its own set: {', '.join(files)}")
        for path, sids in self.shared.items():
            out.append(f"{path} was changed by {len(sids)} subplans: {', '.join(sids)}")
        return out

    def to_dict(self) -> dict[str, Any]:
        """The report as JSON-ready data: ``changed``, ``outside`` and ``shared``."""
        return {
            "changed": {k: list(v) for k, v in self.changed.items()},
            "outside": {k: list(v) for k, v in self.outside.items()},
            "shared": {k: list(v) for k, v in self.shared.items()},
        }


def overlaps(
    changes: Mapping[str, Collection[str]], owned: Mapping[str, Collection[str]]
) -> OverlapReport:
    """Compare the files each subplan changed with the files it owns.

    Args:
        changes: each subplan's changed files (as :func:`changed_files` lists them).
        owned: each subplan's own file set (its plan files). A subplan missing here owns
            nothing, so all its changes are outside its set.

    Returns:
        The report: :attr:`~OverlapReport.outside` flags a subplan that changed files
        outside its own set, :attr:`~OverlapReport.shared` flags a file changed by two
        subplans or more.

    Notes:
        Paths are compared as given: pass both sides relative to the same top,
        ``/``-separated. O(total changed files) after building the owned sets.

    Example:
        >>> report = overlaps(
        ...     {"sp-a": ["a.py", "shared.py"], "sp-b": ["b.py", "shared.py"]},
        ...     {"sp-a": ["a.py", "shared.py"], "sp-b": ["b.py"]},
        ... )
        >>> dict(report.outside), dict(report.shared)
        ({'sp-b': ('shared.py',)}, {'shared.py': ('sp-a', 'sp-b')})
    """
    changed = {sid: tuple(sorted(set(files))) for sid, files in sorted(changes.items())}
    outside: dict[str, tuple[str, ...]] = {}
    by_file: dict[str, list[str]] = {}
    for sid, files in changed.items():
        own = owned.get(sid, ())
        own_set = own if isinstance(own, set | frozenset) else set(own)
        strays = tuple(f for f in files if f not in own_set)
        if strays:
            outside[sid] = strays
        for path in files:
            by_file.setdefault(path, []).append(sid)
    shared = {path: tuple(sids) for path, sids in sorted(by_file.items()) if len(sids) > 1}
    return OverlapReport(changed=changed, outside=outside, shared=shared)
