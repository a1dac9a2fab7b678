"""Trips: a taxi ride, a hike or a late walk, with its timers (overdue, are_you_safe) and its
planned route."""
