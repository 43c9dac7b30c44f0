"""Dispatch decisions: the scheduler, the pause gate, what follows an attempt's
end, retries, dependencies, halts, and the records and report of a run."""
