Feature: subplan run on the command line
  An engineer runs one command per leaf subplan from the shell, bounded by
  --max-parallel, and reads a summary (or JSON for an agent).

  Background:
    Given a project directory of 6 directories with 3 files each

  Scenario: Every subplan's command runs with its own files
    When I run "subplan run . --max-parallel 4 --run-id r1 -- python -c 'import sys; print(*sys.argv[1:])' {id} {files}"
    Then the exit status is 0
    And the output starts with "run r1: succeeded"
    And each of the 6 subplans of run "r1" printed its id and its files

  Scenario: The JSON report says how the run went
    When I run "subplan run . --max-parallel 2 --json -- python -c 'import time; time.sleep(0.2)'"
    Then the exit status is 0
    And the JSON report says "succeeded" with 6 succeeded and a peak of 2

  Scenario: A failing command makes the exit status 1
    When I run "subplan run . --retries 1 -- python -c 'import sys; sys.exit(3)'"
    Then the exit status is 1
    And the output mentions "exit status 3"

  Scenario: Events are written as JSON lines for an agent to follow
    When I run "subplan run . --events events.jsonl -- python -c pass"
    Then the exit status is 0
    And "events.jsonl" has 6 "attempt_started" events and ends with "run_ended"

  Scenario: A dry run shows what each subplan would run, and runs nothing
    When I run "subplan run . --dry-run --json -- python -c pass {id} {files}"
    Then the exit status is 0
    And the dry run shows every leaf's command once, with its id and its files
    And nothing was written to ".subplan"

  Scenario: --tag shows every command's output, each line tagged with its subplan's label
    When I run "subplan run . --tag --progress off -- python -c 'import os, sys; print(sys.argv[1], os.environ[sys.argv[2]]); print(sys.argv[3], file=sys.stderr)' hello SUBPLAN_LABEL oops"
    Then the exit status is 0
    And stdout has the line "hello <label>" once for each of the 6 subplans, tagged with its label
    And stderr has the line "oops" once for each of the 6 subplans, tagged with its label
    And each of the 6 subplans' log files still holds its output

  Scenario: With --json the tagged output goes to stderr, and stdout holds the report alone
    When I run "subplan run . --tag-by id --json -- python -c 'import os, sys; print(sys.argv[1], os.environ[sys.argv[2]])' hello SUBPLAN_ID"
    Then the exit status is 0
    And the JSON report says "succeeded" with 6 succeeded
    And stderr has the line "hello <id>" once for each of the 6 subplans, tagged with its id

  Scenario Outline: --halt stops the run once enough subplans failed
    When I run "subplan run . --max-parallel 1 --halt <halt> --json -- python -c 'import sys; sys.exit(3)'"
    Then the exit status is 1
    And the JSON report counts <failed> failed and <not_run> not run

    Examples:
      | halt        | failed | not_run |
      | soon,fail=1 | 1      | 5       |
      | now,fail=2  | 2      | 4       |

  Scenario Outline: Bad input gets one line and exit status 2
    When I run "subplan run <arguments>"
    Then the exit status is 2
    And stderr is one line mentioning "<message>"
    And nothing was written to ".subplan"

    Examples:
      | arguments                              | message                                 |
      | . --max-parallel 0 -- python -c pass   | --max-parallel: must be >= 1, got 0     |
      | .                                      | no command given                        |
      | . -- python {nope}                     | unknown placeholder {nope}              |
      | . -- no-such-program-xyz {id}          | program not found: 'no-such-program-xyz' |
      | . --halt later -- python -c pass       | --halt: expected now,fail=N or soon,fail=N |
      | missing-dir -- python -c pass          | no such directory: missing-dir          |
      | --plan nope.json -- python -c pass     | no such plan file: nope.json            |
      | . -- python --x={files}                | {files} must be an argument on its own  |
