"""Shared-state backends: in-memory (standalone) and Redis (cluster)."""
