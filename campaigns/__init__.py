"""Campaigns: audiences, templates, state machine, outbox, dispatcher, throttle, scheduler."""
