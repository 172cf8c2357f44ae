"""The few exception classes discoseq raises; each subclasses a builtin, so either catches it.

``IndexFormatError(ValueError)`` is the family of "this index cannot be used as it is":
``StaleIndexError`` (its sources changed since the build) is one, so ``except IndexFormatError``
catches both. To treat a stale index apart (e.g. rebuild it), catch ``StaleIndexError`` first.
"""

from __future__ import annotations


class IndexFormatError(ValueError):
    """An index directory is missing, truncated, corrupted or of an unsupported format version."""


class StaleIndexError(IndexFormatError, RuntimeError):
    """A source manifest changed after the index was built (size, mtime or content differ), or
    is gone while its records are read from it in place.

    An :class:`IndexFormatError` (hence a ``ValueError``), and still the ``RuntimeError`` it
    has always been, so existing ``except RuntimeError`` clauses keep catching it.

    :ivar path: the index directory (None when not given).
    :ivar problem: what changed, when the check of the sources found it (None otherwise): a
        front end words its own advice around it (the command line's ``--no-check-sources``).
    """

    def __init__(self, message: str, *, path: object = None, problem: str | None = None) -> None:
        super().__init__(message)
        self.path = path
        self.problem = problem


class IndexWriteError(OSError):
    """An index could not be written: the disk (or the quota) is full. The message names the
    directory, what was written and what is free; nothing half-written is left behind.

    :ivar path: the directory being written.
    :ivar written: bytes written before the failure (None when unknown).
    """

    def __init__(
        self, message: str, *, path: object = None, written: int | None = None, errno: int = 0
    ) -> None:
        super().__init__(message)
        self.errno = errno or None
        self.path = path
        self.written = written


class ManifestError(ValueError):
    """A cut manifest cannot be indexed; the message names the file, the line and the field."""

    def __init__(self, message: str, path: str | None = None, line: int | None = None) -> None:
        where = ""
        if path is not None:
            where = f"{path}:{line}: " if line is not None else f"{path}: "
        super().__init__(where + message)
        self.path = path
        self.line = line
