"""Edge demo (issue 6)."""
