"""The alert lifecycle: raising an SOS (`service.raise_alert`), the consoles' view of an alert, routing
by jurisdiction, the outbox and its delivery to every channel, escalation, and the cross-process fan-out.
"""
