Feature: Rate limits pause the whole run; a dead worker breaks only its own attempt
  Agents call APIs that rate-limit them, and their workers die. One rate limit pauses
  every new start until the limit resets, without spending anyone's attempts; one dead
  worker costs only the attempt it was running.

  Scenario: A rate limit pauses every new start until the limit resets
    Given a plan with 12 leaf subplans
    When the third subplan is rate-limited for 1 second on its first attempt while the others work for 0.1 seconds, at most 4 in parallel
    Then all 12 subplans succeed
    And the run paused once, for 1.1 seconds
    And no subplan started while the run was paused
    And the rate-limited attempt was not charged

  Scenario: A worker that dies breaks only its own attempt
    Given a plan with 8 leaf subplans
    When the workers of the first two subplans die on their first attempt, in worker processes with 1 retry
    Then all 8 subplans succeed
    And the first two subplans each took 2 attempts, the first one "crashed"
    And every other subplan took 1 attempt

  Scenario: A subplan that always kills its worker stops at the crash cap
    Given a plan with 2 leaf subplans
    When every worker dies, in worker processes with 10 retries and a crash cap of 3
    Then every subplan failed after 3 crashed attempts
