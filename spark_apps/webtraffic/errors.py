"""Errors that reach an operator as one clear line, not a stack trace."""

from __future__ import annotations


class WebtrafficError(Exception):
    """An expected failure with a message that tells the operator what to do.

    The CLI prints the message alone (no traceback) and exits non-zero.
    """


class SettingsError(WebtrafficError):
    """A configuration value is missing or malformed."""
