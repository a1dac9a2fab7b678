"""The Guardian service process."""
