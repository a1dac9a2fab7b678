"""Delivery channels behind one small interface (console hub, FCM, CAD webhook).

Never imports `server` or SQLAlchemy (a test keeps it so). The channels arrive
with the SOS work; this package holds the boundary until then.
"""
