Feature: A dask cluster's pools from the command line
  Orchestrators on several hosts name one pool of the cluster with --pool. The pool's
  size (--pool-size) is one number for everyone who names it; each run's --max-parallel
  stays that run's own bound.

  Background:
    Given a project directory of 6 directories with 3 files each

  Scenario: Two orchestrators sharing a pool of three never run more than three at once
    Given a dask cluster with 6 workers
    When two orchestrators run "subplan run . --backend dask --scheduler SCHEDULER --pool agents --pool-size 3 --max-parallel 2 -- python -c 'import time; time.sleep(0.3)'" on the dask cluster at once
    Then both orchestrators succeed
    And together the orchestrators never had more than 3 subplans running at once
    And neither orchestrator had more than 2 subplans running at once

  Scenario: Every run naming a pool must give it the same size
    Given a dask cluster with 2 workers
    When I run "subplan run . --no-store --backend dask --scheduler SCHEDULER --pool agents --pool-size 3 -- python -c pass" on the dask cluster
    Then the exit status is 0
    When I run "subplan run . --no-store --backend dask --scheduler SCHEDULER --pool agents --pool-size 5 -- python -c pass" on the dask cluster
    Then the exit status is 2
    And stderr is one line mentioning "Inconsistent max leases: 5, expected: 3"

  Scenario Outline: A pool size needs a pool, and is at least 1
    When I run "subplan run . <options> -- python -c pass"
    Then the exit status is 2
    And stderr is one line mentioning "<message>"
    And nothing was written to ".subplan"

    Examples:
      | options                      | message                               |
      | --pool-size 3                | --pool-size needs --pool NAME         |
      | --pool agents --pool-size 0  | --pool-size: must be >= 1, got 0      |
      | --pool agents --pool-size x  | --pool-size: expected an integer, got 'x' |
