"""The JSON API under /api/v1: one module per resource, each a list of declared operations
(dashboard.routing) whose handlers parse, call dashboard.services and answer."""
