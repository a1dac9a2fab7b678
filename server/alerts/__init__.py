"""The alert lifecycle: raising an SOS (`service.raise_alert`), the consoles' view of an alert, routing
by jurisdiction, the outbox and its delivery to every channel, escalation, and the cross-process fan-out;
the alerts kept as the record with their tracks (`record.keep_tracks`), and the retention job
(`retention.retire`) that drops the history past its age.
"""
