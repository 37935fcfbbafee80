"""Database errors as mqtthub's own :class:`~mqtthub.errors.StoreError` tree.

Everything outside ``store/`` sees these, never SQLAlchemy's exceptions:
``StoreUnavailableError`` (the database cannot be reached: retry later, answer 503),
``StoreConflictError`` (a unique key is taken), and plain ``StoreError`` for anything
else the database refused.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy.exc import (
    DBAPIError,
    DisconnectionError,
    IntegrityError,
    InterfaceError,
    OperationalError,
    SQLAlchemyError,
)
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from mqtthub.errors import StoreConflictError, StoreError, StoreUnavailableError


@contextmanager
def translated() -> Iterator[None]:
    """Re-raise SQLAlchemy errors of the block as the matching :class:`StoreError`."""
    try:
        yield
    except (OperationalError, InterfaceError, DisconnectionError, PoolTimeoutError) as exc:
        # Unreachable, or every pooled connection busy: the same call may work later.
        raise StoreUnavailableError(first_line(exc)) from exc
    except IntegrityError as exc:
        raise StoreConflictError(first_line(exc)) from exc
    except SQLAlchemyError as exc:
        raise StoreError(first_line(exc)) from exc


def first_line(exc: BaseException) -> str:
    """The driver's message of a database error, on one line, at most 300 characters."""
    cause = exc.orig if isinstance(exc, DBAPIError) else exc
    lines = str(cause).strip().splitlines()
    return (lines[0] if lines else type(exc).__name__)[:300]
