"""The few exception classes discoseq raises; each subclasses a builtin, so either catches it."""

from __future__ import annotations


class IndexFormatError(ValueError):
    """An index directory is missing, truncated, corrupted or of an unsupported format version."""


class StaleIndexError(RuntimeError):
    """A source manifest changed after the index was built (size, mtime or content differ)."""


class ManifestError(ValueError):
    """A cut manifest cannot be indexed; the message names the file, the line and the field."""

    def __init__(self, message: str, path: str | None = None, line: int | None = None) -> None:
        where = ""
        if path is not None:
            where = f"{path}:{line}: " if line is not None else f"{path}: "
        super().__init__(where + message)
        self.path = path
        self.line = line
