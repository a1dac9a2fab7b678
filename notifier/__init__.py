"""Delivery channels: the in-process console hub, FCM push, the CAD webhook.

Each channel has its own timeout and fails on its own; none touches the
database (the server's outbox decides what is due and records what was done).
"""
