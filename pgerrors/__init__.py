"""Every error a user can see: one class per SQLSTATE, a plain-words message and, where it helps, a hint.

The wire layer turns any `PgError` into an ErrorResponse in one place (`proxy.wire.messages`); any
other exception becomes `InternalError` with no data in its message. `docs/errors.md` lists these codes
and `tests/test_error_codes.py` checks the two agree.
"""

from __future__ import annotations


class PgError(Exception):
    sqlstate = "XX000"
    severity = "ERROR"

    def __init__(
        self, message: str, *, hint: str | None = None, detail: str | None = None, position: int | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.detail = detail
        self.position = position
        self.audited = False  # set once the audit log has recorded this refusal


class SyntaxErrorPg(PgError):
    """The statement is not valid SQL."""

    sqlstate = "42601"


class FeatureNotAllowed(PgError):
    """The statement kind, function or construct is not allowed by the DP policy."""

    sqlstate = "0A000"


class AccessDenied(PgError):
    """The table or column is not in the policy, or not allowed in that position (or for this role)."""

    sqlstate = "42501"


class BudgetExhausted(PgError):
    """Answering would spend more privacy budget than is left."""

    sqlstate = "53400"


class TooManyRequests(PgError):
    """A rate limit or connection cap was reached."""

    sqlstate = "53300"


class AuthenticationFailed(PgError):
    """Wrong user name or password."""

    sqlstate = "28P01"
    severity = "FATAL"


class InvalidAuthorization(PgError):
    """The connection does not meet the server's requirements (e.g. TLS required, no user name)."""

    sqlstate = "28000"
    severity = "FATAL"


class ProtocolViolation(PgError):
    """The client sent a message that breaks the PostgreSQL protocol."""

    sqlstate = "08P01"
    severity = "FATAL"


class QueryCanceled(PgError):
    """The query was cancelled or ran past its timeout."""

    sqlstate = "57014"


class InFailedTransaction(PgError):
    """An earlier statement in this transaction failed; only ROLLBACK is accepted."""

    sqlstate = "25P02"


class NoActiveTransaction(PgError):
    """A savepoint command outside a transaction block."""

    sqlstate = "25P01"


class InvalidParameterValue(PgError):
    """A SET value or a bound parameter is outside what is allowed."""

    sqlstate = "22023"


class BadCopyData(PgError):
    """A row of a COPY or INSERT of activity events is not an event: nothing of that statement is kept."""

    sqlstate = "22P04"


class InvalidTextRepresentation(PgError):
    """A parameter value cannot be read as its declared type."""

    sqlstate = "22P02"


class UndefinedPreparedStatement(PgError):
    """Bind or Describe named a prepared statement that does not exist."""

    sqlstate = "26000"


class UndefinedCursor(PgError):
    """Execute or Describe named a portal that does not exist."""

    sqlstate = "34000"


class CharacterNotInRepertoire(PgError):
    """The client sent bytes that are not valid UTF-8."""

    sqlstate = "22021"


class UndefinedObject(PgError):
    """A catalog query named a relation, function or type PrivacyLens does not emulate."""

    sqlstate = "42704"


class UndefinedColumn(PgError):
    """A COPY or INSERT into an activity dataset named a column it does not have."""

    sqlstate = "42703"


class DatatypeMismatch(PgError):
    """A bound parameter does not fit where the query uses it: refused before anything is charged."""

    sqlstate = "42804"


class DuplicateCursor(PgError):
    """DECLARE of a cursor name that is already open."""

    sqlstate = "42P03"


class StatementTooComplex(PgError):
    """A statement over the server's limits: too long, too deep, too many terms, too many rows, or
    too long to plan. Checked before the work is done, so one client cannot stall the others."""

    sqlstate = "54001"


class InternalError(PgError):
    """Something broke inside PrivacyLens. The message never carries data."""

    sqlstate = "XX000"


def all_error_classes() -> list[type[PgError]]:
    return [PgError, *PgError.__subclasses__()]
