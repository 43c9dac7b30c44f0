"""Isolated workspaces: git worktrees per subplan, leases, patches of their changes.

See :mod:`subplan._workspace._workspaces` for the layout and the crash-safety rules.
"""

from __future__ import annotations

from ._changes import Changes as Changes
from ._changes import changed_files as changed_files
from ._changes import save_patch as save_patch
from ._git import Repository as Repository
from ._git import check_repository as check_repository
from ._lease import WorkspaceLease as WorkspaceLease
from ._lease import acquire_lease as acquire_lease
from ._lease import lease_holder as lease_holder
from ._lease import lease_key as lease_key
from ._overlaps import OverlapReport as OverlapReport
from ._overlaps import overlaps as overlaps
from ._workspaces import Removal as Removal
from ._workspaces import Workspace as Workspace
from ._workspaces import WorkspaceInfo as WorkspaceInfo
from ._workspaces import Workspaces as Workspaces
from ._workspaces import WorkspaceState as WorkspaceState

__all__ = [
    "Changes",
    "OverlapReport",
    "Removal",
    "Repository",
    "Workspace",
    "WorkspaceInfo",
    "WorkspaceLease",
    "WorkspaceState",
    "Workspaces",
    "acquire_lease",
    "changed_files",
    "check_repository",
    "lease_holder",
    "lease_key",
    "overlaps",
    "save_patch",
]
