Feature: An agent can read what a run did
  `subplan run --json`, `subplan resume --json` and `subplan report RUN_ID --json` print
  one report (schema subplan.report/1) that says, per subplan, how it ended, the exit
  code of its last attempt, where its logs are and how its standard error ended. Every
  event line is a subplan.event/1 document. The counts are the same wherever they show,
  a pass rate says what it is a rate of, and time between sessions is idle, not run time.

  Background:
    Given a project directory of 4 directories with 2 files each
    And a script "agent.py" with these lines:
      """
      import os, sys
      print("working on", os.environ["SUBPLAN_LABEL"])
      if os.environ["SUBPLAN_LABEL"] == os.environ.get("FAIL_LABEL"):
          print("step 1 done", file=sys.stderr)
          print("it broke", file=sys.stderr)
          sys.exit(3)
      """

  Scenario: The JSON report says per subplan its exit code, its logs and its stderr tail
    When the agent fails for "dir1" and I run "subplan run . --min-files 1 --exclude *.py --run-id nightly --events events.jsonl --json -- python agent.py"
    Then the exit status is 1
    And the JSON report validates against subplan.report/1
    And every line of "events.jsonl" validates against subplan.event/1
    And the JSON report shows these subplans:
      | label | status    | exit code | attempts | stderr tail           |
      | dir0  | succeeded | 0         | 1        |                       |
      | dir1  | failed    | 3         | 1        | step 1 done\nit broke |
      | dir2  | succeeded | 0         | 1        |                       |
      | dir3  | succeeded | 0         | 1        |                       |
    And the log paths in the JSON report are the subplans' real logs
    And the JSON report's cost of pass is a number for the whole plan

  Scenario: A run halted at its first failure rates only what ran
    When the agent fails for "dir0" and I run "subplan run . --min-files 1 --exclude *.py --run-id nightly --max-parallel 1 --no-deps --halt now,fail=1 -- python agent.py"
    Then the output mentions "pass rate 0% of 1 run, 3 not run"
    When I run "subplan report nightly --json"
    Then the JSON report validates against subplan.report/1
    And the JSON report's cost of pass is null for the whole plan
    And "subplan status" and "subplan status nightly" count the same subplans

  Scenario: A resume hours later counts its sessions as run time, the hours between as idle
    When the agent fails for "dir2" and I run "subplan run . --min-files 1 --exclude *.py --run-id nightly -- python agent.py"
    And run "nightly" is made to have ended 3 hours ago
    And I run "subplan resume nightly --json"
    Then the exit status is 0
    And the JSON report validates against subplan.report/1
    And the JSON report has 2 sessions, about 3 hours idle and less than a minute of run time
    When I run "subplan report nightly"
    Then the output mentions "over 2 sessions (+3h00m idle between sessions)"
    And the output mentions "idle between them 3h00m"
    When I run "subplan report nightly --timeline timeline.png"
    Then "timeline.png" is a PNG picture
