"""Reports: the live progress display and the timeline of a run."""
