"""One routes module per resource, all mounted under /api/v1 by headend.api.main."""
