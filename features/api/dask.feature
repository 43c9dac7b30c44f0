Feature: One budget shared by several orchestrators on a dask cluster
  A team spreads its agents over a dask cluster and starts several orchestrators. When
  they name the same pool, the pool is one budget for all of them: together they never
  run more subplans at once than the pool's size, whatever each one's own limit.

  Scenario: Two runs sharing a pool of five never run more than five subplans at once
    Given a dask cluster with 10 workers
    And a pool named "agents" of size 5 on the cluster
    When two runs of 8 subplans each, each at most 4 in parallel, work 0.2 seconds per subplan drawing from the pool
    Then both runs succeed
    And together the runs never had more than 5 subplans running at once
    And neither run had more than 4 subplans running at once
