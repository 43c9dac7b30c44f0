"""Backends: the one dispatch loop, the setup every backend shares, and the
adapters that run attempts on threads, worker processes, asyncio or dask."""
