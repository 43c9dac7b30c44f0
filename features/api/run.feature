Feature: Running the leaf subplans in parallel under one global bound
  A planning agent runs one unit of work per leaf subplan. However the plan nests, no
  more than max_parallel units run at once across the whole tree.

  Scenario: Fifteen subplans at ten in parallel
    Given a plan with 15 leaf subplans
    When every subplan works for 0.2 seconds with at most 10 in parallel
    Then all 15 subplans succeed
    And the peak concurrency is exactly 10

  Scenario Outline: The peak is the limit when enough work is ready, never above it
    Given a plan with <subplans> leaf subplans
    When every subplan works for 0.2 seconds with at most <limit> in parallel
    Then all <subplans> subplans succeed
    And the peak concurrency is exactly <peak>

    Examples:
      | subplans | limit | peak |
      | 15       | 10    | 10   |
      | 5        | 10    | 5    |
      | 50       | 50    | 50   |
      | 100      | 64    | 64   |
      | 12       | 1     | 1    |

  Scenario: Nested subtrees running at once still share one bound
    Given a plan of 3 subtrees with 8 leaf subplans each
    When every subplan works for 0.2 seconds with at most 6 in parallel
    Then all 24 subplans succeed
    And the peak concurrency is exactly 6

  Scenario: A subtree with its own cap does not hold the others back
    Given a plan of 3 subtrees with 8 leaf subplans each
    When every subplan works for 0.2 seconds with at most 6 in parallel and at most 2 from the first subtree
    Then at most 2 subplans of the first subtree ever run at once
    And the peak concurrency is exactly 6

  Scenario: A flaky subplan is retried and the run succeeds
    Given a plan with 4 leaf subplans
    When the first subplan fails on its first attempt and the run allows 1 retry
    Then all 4 subplans succeed
    And the first subplan took 2 attempts

  Scenario: A failed prerequisite skips what depends on it
    Given a plan with 3 leaf subplans
    And the second subplan depends on the first
    When the first subplan always fails and the run allows 0 retries
    Then the first subplan failed
    And the second subplan was skipped because its prerequisite failed
    And the third subplan succeeded

  Scenario: Cost and pass rate are summarised per group
    Given a plan with 4 leaf subplans
    When each subplan costs 2.0 and the first one does not pass
    Then the whole plan has a pass rate of 0.75, a mean cost of 2.0 and a cost of pass of 2.67
