Feature: Bringing the work back: integrate a run's changes onto a branch
  After a run with --workspaces, every subplan's changes are a patch. subplan integrate
  applies them onto a new branch from the run's base, one commit per subplan, sets aside
  those that conflict, and never touches the checkout the user works in.

  Background:
    Given a git repository "repo" with 3 directories of 2 files each
    And the repository has a committed script "agent.py" with these lines:
      """
      import os, pathlib
      label = os.environ["SUBPLAN_LABEL"]
      for name in pathlib.Path(os.environ["SUBPLAN_FILES_LIST"]).read_text().split():
          path = pathlib.Path(name)
          path.write_text(path.read_text() + "edited\n")
      if label in os.environ.get("CLASH", "").split(","):
          pathlib.Path("README.md").write_text(label + " was here\n")
      if label == os.environ.get("BREAK", ""):
          pathlib.Path("BROKEN").write_text("yes\n")
      """
    And the repository has a committed script "check.py" with these lines:
      """
      import pathlib, sys
      sys.exit(pathlib.Path("BROKEN").exists())
      """

  Scenario: Independent changes go in, one commit per subplan, and the checkout stays as it was
    When I run "subplan run repo --exclude agent.py --exclude check.py --exclude README.md --min-files 2 --max-files 2 --workspaces --run-id ws -- python agent.py"
    And I note where the repository "repo" stands
    And I run "subplan integrate ws"
    Then the exit status is 0
    And the branch "subplan/integrate/ws" of "repo" has 3 commits, each naming its subplan
    And the repository "repo" stands where it stood

  Scenario: Running it twice changes nothing
    When I run "subplan run repo --exclude agent.py --exclude check.py --exclude README.md --min-files 2 --max-files 2 --workspaces --run-id ws -- python agent.py"
    And I run "subplan integrate ws"
    And I note where the repository "repo" stands
    And I run "subplan integrate ws --json"
    Then the exit status is 0
    And the JSON output integrates 0 subplans and skips 3 "already on the branch"
    And the repository "repo" stands where it stood

  Scenario: Two subplans changing the same lines give one commit and one named conflict
    When I run "subplan run repo --exclude agent.py --exclude check.py --exclude README.md --min-files 2 --max-files 2 --workspaces --run-id ws -- python agent.py" with CLASH=dir0,dir1
    And I run "subplan integrate ws --json"
    Then the exit status is 1
    And the JSON output integrates 2 subplans and sets 1 aside naming "README.md"
    When I run "subplan status ws"
    Then the output mentions "integration onto subplan/integrate/ws: 2 integrated, 1 conflicted"

  Scenario: Conflicting subplans run again on the integrated work, then go in
    When I run "subplan run repo --exclude agent.py --exclude check.py --exclude README.md --min-files 2 --max-files 2 --workspaces --run-id ws -- python agent.py" with CLASH=dir0,dir1
    And I run "subplan integrate ws --rerun-conflicts --json"
    Then the exit status is 0
    And the JSON output integrates 3 subplans and sets 0 aside naming "README.md"

  Scenario: A subplan that breaks the verify command is found and dropped
    When I run "subplan run repo --exclude agent.py --exclude check.py --exclude README.md --min-files 2 --max-files 2 --workspaces --run-id ws -- python agent.py" with BREAK=dir1
    And I run "subplan integrate ws --drop-failing --verify -- python check.py"
    Then the exit status is 1
    And the output mentions "dropped"
    And the branch "subplan/integrate/ws" of "repo" has 2 commits, each naming its subplan

  Scenario: Each subplan's result can also be a branch of its own, for one pull request each
    When I run "subplan run repo --exclude agent.py --exclude check.py --exclude README.md --min-files 2 --max-files 2 --workspaces --branches --run-id ws -- python agent.py"
    Then the exit status is 0
    And the repository "repo" has 3 branches under "subplan/ws/" of one commit each

  Scenario Outline: Bad input is one line and exit status 2
    When I run "subplan run repo --exclude agent.py --exclude check.py --min-files 2 --max-files 2 --run-id plain -- python -c pass"
    And I run "subplan integrate <arguments>"
    Then the exit status is 2
    And stderr is one line mentioning "<message>"

    Examples:
      | arguments                 | message                           |
      | nope                      | no run 'nope'                     |
      | plain                     | ran without workspaces            |
      | plain --verify            | --verify needs a command          |
