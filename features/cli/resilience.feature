Feature: subplan run rides out rate limits from the command line
  A command that prints a provider's rate-limit message pauses the run instead of
  failing; look-alikes do not.

  Background:
    Given a project directory of 2 directories with 3 files each

  Scenario: A command told to "try again in 1s" is paused, not failed
    Given a script "agent.py" with these lines:
      """
      import os, pathlib, sys
      seen = pathlib.Path(os.environ["SUBPLAN_ID"] + ".seen")
      first = not seen.exists()
      seen.touch()
      if first:
          sys.exit("429 Too Many Requests. Please try again in 1s")
      """
    When I run "subplan run . --exclude agent.py --max-parallel 2 -- python agent.py"
    Then the exit status is 0
    And the output mentions "paused"
    And the output mentions "2 succeeded"

  Scenario: The Gemini CLI's "Your quota will reset after 1s" is paused, not failed
    Given a script "agent.py" with these lines:
      """
      import os, pathlib, sys
      seen = pathlib.Path(os.environ["SUBPLAN_ID"] + ".seen")
      first = not seen.exists()
      seen.touch()
      if first:
          sys.exit("You have exhausted your capacity on this model. Your quota will reset after 1s.")
      """
    When I run "subplan run . --exclude agent.py --max-parallel 2 -- python agent.py"
    Then the exit status is 0
    And the output mentions "paused"
    And the output mentions "2 succeeded"

  Scenario: A command quoting documentation about rate limits is a plain failure
    Given a script "docs.py" with these lines:
      """
      import sys
      print("If you hit the rate limit, you will receive an HTTP 429 error.")
      print("| 429 | rate_limit_error | Your account has hit a rate limit. |")
      sys.exit(1)
      """
    When I run "subplan run . --exclude docs.py -- python docs.py"
    Then the exit status is 1
    And the output mentions "2 failed"

  Scenario: A number that merely looks like a status is a plain failure
    When I run "subplan run . -- python -c 'import sys; sys.exit(\"SyntaxError on line 1429\")'"
    Then the exit status is 1
    And the output mentions "2 failed"

  Scenario: The process backend runs each command from a worker process
    When I run "subplan run . --backend process --max-parallel 2 --json -- python -c 'import time; time.sleep(1)'"
    Then the exit status is 0
    And the JSON report says "succeeded" with 2 succeeded and a peak of 2
