"""Columns added to a built index: token counts of each cut's text from a real tokenizer
(``discoseq-index add-column``), written without rebuilding the index.

A cut's text is its supervisions' texts as Lhotse joins them when it merges supervisions
(``" ".join(s.text for s in cut.supervisions if s.text)``, with ``cut.supervisions`` as Lhotse
exposes them: a ``MixedCut``'s are those of its audible tracks). A cut none of whose
supervisions has a text gets ``-1``, as in the built-in ``num_tokens`` column.

The column goes into ``<name>.<hex8>.npy`` (a new file for every version, written in a
temporary folder and renamed into the index), then the header is replaced atomically with an
entry in ``extra_columns``; a crash before that leaves the old header, which does not name the
new file (the next ``add_column`` removes it). Commits are serialised by a lock on the index
directory, so concurrent ``add_column`` calls on one index each keep their column.
"""

from __future__ import annotations

import datetime as _dt
import errno
import fcntl
import hashlib
import importlib
import inspect
import multiprocessing
import operator
import os
import secrets
import shutil
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from discoseq.errors import IndexWriteError
from discoseq.index.builder import WorkerDiedError, stop_workers
from discoseq.index.format import (
    COLUMNS,
    EXTRA_COLUMN_DTYPE,
    EXTRA_COLUMN_FILE,
    EXTRA_COLUMN_NAME,
    MISSING,
    ColumnWriter,
    read_header,
    replace_header,
)
from discoseq.index.owner import claim, remove_abandoned
from discoseq.index.reader import CutIndex

__all__ = ["Tokenizer", "TokenizerError", "add_column", "cut_text", "load_tokenizer"]

CHUNK_ROWS = 4096
"""Rows read and tokenized together (one task of a worker process)."""

_TMP_PREFIX = ".add-column-"
_TEXT_IN_MESSAGES = 200  # characters of a failing text quoted in an error


class TokenizerError(ValueError):
    """A tokenizer cannot be loaded (missing, unreadable or not a tokenizer), or fails on (or
    returns no count for) a cut's text; the message names the spec, or the cut, row, source
    line and text."""


# -- tokenizers ---------------------------------------------------------------------------------


class Tokenizer:
    """A loaded tokenizer that counts the tokens of texts.

    :ivar spec: the spec as recorded in the header (a model file's absolute path, or
        ``module:function``).
    :ivar kind: ``"sentencepiece"``, ``"tokenizers"`` or ``"callable"``.
    :ivar fingerprint: ``blake2b-128:<hex>`` of the model file, or of the source file of the
        function's module; None when the function has no source file.
    """

    def __init__(
        self,
        spec: str,
        kind: str,
        fingerprint: str | None,
        count_one: Callable[[str], int],
        count_many: Callable[[list[str]], list[int]] | None = None,
    ) -> None:
        self.spec = spec
        self.kind = kind
        self.fingerprint = fingerprint
        self._count_one = count_one
        self._count_many = count_many

    def __repr__(self) -> str:
        return f"Tokenizer({self.kind}, {self.spec!r})"

    def count(self, text: str) -> int:
        """The number of tokens of ``text``."""
        return self._count_one(text)

    def count_many(self, texts: list[str]) -> list[int]:
        """The number of tokens of each text (in one call of the library when it has one)."""
        if self._count_many is None:
            return [self._count_one(t) for t in texts]
        return self._count_many(texts)


def _fingerprint_bytes(data: bytes) -> str:
    return "blake2b-128:" + hashlib.blake2b(data, digest_size=16).hexdigest()


def _read_model_file(spec: str, what: str) -> tuple[Path, bytes]:
    path = Path(spec).expanduser().absolute()
    if not path.is_file():
        found = "a directory" if path.is_dir() else "no such file"
        raise TokenizerError(f"tokenizer {spec}: {found} (expected a {what} file)")
    try:
        return path, path.read_bytes()
    except OSError as e:
        raise TokenizerError(f"tokenizer {path}: cannot read it ({e.strerror})") from e


def _missing_package(spec: str, what: str, package: str) -> TokenizerError:
    return TokenizerError(
        f"tokenizer {spec} is a {what}, which needs the {package!r} package: "
        f"pip install {package} (or pip install 'discoseq[tokenizers]')"
    )


def _sentencepiece(spec: str) -> Tokenizer:
    path, data = _read_model_file(spec, "SentencePiece model (.model)")
    try:
        import sentencepiece
    except ImportError:
        raise _missing_package(str(path), "SentencePiece model", "sentencepiece") from None
    try:
        sp = sentencepiece.SentencePieceProcessor(model_proto=data)
    except Exception as e:  # the library raises RuntimeError/OSError for a bad model
        raise TokenizerError(
            f"tokenizer {path}: not a SentencePiece model ({type(e).__name__}: {e})"
        ) from e

    def many(texts: list[str]) -> list[int]:
        return [len(ids) for ids in sp.encode(texts)]

    return Tokenizer(
        str(path), "sentencepiece", _fingerprint_bytes(data), lambda t: len(sp.encode(t)), many
    )


def _hf_tokenizers(spec: str) -> Tokenizer:
    path, data = _read_model_file(spec, "Hugging Face tokenizers (.json)")
    try:
        import tokenizers
    except ImportError:
        raise _missing_package(str(path), "Hugging Face tokenizers file", "tokenizers") from None
    try:
        tok = tokenizers.Tokenizer.from_str(data.decode("utf-8"))
    except Exception as e:  # a JSON or schema error from the library
        raise TokenizerError(
            f"tokenizer {path}: not a Hugging Face tokenizers file ({type(e).__name__}: {e})"
        ) from e

    def many(texts: list[str]) -> list[int]:
        return [len(enc.ids) for enc in tok.encode_batch(texts)]

    return Tokenizer(
        str(path), "tokenizers", _fingerprint_bytes(data), lambda t: len(tok.encode(t).ids), many
    )


def _as_count(value: Any) -> int:
    """A callable's result as a token count: a non-negative integer, or anything with a
    length (a list of tokens or ids)."""
    if isinstance(value, bool):
        raise TypeError("returned a bool, expected a token count or a list of tokens")
    if hasattr(value, "__len__") and not isinstance(value, str | bytes):
        return len(value)
    try:
        count = operator.index(value)
    except TypeError:
        raise TypeError(
            f"returned a {type(value).__name__}, expected a token count (int) or a list of tokens"
        ) from None
    if count < 0:
        raise ValueError(f"returned {count}, a negative token count")
    return count


def _callable(spec: str) -> Tokenizer:
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise TokenizerError(f"tokenizer {spec!r}: expected module:function")
    try:
        module = importlib.import_module(module_name)
    except Exception as e:  # ImportError, or whatever the module raises when imported
        raise TokenizerError(
            f"tokenizer {spec}: cannot import module {module_name!r} ({type(e).__name__}: {e})"
        ) from e
    fn: Any = module
    for part in attr.split("."):
        try:
            fn = getattr(fn, part)
        except AttributeError:
            raise TokenizerError(
                f"tokenizer {spec}: module {module_name!r} has no attribute {attr!r}"
            ) from None
    if not callable(fn):
        raise TokenizerError(f"tokenizer {spec}: {attr!r} is a {type(fn).__name__}, not callable")
    fingerprint = None
    try:
        source_file = inspect.getsourcefile(fn) or getattr(module, "__file__", None)
    except TypeError:  # a builtin: no source
        source_file = getattr(module, "__file__", None)
    if source_file is not None and os.path.isfile(source_file):
        fingerprint = _fingerprint_bytes(Path(source_file).read_bytes())

    def one(text: str) -> int:
        return _as_count(fn(text))

    return Tokenizer(spec, "callable", fingerprint, one)


def load_tokenizer(spec: str | os.PathLike[str]) -> Tokenizer:
    """Load a tokenizer from its spec: a SentencePiece model file (``*.model``), a Hugging Face
    ``tokenizers`` JSON file (``*.json``), or ``module:function`` (a callable ``text -> int``
    or ``text -> list``, imported with ``importlib``).

    SentencePiece counts ``len(sp.encode(text))`` (no BOS/EOS), ``tokenizers``
    ``len(tokenizer.encode(text).ids)`` (with the special tokens its post-processor adds).

    :raises TokenizerError: for any other spec, or a tokenizer that cannot be loaded.
    """
    text = os.fspath(spec)
    if text.endswith(".model"):
        return _sentencepiece(text)
    if text.endswith(".json"):
        return _hf_tokenizers(text)
    if ":" in text and not os.path.exists(text):
        return _callable(text)
    raise TokenizerError(
        f"tokenizer spec {text!r}: expected a SentencePiece model file (*.model), a Hugging Face "
        "tokenizers file (*.json) or module:function (a callable text -> int or text -> list)"
    )


# -- the text of a cut --------------------------------------------------------------------------


def _joined(texts: Iterator[Any]) -> str | None:
    """Lhotse's join of supervision texts; None when no supervision has a text."""
    present = [t for t in texts if t is not None]
    if not present:
        return None
    return " ".join(t for t in present if t)


def cut_text(record: dict[str, Any]) -> str | None:
    """The text of a cut record: its supervisions' texts joined as Lhotse joins them, or None
    when none has a text. ``MixedCut`` records go through Lhotse (its ``supervisions`` are the
    audible tracks'); the other types' supervisions are read from the record as they are."""
    cut_type = record.get("type")
    if cut_type == "PaddingCut":
        return None
    if cut_type == "MixedCut":
        from lhotse.cut.set import deserialize_cut

        return _joined(s.text for s in deserialize_cut(record).supervisions)
    return _joined(s.get("text") for s in record.get("supervisions") or ())


# -- counting, in one process or several ----------------------------------------------------------


def _quote(text: str) -> str:
    if len(text) <= _TEXT_IN_MESSAGES:
        return repr(text)
    return repr(text[:_TEXT_IN_MESSAGES]) + f" ... ({len(text)} characters)"


def count_rows(index: CutIndex, tokenizer: Tokenizer, rows: np.ndarray) -> np.ndarray:
    """The token counts of ``rows`` (-1 for a cut without text)."""
    records = index.record_dicts(rows)
    out = np.full(rows.shape[0], MISSING, dtype=np.int64)
    at: list[int] = []
    texts: list[str] = []
    for i, record in enumerate(records):
        text = cut_text(record)
        if text is not None:
            at.append(i)
            texts.append(text)
    if not texts:
        return out
    try:
        counts = tokenizer.count_many(texts)
        if len(counts) != len(texts):
            raise ValueError(f"{len(counts)} counts for {len(texts)} texts")
    except (Exception, SystemExit):  # find the text it fails on, one by one
        counts = []
        for i, text in zip(at, texts, strict=True):
            try:
                counts.append(tokenizer.count(text))
            except (Exception, SystemExit) as e:  # a sys.exit() in a tokenizer is a failure
                row = int(rows[i])
                raise TokenizerError(
                    f"tokenizer {tokenizer.spec} failed on cut {records[i]['id']!r} (row {row}, "
                    f"{index.where(row)}): {type(e).__name__}: {e}; text: {_quote(text)}"
                ) from e
    out[np.asarray(at)] = counts
    return out


_worker: tuple[CutIndex, Tokenizer] | Exception | None = None


def _init_worker(index_path: str, spec: str, fingerprint: str | None) -> None:
    """A worker process: open the index and load the tokenizer once. A failure is kept and
    raised by the first task (a Pool restarts a worker whose initializer raises, forever)."""
    global _worker
    try:
        tokenizer = load_tokenizer(spec)
        if tokenizer.fingerprint != fingerprint:
            raise TokenizerError(f"tokenizer {spec} changed while the column was being counted")
        _worker = (CutIndex.open(index_path, check_sources=False), tokenizer)
    except Exception as e:
        _worker = e


def _count_span(span: tuple[int, int]) -> np.ndarray:
    if isinstance(_worker, Exception):
        raise _worker
    assert _worker is not None
    index, tokenizer = _worker
    return count_rows(index, tokenizer, np.arange(span[0], span[1], dtype=np.int64))


def _counted_chunks(
    index: CutIndex, tokenizer: Tokenizer, jobs: int, chunk_rows: int
) -> Iterator[np.ndarray]:
    """The counts of every row in order, chunk by chunk (``jobs`` processes when > 1)."""
    n = len(index)
    spans = [(s, min(s + chunk_rows, n)) for s in range(0, n, chunk_rows)]
    if jobs == 1 or len(spans) <= 1:
        for start, stop in spans:
            yield count_rows(index, tokenizer, np.arange(start, stop, dtype=np.int64))
        return
    # fork where there is one: spawn would run the caller's __main__ again in every worker (a
    # script without a main guard, stdin). Workers load the tokenizer themselves, after the
    # fork, and the pool starts before the progress bar's thread.
    # A ProcessPoolExecutor, not a Pool: a worker killed outright (out of memory) breaks it,
    # where a Pool replaces the worker and waits forever for the chunk it was counting.
    methods = multiprocessing.get_all_start_methods()
    context = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
    args = (str(index.path), tokenizer.spec, tokenizer.fingerprint)
    workers = min(jobs, len(spans))
    pool = ProcessPoolExecutor(workers, context, _init_worker, args)
    try:
        ahead: list[tuple[tuple[int, int], Future[np.ndarray]]] = []
        todo = iter(spans)
        for span in todo:  # a few chunks ahead of the one being written, in order
            ahead.append((span, pool.submit(_count_span, span)))
            if len(ahead) < 2 * workers:
                continue
            yield _chunk_result(*ahead.pop(0), tokenizer)
        for span, future in ahead:
            yield _chunk_result(span, future, tokenizer)
    except BaseException:  # an error, Ctrl-C or the caller closing: stop the workers now
        stop_workers(pool)
        raise
    finally:
        pool.shutdown(wait=True)


def _chunk_result(
    span: tuple[int, int], future: Future[np.ndarray], tokenizer: Tokenizer
) -> np.ndarray:
    """A chunk's counts; a worker that died is named with the rows it may have counted."""
    try:
        return future.result()
    except BrokenProcessPool as e:  # killed (e.g. out of memory), not an exception
        raise WorkerDiedError(
            f"a worker process counting tokens with {tokenizer.spec} died ({e}) at or before "
            f"rows {span[0]}-{span[1] - 1}; nothing was written. Retry with fewer --jobs "
            "(memory?) or --jobs 1"
        ) from e


# -- writing the column -------------------------------------------------------------------------


@contextmanager
def _locked(directory: Path) -> Iterator[None]:
    """An exclusive lock on the index directory (commits of add_column one at a time)."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def check_column_name(name: str) -> None:
    """``name`` can be an added column: an identifier of at most 64 characters, not the name of
    a built-in column (ValueError otherwise)."""
    if not isinstance(name, str) or not EXTRA_COLUMN_NAME.fullmatch(name):
        raise ValueError(
            f"column name {name!r}: expected an identifier (letters, digits, '_'; at most 64 "
            "characters, not starting with a digit)"
        )
    if name in COLUMNS:
        raise ValueError(
            f"column name {name!r} is a built-in column of every index: choose another"
        )


def _check_absent(index_path: Path, extra: Any, name: str, force: bool) -> None:
    if name in extra and not force:
        raise FileExistsError(
            f"{index_path}: column {name!r} exists (tokenizer {extra[name]['tokenizer']}); "
            "pass force=True (--force) to replace it"
        )


def _remove_unnamed(directory: Path, named: set[str]) -> None:
    """Remove added-column files that the header does not name (a replaced column's old file,
    or what an interrupted add_column renamed in before its header). Under the lock only."""
    for path in directory.iterdir():
        if EXTRA_COLUMN_FILE.fullmatch(path.name) and path.name not in named:
            path.unlink(missing_ok=True)


def add_column(
    index_path: str | os.PathLike[str],
    name: str,
    tokenizer: str | os.PathLike[str] | Tokenizer,
    *,
    jobs: int = 1,
    force: bool = False,
    progress: bool = False,
    chunk_rows: int = CHUNK_ROWS,
) -> CutIndex:
    """Add an ``<i8`` column ``name`` of token counts to a built index, without rebuilding it.

    Each cut's text (:func:`cut_text`) is counted by the tokenizer; a cut without text gets -1.
    The column reads like a built-in one (``index.column(name)``, ``index.columns[name]``),
    and ``SamplerConfig(token_column=name)`` makes every token feature use it. The header
    records the tokenizer's spec and fingerprint; ``verify`` checks the column.

    :param index_path: the index directory.
    :param name: the column's name: an identifier that is no built-in column's name.
    :param tokenizer: a spec (see :func:`load_tokenizer`) or a loaded :class:`Tokenizer`.
    :param jobs: worker processes (each loads the tokenizer once); the counts are the same for
        any number.
    :param force: replace an existing added column of that name.
    :param progress: show a progress bar over the cuts.
    :param chunk_rows: rows read and counted together.
    :returns: the index, opened again (with the new column).
    :raises TokenizerError: the tokenizer cannot be loaded, or fails on a cut.
    :raises WorkerDiedError: a worker process (``jobs`` > 1) was killed, e.g. out of memory.
    :raises FileExistsError: the column exists and ``force`` is False.
    """
    check_column_name(name)
    if not isinstance(jobs, int) or isinstance(jobs, bool) or jobs < 1:
        raise ValueError(f"jobs={jobs!r} must be a positive integer")
    if not isinstance(chunk_rows, int) or chunk_rows < 1:
        raise ValueError(f"chunk_rows={chunk_rows!r} must be a positive integer")
    index = CutIndex.open(index_path)
    try:
        directory = _write_column(index, name, tokenizer, jobs, force, progress, chunk_rows)
    finally:
        index.close()
    return CutIndex.open(directory, check_sources=False)


def _write_column(
    index: CutIndex,
    name: str,
    tokenizer: str | os.PathLike[str] | Tokenizer,
    jobs: int,
    force: bool,
    progress: bool,
    chunk_rows: int,
) -> Path:
    """:func:`add_column`'s work on the open index; returns the index directory."""
    directory = index.path
    _check_absent(directory, index.header.extra_columns, name, force)
    tok = tokenizer if isinstance(tokenizer, Tokenizer) else load_tokenizer(tokenizer)
    if jobs > 1 and not isinstance(tokenizer, str | os.PathLike):
        tok = load_tokenizer(tok.spec)  # workers load it from its spec
    remove_abandoned(directory, f"{_TMP_PREFIX}*")
    tmp = directory / f"{_TMP_PREFIX}{secrets.token_hex(4)}"
    bar = None
    try:
        os.mkdir(tmp)
        claim(tmp)
        file = f"{name}.{secrets.token_hex(4)}.npy"
        writer = ColumnWriter(tmp / file, EXTRA_COLUMN_DTYPE)
        try:
            for counts in _counted_chunks(index, tok, jobs, chunk_rows):
                writer.append(counts)
                if progress and bar is None:  # after the workers started (they fork)
                    from tqdm import tqdm

                    desc = f"{name} tokens"
                    bar = tqdm(total=len(index), unit=" cuts", unit_scale=True, desc=desc)
                if bar is not None:
                    bar.update(counts.shape[0])
        finally:
            writer.close()
        with open(tmp / file, "rb") as f:
            os.fsync(f.fileno())
        with _locked(directory):
            header = read_header(directory)  # as it is now (another add_column may have run)
            extra = dict(header.extra_columns)
            _check_absent(directory, extra, name, force)
            extra[name] = {
                "file": file,
                "dtype": EXTRA_COLUMN_DTYPE,
                "length": len(index),
                "tokenizer": tok.spec,
                "tokenizer_fingerprint": tok.fingerprint,
                "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            }
            os.rename(tmp / file, directory / file)
            try:
                replace_header(directory, {**header.raw, "extra_columns": extra})
            except BaseException:
                (directory / file).unlink(missing_ok=True)
                raise
            _remove_unnamed(directory, {meta["file"] for meta in extra.values()})
    except OSError as e:
        if e.errno in (errno.ENOSPC, errno.EDQUOT):
            raise IndexWriteError(
                f"{directory}: no space left to add column {name!r} ({len(index) * 8} bytes "
                f"needed, {shutil.disk_usage(directory).free} free)",
                path=directory,
                errno=e.errno,
            ) from e
        raise
    finally:
        if bar is not None:
            bar.close()
        shutil.rmtree(tmp, ignore_errors=True)
    return directory


# -- verification -------------------------------------------------------------------------------


def check_added_columns(index: CutIndex, recount: int = 0) -> tuple[list[str], list[str]]:
    """(problems, notes) of the added columns: values are counts or -1, -1 exactly where the
    cut has no text (``num_tokens`` is -1), a model file still has the recorded fingerprint;
    with ``recount`` > 0, that many rows (evenly spread) recounted with the tokenizer."""
    problems: list[str] = []
    notes: list[str] = []
    no_text = np.asarray(index.column("num_tokens")) == MISSING
    n = len(index)
    for name, meta in index.header.extra_columns.items():
        col = np.asarray(index.column(name))
        if n and int(col.min()) < MISSING:
            row = int(np.argmin(col))
            problems.append(f"column {name} row {row} holds {int(col[row])}, not a token count")
            continue
        differ = np.flatnonzero((col == MISSING) != no_text)
        if differ.size:
            row = int(differ[0])
            problems.append(
                f"column {name} row {row}: {int(col[row])} but num_tokens is "
                f"{int(index.column('num_tokens')[row])} (-1 must mark exactly the cuts without "
                f"text; {differ.size} rows differ)"
            )
            continue
        spec = meta["tokenizer"]
        if spec.endswith((".model", ".json")):
            if not os.path.isfile(spec):
                notes.append(f"column {name}: tokenizer {spec} no longer exists (not checked)")
                continue
            try:
                found = _fingerprint_bytes(Path(spec).read_bytes())
            except OSError as e:
                problems.append(f"column {name}: tokenizer {spec} cannot be read ({e.strerror})")
                continue
            if found != meta["tokenizer_fingerprint"]:
                problems.append(
                    f"column {name}: tokenizer {spec} changed since the column was added "
                    f"(fingerprint {found}); add it again with --force"
                )
                continue
        if recount <= 0 or n == 0:
            continue
        try:
            tok = load_tokenizer(spec)
        except TokenizerError as e:
            problems.append(f"column {name}: cannot recount: {e}")
            continue
        if tok.fingerprint != meta["tokenizer_fingerprint"]:
            problems.append(
                f"column {name}: tokenizer {spec} changed since the column was added "
                f"(fingerprint {tok.fingerprint}); add it again with --force"
            )
            continue
        rows = np.unique(np.linspace(0, n - 1, min(recount, n)).astype(np.int64))
        try:
            fresh = count_rows(index, tok, rows)
        except Exception as e:
            problems.append(f"column {name}: cannot recount: {e}")
            continue
        bad = np.flatnonzero(fresh != col[rows])
        if bad.size:
            row = int(rows[bad[0]])
            problems.append(
                f"column {name} row {row}: index holds {int(col[row])}, tokenizer gives "
                f"{int(fresh[bad[0]])} ({bad.size} of {rows.size} recounted rows differ)"
            )
    return problems, notes


def describe(meta: Mapping[str, Any]) -> str:
    """One line about an added column's origin (for ``info``)."""
    return f"tokens of {meta['tokenizer']} ({meta['tokenizer_fingerprint']}, {meta['created']})"
