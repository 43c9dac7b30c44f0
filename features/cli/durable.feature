Feature: Runs outlive their orchestrator
  Every `subplan run` is recorded in a state store in the runs directory. A run that was
  killed, interrupted or failed is resumed without redoing the work that finished, and
  two orchestrators never run the same run at once.

  Background:
    Given a project directory of 4 directories with 2 files each
    And a script "agent.py" with these lines:
      """
      import os, sys
      with open("ran.log", "a") as log:
          log.write(os.environ["SUBPLAN_LABEL"] + "\n")
      if os.environ["SUBPLAN_LABEL"] == os.environ.get("FAIL_LABEL"):
          sys.exit("this one fails")
      """

  Scenario: A killed run resumes without redoing what had succeeded
    When the orchestrator of "subplan run . --min-files 1 --exclude *.py --exclude *.log --run-id nightly --max-parallel 2 -- python agent.py" is killed before its 3rd success is recorded
    And I run "subplan resume nightly"
    Then the exit status is 0
    And the output mentions "4 succeeded"
    And no subplan recorded as succeeded before the kill ran again
    And every subplan has exactly one successful attempt in run "nightly"

  Scenario: A failed subplan is run again by resume; the others keep their results
    When the agent fails for "dir1" and I run "subplan run . --min-files 1 --exclude *.py --exclude *.log --run-id nightly -- python agent.py"
    Then the exit status is 1
    And the output mentions "resume with: subplan resume nightly"
    When I run "subplan resume nightly"
    Then the exit status is 0
    And "ran.log" lists "dir0 dir1 dir1 dir2 dir3" in any order

  Scenario: --rerun runs a subplan again even though it succeeded
    When I run "subplan run . --min-files 1 --exclude *.py --exclude *.log --run-id nightly -- python agent.py"
    And I resume run "nightly" rerunning the subplan "dir2"
    Then the exit status is 0
    And "ran.log" lists "dir0 dir1 dir2 dir2 dir3" in any order

  Scenario: A second orchestrator on the same run is refused
    Given run "held" is being run by another orchestrator
    When I run "subplan resume held"
    Then the exit status is 2
    And stderr is one line mentioning "is being run by pid"
    When I run "subplan status held"
    Then the exit status is 0
    And the output mentions "being run by pid"

  Scenario: status lists the runs, and one run's subplans by state
    When the agent fails for "dir3" and I run "subplan run . --min-files 1 --exclude *.py --exclude *.log --run-id nightly -- python agent.py"
    And I run "subplan status"
    Then the exit status is 0
    And the output mentions "nightly"
    When I run "subplan status nightly --json"
    Then the JSON status counts 3 "succeeded" and 1 "failed"

  Scenario: report shows outcomes per group and draws the timeline
    When I run "subplan run . --min-files 1 --exclude *.py --exclude *.log --run-id nightly --max-parallel 2 -- python agent.py"
    And I run "subplan report nightly --timeline timeline.png"
    Then the exit status is 0
    And the output mentions "peak concurrency 2 of max 2"
    And "timeline.png" is a PNG picture

  Scenario Outline: Bad input is one line and exit 2, and changes nothing
    Given <setup>
    When I run "subplan <command>"
    Then the exit status is 2
    And stderr is one line mentioning "<message>"
    And the state database is unchanged

    Examples:
      | setup                                   | command                                        | message               |
      | a run "nightly" that succeeded           | resume other                                   | no run 'other'        |
      | a run "nightly" that succeeded           | run . --run-id nightly -- python agent.py | exists already        |
      | a corrupt state database                 | status                                         | state.db              |

  Scenario: A store that cannot be reached is a temporary failure: exit 75, nothing changes
    Given a run "nightly" that succeeded
    When I run "subplan status --store postgresql://nobody@127.0.0.1:9/none"
    Then the exit status is 75
    And stderr is one line mentioning "cannot connect"
    And the state database is unchanged
