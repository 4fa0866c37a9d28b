"""The inspector's screens, one per module."""
