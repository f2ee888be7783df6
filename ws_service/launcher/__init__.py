"""``python -m ws_service``: the ws service's process launcher (servers, workers, drain)."""
