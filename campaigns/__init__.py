"""Campaigns: audiences, templates, campaign state machine, outbox, dispatcher, throttle, scheduler."""
