"""Errors a user can cause and fix; the CLI prints them as one line and exits 2."""


class UsageError(ValueError):
    """A mistake in how a command or function was called (bad argument value, unknown name)."""
