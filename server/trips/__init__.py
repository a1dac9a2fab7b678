"""Trips: taxi rides, hikes and late walks, their planned routes and their watchers."""
