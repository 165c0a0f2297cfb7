"""Value-based algorithms."""
