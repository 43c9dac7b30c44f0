Feature: subplan plan on the command line
  An engineer decomposes a project from the shell and reads the tree, or writes the
  JSON plan that agents and later commands use.

  Background:
    Given a project directory with these files:
      | path              | bytes |
      | README.md         | 400   |
      | src/app/a.py      | 800   |
      | src/app/b.py      | 800   |
      | src/app/c.py      | 800   |
      | src/lib/d.py      | 400   |
      | src/lib/e.py      | 400   |
      | src/lib/f.py      | 400   |
      | tests/test_a.py   | 200   |
      | tests/test_b.py   | 200   |
      | tests/test_c.py   | 200   |

  Scenario: The tree shows each subplan with its counts and leaf reason
    When I run "subplan plan . --max-tokens 500"
    Then the exit status is 0
    And the output starts with "plan: 10 files, 3 leaves, depth 1"
    And the output has a line for "src/{app/a.py,lib}" with "4 files, 500 tokens" and "[fits_budget]"
    And the output has a line for "tests" with "3 files, 150 tokens" and "[fits_budget]"

  Scenario: Without a budget, a leaf holds up to 50,000 tokens
    When I run "subplan plan ."
    Then the exit status is 0
    And the output starts with "plan: 10 files, 1 leaves, depth 0 (min_files 3, max_depth 6, max_tokens 50000)"

  Scenario: The JSON plan follows the subplan.plan/1 schema
    When I run "subplan plan . --format json -o plan.json"
    Then the exit status is 0
    And "plan.json" is a valid plan of 10 files with schema "subplan.plan/1"
    And in "plan.json" every leaf lists its files and every node its file_count and tokens

  Scenario: Files can come from a list instead of a directory
    Given a list file "files.txt" with these lines:
      """
      # paths with optional sizes
      src/app/a.py	4000
      src/app/b.py
      src/app/c.py
      docs/guide.md	100
      """
    When I run "subplan plan --from-list files.txt --format json"
    Then the exit status is 0
    And the JSON output is a plan of 4 files with 1425 tokens

  Scenario Outline: What subplan wrote is never planned
    Given a file "<file>" holding a plan, a report or events: <head>
    When I run "subplan plan . --format json"
    Then the exit status is 0
    And the JSON output plans 10 files
    And stderr is one line mentioning "skipped 1 entry (1 a subplan plan, report or event file); first: <file>"

    Examples:
      | file             | head                                                  |
      | plan.json        | {"schema": "subplan.plan/1", "config": {}}            |
      | out/report.json  | {"schema": "subplan.report/1", "run_id": "r1"}        |
      | events.jsonl     | {"event": "run_started", "time": 1.0, "run_id": "r1"} |
      | runs/ev.jsonl    | {"schema": "subplan.event/1", "event": "started"}     |

  Scenario: A file name with a newline is skipped with a warning
    Given a file whose name holds a newline, "src/odd" then "name.py"
    When I run "subplan plan . --format json"
    Then the exit status is 0
    And the JSON output plans 10 files
    And stderr is one line mentioning "first: src/odd\nname.py (name holds a line break)"

  Scenario: Stable cuts keep the content-anchored leaves, small ones too
    When I run "subplan plan . --max-tokens 500 --cuts stable"
    Then the exit status is 0
    And the output starts with "plan: 10 files, 5 leaves, depth 3 (min_files 3, max_depth 6, max_tokens 500, cuts stable)"
    And the output has a line for "src/lib" with "3 files, 300 tokens" and "[fits_budget]"
    And the output has a line for "src/app [b.py..c.py]" with "2 files, 400 tokens" and "[below_min_files]"

  Scenario: A budget splits until every leaf fits
    When I run "subplan plan . --max-files 2 --format json"
    Then the exit status is 0
    And no leaf in the JSON output has more than 2 files

  Scenario Outline: Bad input gets one line and exit status 2
    Given a list file "empty.txt" with these lines:
      """
      # nothing here
      """
    And a list file "bad.txt" with these lines:
      """
      a.py	lots
      """
    When I run "subplan <arguments>"
    Then the exit status is 2
    And stderr is one line mentioning "<message>"
    And nothing was written to "out.json"

    Examples:
      | arguments                                  | message                                 |
      | plan no-such-dir -o out.json               | no such directory                       |
      | plan . --min-files 0 -o out.json           | --min-files: must be >= 1, got 0        |
      | plan . --max-depth -1 -o out.json          | --max-depth: must be >= 0, got -1       |
      | plan --from-list empty.txt -o out.json     | no files in empty.txt                   |
      | plan --from-list bad.txt -o out.json       | bad.txt:1: size is not a non-negative integer |
      | plan --from-list missing.txt -o out.json   | no such file: missing.txt               |
      | plan . --format yaml -o out.json           | invalid choice: 'yaml'                  |
