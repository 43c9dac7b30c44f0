Feature: A person can watch a run, and stop what will not stop
  The progress of `subplan run` goes to standard error: a redrawn bar on a terminal,
  plain lines elsewhere (`--progress plain`), nothing with `--progress off`. A command
  that outlives its `--timeout` gets SIGTERM, then SIGKILL `--kill-after` seconds later.
  `report --timeline FILE` draws the run in the format FILE's extension names.

  Background:
    Given a project directory of 3 directories with 2 files each
    And a script "stubborn.py" with these lines:
      """
      import signal, time
      signal.signal(signal.SIGTERM, signal.SIG_IGN)
      print("ignoring SIGTERM", flush=True)
      time.sleep(60)
      """

  Scenario: Without a terminal the progress is plain lines on stderr
    When I run "subplan run . --min-files 1 --exclude *.py --run-id w1 --progress plain -- python -c pass"
    Then the exit status is 0
    And stderr has a line starting with "subplan:" and ending with "3/3 done, 0 running, ETA 0:00"

  Scenario: --progress off keeps stderr quiet
    When I run "subplan run . --min-files 1 --run-id w2 --progress off -- python -c pass"
    Then the exit status is 0
    And stderr is empty

  Scenario: A command that ignores SIGTERM is killed after the grace
    When I run "subplan run . --min-files 1 --run-id w3 --timeout 1 --kill-after 0.2 --retries 0 --max-parallel 3 --json -- python stubborn.py"
    Then the exit status is 1
    And every subplan in the JSON report failed with "timed out after 1.0s (its process group was killed)"

  Scenario Outline: The timeline's format comes from the file's extension
    When I run "subplan run . --min-files 1 --run-id w4 --progress off -- python -c pass"
    And I run "subplan report w4 --timeline <file>"
    Then the exit status is <status>
    And "<file>" <is>

    Examples:
      | file         | status | is                   |
      | timeline.svg | 0      | is an SVG picture    |
      | timeline.pdf | 0      | is a PDF document    |
      | timeline.txt | 2      | was not written      |
