Feature: Every attempt works in its own git worktree
  With --workspaces, each subplan's command runs in a fresh worktree of the repository,
  so agents editing files at the same time never share a working tree. Their changes
  come back as patches, and the summary says who changed what.

  Background:
    Given a git repository "repo" with 3 directories of 2 files each
    And the repository has a committed script "agent.py" with these lines:
      """
      import os, pathlib
      for name in pathlib.Path(os.environ["SUBPLAN_FILES_LIST"]).read_text().split():
          path = pathlib.Path(name)
          path.write_text(path.read_text() + "edited\n")
      if os.environ["SUBPLAN_LABEL"] == os.environ.get("TRESPASS", ""):
          pathlib.Path("README.md").write_text("mine now\n")
      """

  Scenario: Each subplan edits only its worktree and its patch is collected
    When I run "subplan run repo --exclude agent.py --exclude README.md --min-files 2 --max-files 2 --workspaces --run-id ws -- python agent.py"
    Then the exit status is 0
    And the output mentions "workspaces: 3 of 3 subplans changed files"
    And the repository "repo" has no uncommitted changes
    And every subplan of run "ws" has a "changes.patch" that applies to "repo"

  Scenario: A subplan that edits outside its files is flagged
    When I run "subplan run repo --exclude agent.py --exclude README.md --min-files 2 --max-files 2 --workspaces -- python agent.py" with TRESPASS=dir1
    Then the exit status is 0
    And the output mentions "changed 1 file outside its own set: README.md"

  Scenario: Kept workspaces are listed, then cleaned with their work saved
    When I run "subplan run repo --exclude agent.py --exclude README.md --min-files 2 --max-files 2 --workspaces --keep-workspaces --run-id keep -- python agent.py"
    And I run "subplan workspaces list --repo repo"
    Then the exit status is 0
    And the output has 3 lines mentioning "ready"
    When I run "subplan workspaces clean --repo repo"
    Then the exit status is 0
    And the output mentions "removed 3 workspaces"
    When I run "subplan workspaces list --repo repo"
    Then the output mentions "no workspaces"

  Scenario: Not a git repository stops the run before anything starts
    Given a project directory of 2 directories with 1 files each
    When I run "subplan run dir0 --workspaces -- python -c pass"
    Then the exit status is 2
    And stderr is one line mentioning "not a git repository"
