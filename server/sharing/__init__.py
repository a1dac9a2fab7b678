"""Watchers: share links to one trip (tokens stored hashed, expiring, revocable), the watcher
page and its live feed."""
