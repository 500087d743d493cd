"""The audit's one error class."""

from __future__ import annotations


class AuditError(Exception):
    """The audit cannot go on (or a re-analysis cannot be made): the message says why."""
