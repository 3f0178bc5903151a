"""The errors of the command line: a bad argument found after parsing (exit 2), and the
one line that any other failure of a command becomes (exit 1; the traceback only with
``--verbose``)."""

from __future__ import annotations

import errno

#: Appended to a failure the command line has no better words for.
VERBOSE_HINT = "rerun with --verbose for the traceback"


class UsageError(Exception):
    """A bad argument found after parsing; reported like argparse's errors (exit 2)."""


class CommandError(Exception):
    """A command cannot do its work: its message is the line shown (exit 1)."""


def _first_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[0] if lines else ""


def _database_error(err: Exception) -> str | None:
    """The line of a database that does not answer (SQLAlchemy's OperationalError)."""
    from sqlalchemy.exc import OperationalError

    if not isinstance(err, OperationalError):
        return None
    return (
        f"database unreachable: {_first_line(str(err.orig))} (start the database, or fix "
        "its URL in the config: data.current.url, history.url, model.tracking_uri, "
        "optuna.storage)"
    )


def _http_error(err: Exception) -> str | None:
    """The line of an HTTP service (the API, a registry server) that does not answer."""
    import httpx

    if isinstance(err, httpx.TransportError):
        try:
            url = str(err.request.url)
        except RuntimeError:
            url = "the server"
        return f"cannot reach {url}: {_first_line(str(err)) or type(err).__name__} (is it running?)"
    return None


def describe(err: Exception, *, verbose: bool = False) -> str:
    """`err` as one line naming the thing and what to do (`verbose`: the traceback is
    shown already, so the line does not offer it)."""
    if isinstance(err, OSError) and err.errno == errno.EADDRINUSE:
        return f"address already in use ({err.strerror}): stop what listens there or pick --port"
    if isinstance(err, OSError) and err.filename is not None:
        hint = "check the path" if isinstance(err, FileNotFoundError) else "check the file"
        return f"{err.filename}: {err.strerror} ({hint})"
    for known in (_database_error, _http_error):
        line = known(err)
        if line is not None:
            return line
    text = _first_line(str(err))
    if type(err).__module__.startswith("exporter."):
        # the project's own errors already name the thing and what to do
        return text or type(err).__name__
    hint = "" if verbose else f" ({VERBOSE_HINT})"
    return f"{type(err).__name__}: {text}{hint}"
