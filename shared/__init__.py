"""The package both services import: settings, models, auth helpers and
cross-cutting pieces (current-user context, logging, health checks)."""
