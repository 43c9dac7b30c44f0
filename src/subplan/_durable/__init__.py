"""Durable runs: the journal that commits every attempt to the store, and what a
resume takes over from a stored run."""
