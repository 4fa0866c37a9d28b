"""Modal dialogs of the inspector."""
