"""The /api/v1 routes (one file per resource in routes/) and their shared dependencies."""
