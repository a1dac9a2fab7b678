"""Watchers: share links to one trip (tokens stored hashed, expiring, revocable), the watcher
page and its live feed.

Public surface: `routes.router` (make and revoke links, the page), `watcher.endpoint` (the
socket `/v1/share/{token}`), and `feed.TripFeed`, this process's `trips.service.Listener`,
which relays trips' changes and fixes to watchers and phones in every process.
"""
