"""Work outside this process: command templates, command processes and their
groups, command work, live output, work in a git worktree, and the crash-isolated
worker processes."""
