"""The store's own errors: every driver or schema problem surfaces as one of these."""

from __future__ import annotations


class StoreError(Exception):
    """Base class of every error the store raises on purpose."""


class RunNotFound(StoreError, LookupError):
    """No run matches the given id, name or reference."""


class SchemaError(StoreError):
    """The database is not a tracer database, has a newer schema, or is corrupt."""
