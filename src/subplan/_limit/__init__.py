"""Limits: the run's slots (``Limiter``), slots layered on a shared pool, the
host-wide pool of flock'd files (``SharedLimiter``), the concurrency tracker and the
limited executor."""
