"""Who is who: users and their device tokens, dispatchers and officers (staff) and their sessions,
the user's PINs, contacts and push tokens, and the tracker devices they register (`trackers`).
"""
