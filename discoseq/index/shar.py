"""Lhotse Shar corpora: finding a Shar set's shards, indexing where each cut's field data lies
in the field files (tar headers only, no audio decoded), and attaching that data to a resolved
cut exactly as Lhotse's Shar reader (``LazySharIterator`` + ``TarIterator``) does.

A Shar set is ``cuts.NNNNNN.jsonl.gz`` shards plus, per field, one file per shard: a ``.tar``
of ``<cut_id>.<ext>`` data + ``<cut_id>.json`` metadata member pairs (``.nodata``/``.nometa``
for a cut without the field), or a ``.jsonl.gz`` of ``{"cut_id": ..., "<field>": value}``
lines. The cut shards become the index's sources (rows and columns as for any manifest); for
a tar field each row stores the byte ranges of its data and metadata members (so resolution
reads them with one ``pread``), and the lines of a ``.jsonl.gz`` field are copied into the
index (``shar_<field>.bin``), since a compressed file has no byte ranges to read.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import re
import tarfile
import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import orjson

from discoseq.errors import IndexFormatError, ManifestError, StaleIndexError
from discoseq.index.format import (
    HEADER_FILE,
    MISSING,
    SHAR_FIELD_NAME,
    ColumnWriter,
    load_column,
    open_column,
    shar_columns,
)
from discoseq.index.sources import Source, file_chunks, stat_matches

__all__ = [
    "MAX_OPEN_FILES",
    "SharFields",
    "SharSpec",
    "index_fields",
    "is_shar_dir",
    "shar_input",
    "stale_field_file",
]

#: Field files a process keeps open at once (least recently used closed first): a whole-epoch
#: plan reads across every shard, and a corpus can have more shards than a process has fds.
MAX_OPEN_FILES = 64

_CUT_SHARD = re.compile(r"cuts(?P<key>.*)\.jsonl(\.gz)?\Z")


@dataclass
class SharField:
    """One field of a Shar set: its name, ``"tar"`` or ``"jsonl"``, and one file per shard."""

    name: str
    kind: str
    paths: list[Path]


@dataclass
class SharSpec:
    """A Shar set: the cut shards (in order) and the fields' files, shard by shard.
    ``origins``: each cut shard as Lhotse's reader names it in ``cut.shard_origin`` (a ``Path``
    when ``origins_are_paths``, else the string given in the dict form)."""

    cut_paths: list[Path]
    fields: list[SharField]
    origins: list[str]
    origins_are_paths: bool


def _field_kind(path: Path, field: str) -> str:
    name = path.name.lower()
    if name.endswith(".tar"):
        return "tar"
    if name.endswith((".jsonl.gz", ".jsonl")):
        return "jsonl"
    if name.endswith((".tar.gz", ".tgz", ".tar.bz2", ".tar.xz")):
        raise ManifestError(
            f"field {field!r}: a compressed tar cannot be read by byte range; write the Shar "
            "set with plain .tar field files (Lhotse's default)",
            str(path),
        )
    raise ManifestError(
        f"not a Shar file: field {field!r} files must be .tar or .jsonl.gz", str(path)
    )


def _check_field_name(name: str, where: str) -> None:
    if not SHAR_FIELD_NAME.fullmatch(name):
        raise ManifestError(
            f"Shar field name {name!r} is not an identifier (letters, digits, '_'); discoseq "
            "stores each field as columns named after it",
            where,
        )


def shar_input(inputs: Any) -> SharSpec | None:
    """The Shar set ``inputs`` names (a Shar directory, alone or as a one-item list, or
    Lhotse's dict form ``{"cuts": [...], "<field>": [...]}``), or None for any other input."""
    if isinstance(inputs, Mapping):
        return _spec_from_dict(inputs)
    if isinstance(inputs, list | tuple):
        dirs = [i for i in inputs if isinstance(i, str | os.PathLike) and is_shar_dir(Path(i))]
        if not dirs:
            return None
        if len(inputs) > 1:
            raise ManifestError(
                "a Lhotse Shar directory must be the only input of a build (index other "
                "corpora separately and mix the indexes)",
                str(dirs[0]),
            )
        inputs = dirs[0]
    if isinstance(inputs, str | os.PathLike) and is_shar_dir(Path(inputs)):
        return _spec_from_dir(Path(inputs))
    return None


def is_shar_dir(path: Path) -> bool:
    """A directory with Shar cut shards (``cuts.*.jsonl.gz``) and no index header."""
    if not path.is_dir() or (path / HEADER_FILE).exists():
        return False
    return any(_CUT_SHARD.match(p.name) for p in path.glob("cuts.*"))


def _spec_from_dir(directory: Path) -> SharSpec:
    """Group a directory's files by field (the name up to the first dot, as Lhotse does) and
    match every field's shards to the cut shards by their shard number."""
    groups: dict[str, dict[str, Path]] = {}
    for path in sorted(directory.iterdir()):
        if path.name.startswith(".") or not path.is_file():
            continue
        field, _, rest = path.name.partition(".")
        if field == "cuts":
            match = _CUT_SHARD.match(path.name)
            if match is None:
                raise ManifestError(
                    "not a Shar cut shard (expected cuts.NNNNNN.jsonl.gz)", str(path)
                )
            key = match["key"]
        else:
            _check_field_name(field, str(path))
            kind = _field_kind(path, field)
            key = "." + rest[: -len(".tar")] if kind == "tar" else "." + rest.split(".jsonl")[0]
            key = "" if key == "." else key
        groups.setdefault(field, {})[key] = path
    cuts = groups.pop("cuts", None)
    if not cuts:
        raise ManifestError(
            "not a Lhotse Shar directory (no cuts.NNNNNN.jsonl.gz shards) and not an index "
            f"(no {HEADER_FILE})",
            str(directory),
        )
    keys = sorted(cuts)
    fields = []
    for name in sorted(groups):
        shards = groups[name]
        kinds = {_field_kind(p, name) for p in shards.values()}
        if len(kinds) > 1:
            raise ManifestError(f"field {name!r} mixes .tar and .jsonl.gz shards", str(directory))
        kind = kinds.pop()
        for key in keys:
            if key not in shards:
                ext = ".tar" if kind == "tar" else ".jsonl.gz"
                raise ManifestError(
                    f"cut shard {cuts[key].name} has no {name!r} shard ({name}{key}{ext} is "
                    f"missing; field {name!r} has {len(shards)} shards for {len(keys)} cut shards)",
                    str(directory),
                )
        extra = sorted(set(shards) - set(keys))
        if extra:
            raise ManifestError(
                f"{shards[extra[0]].name} has no cut shard (cuts{extra[0]}.jsonl.gz is missing; "
                f"field {name!r} has {len(shards)} shards for {len(keys)} cut shards)",
                str(directory),
            )
        fields.append(SharField(name, kind, [shards[k] for k in keys]))
    paths = [cuts[k] for k in keys]
    return SharSpec(paths, fields, [str(p) for p in paths], True)


def _spec_from_dict(inputs: Mapping[str, Any]) -> SharSpec:
    """Lhotse's dict form: shards are matched by position, as ``LazySharIterator`` does."""

    def paths_of(name: str, value: Any) -> list[Path]:
        if isinstance(value, str | os.PathLike) or not isinstance(value, Sequence):
            raise ManifestError(f"Shar field {name!r}: expected a list of shard paths")
        out = []
        for item in value:
            if not isinstance(item, str | os.PathLike) or str(item).startswith("pipe:"):
                raise ManifestError(
                    f"Shar field {name!r}: {item!r} is not a local file path (pipes and URLs "
                    "cannot be read by byte range)"
                )
            path = Path(item)
            if not path.is_file():
                raise ManifestError(f"Shar field {name!r}: no such file", str(path))
            out.append(path)
        return out

    if "cuts" not in inputs:
        raise ManifestError("a Shar dict needs the key 'cuts' (the cut shards)")
    cut_paths = paths_of("cuts", inputs["cuts"])
    if not cut_paths:
        raise ManifestError("a Shar dict needs at least one cut shard under 'cuts'")
    fields = []
    for name, value in inputs.items():
        if name == "cuts":
            continue
        if not isinstance(name, str):
            raise ManifestError(f"Shar field name {name!r} is not a string")
        _check_field_name(name, "<Shar dict>")
        paths = paths_of(name, value)
        if len(paths) != len(cut_paths):
            raise ManifestError(
                f"mismatched shard counts: field {name!r} has {len(paths)} shards, 'cuts' has "
                f"{len(cut_paths)}"
            )
        kinds = {_field_kind(p, name) for p in paths}
        if len(kinds) > 1:
            raise ManifestError(f"field {name!r} mixes .tar and .jsonl.gz shards")
        fields.append(SharField(name, kinds.pop(), paths))
    given = list(inputs["cuts"])
    as_paths = all(isinstance(p, os.PathLike) for p in given)
    return SharSpec(cut_paths, fields, [str(p) for p in given], as_paths)


# -- build ---------------------------------------------------------------------------------------
@dataclass
class _TarItems:
    """The (data, metadata) member pairs of one tar: names and byte ranges."""

    names: list[str]
    data_offset: np.ndarray
    data_size: np.ndarray
    meta_offset: np.ndarray
    meta_size: np.ndarray
    suffix: str
    fingerprint: str


_SCAN_MEMBERS = 1 << 16  # members per call of the compiled header scanner


def _ustar_members(fd: int, size: int) -> tuple[list[str], np.ndarray] | None:
    """(names, (data offset, data size) per member) of a plain tar, from its 512-byte headers
    (:func:`discoseq._core.tarscan.scan_headers`, one ``pread`` each); None when a header is
    anything but a regular file with a plain name and size (a pax or GNU extension, a bad
    checksum, ...): :mod:`tarfile` then reads it, and names what is wrong. No end-of-archive
    blocks is accepted, as ``tarfile`` does; a cut-off member is named by the caller."""
    from discoseq._core import tarscan

    names_buf = np.empty(_SCAN_MEMBERS * tarscan.NAME_BYTES, np.uint8)
    name_end = np.empty(_SCAN_MEMBERS, np.int64)
    offsets = np.empty(_SCAN_MEMBERS, np.int64)
    sizes = np.empty(_SCAN_MEMBERS, np.int64)
    names: list[str] = []
    tables = []
    start = 0
    while True:
        k, start, status = tarscan.scan_headers(
            fd, start, size, names_buf, name_end, offsets, sizes
        )
        if status in (tarscan.OTHER, tarscan.READ_ERROR):
            return None
        blob = names_buf[: name_end[k - 1] if k else 0].tobytes()
        try:
            text = blob.decode("utf-8")
        except UnicodeDecodeError:
            return None
        bounds = [0, *name_end[:k].tolist()]
        if len(text) == len(blob):  # ASCII: byte offsets are character offsets
            names += [text[a:b] for a, b in itertools.pairwise(bounds)]
        else:
            names += [blob[a:b].decode() for a, b in itertools.pairwise(bounds)]
        tables.append(np.stack([offsets[:k], sizes[:k]], axis=1))
        if status == tarscan.END:
            return names, np.concatenate(tables)


def _tarfile_members(path: Path, field: str) -> tuple[list[str], np.ndarray]:
    """The same with :mod:`tarfile` (any format it reads), headers only."""
    members: list[tuple[str, int, int]] = []
    with open(path, "rb") as f:
        try:
            for m in tarfile.open(fileobj=f, mode="r:"):
                if not m.isfile():
                    raise ManifestError(
                        f"field {field!r}: member {m.name!r} is not a regular file", str(path)
                    )
                members.append((m.name, m.offset_data, m.size))
                if m.offset_data + m.size > os.fstat(f.fileno()).st_size:
                    break  # truncated: named below
        except tarfile.TarError as e:
            after = f" after member {members[-1][0]!r}" if members else ""
            raise ManifestError(
                f"field {field!r}: not a readable plain tar{after} ({e}); a truncated or "
                "compressed file?",
                str(path),
            ) from e
    table = np.array([m[1:] for m in members], dtype=np.int64).reshape(-1, 2)
    return [m[0] for m in members], table


def _split_name(name: str) -> tuple[str, str]:
    """(the name without its extension, the extension) as ``pathlib`` splits a member's name:
    Lhotse's reader takes ``str(path.parent / path.stem)`` as the member's cut id."""
    if "/" in name:
        p = PurePosixPath(name)
        return str(p.parent / p.stem), p.suffix
    dot = name.rfind(".")
    return (name[:dot], name[dot:]) if 0 < dot < len(name) - 1 else (name, "")


def _scan_tar(path: Path, field: str) -> _TarItems:
    """Read a tar's member headers (never its data), pairing each data member with the
    metadata member Lhotse writes after it."""
    fd = os.open(path, os.O_RDONLY)
    try:
        size = os.fstat(fd).st_size
        fast = _ustar_members(fd, size)
    finally:
        os.close(fd)
    member_names, table = fast if fast is not None else _tarfile_members(path, field)
    cut_off = np.flatnonzero(table.sum(axis=1) > size)
    if cut_off.size:
        k = int(cut_off[0])
        raise ManifestError(
            f"field {field!r}: member {member_names[k]!r} is truncated (its data ends at byte "
            f"{int(table[k].sum())}, the file has {size} bytes)",
            str(path),
        )
    hasher = hashlib.blake2b(digest_size=16)  # the member table: names, offsets, sizes
    hasher.update("\0".join(member_names).encode())
    hasher.update(table.astype("<i8").tobytes())
    if len(member_names) % 2:
        raise ManifestError(
            f"field {field!r}: {len(member_names)} members, expected data + metadata pairs "
            f"(member {member_names[-1]!r} has no partner)",
            str(path),
        )
    members = [
        (name, int(o), int(ln)) for name, (o, ln) in zip(member_names, table.tolist(), strict=True)
    ]
    n = len(members) // 2
    names = []
    arrays = [np.full(n, MISSING, np.int64) for _ in range(4)]
    suffixes = set()
    for k in range(n):
        (data, d_off, d_len), (meta, m_off, m_len) = members[2 * k], members[2 * k + 1]
        stem, suffix = _split_name(data)
        meta_stem, meta_suffix = _split_name(meta)
        placeholder = suffix == ".nodata"
        if meta_suffix != (".nometa" if placeholder else ".json") or meta_stem != stem:
            raise ManifestError(
                f"field {field!r}: members {data!r} and {meta!r} (pair {k + 1}) are "
                "not a data member and its .json metadata (or .nodata + .nometa)",
                str(path),
            )
        names.append(stem)  # the cut id, as Lhotse's reader derives it
        if placeholder:
            continue
        suffixes.add(suffix)
        arrays[0][k], arrays[1][k] = d_off, d_len
        arrays[2][k], arrays[3][k] = m_off, m_len
    if len(suffixes) > 1:
        raise ManifestError(
            f"field {field!r}: data members with different extensions {sorted(suffixes)}",
            str(path),
        )
    fingerprint = f"tar-members-blake2b-128:{hasher.hexdigest()}"
    return _TarItems(
        names=names,
        data_offset=arrays[0],
        data_size=arrays[1],
        meta_offset=arrays[2],
        meta_size=arrays[3],
        suffix=suffixes.pop() if suffixes else "",
        fingerprint=fingerprint,
    )


def _jsonl_lines(path: Path) -> tuple[list[bytes], str]:
    """The lines of a ``.jsonl(.gz)`` field file, and its fingerprint (of the file's bytes)."""
    fmt = "jsonl.gz" if path.name.lower().endswith(".gz") else "jsonl"
    source = Source(path=str(path), format=fmt, records="stored")
    data = b"".join(bytes(chunk.data) for chunk in file_chunks(source))
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    assert source.fingerprint is not None
    return lines, source.fingerprint


def _describe(path: Path) -> dict[str, Any]:
    st = path.stat()
    return {"path": str(path.resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def index_fields(
    spec: SharSpec, tmp: Path, sources: Sequence[Any], skipped: int, progress: bool = False
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Write the field columns of the index being built in ``tmp`` (whose rows, ids and source
    lines are written) and return (their column entries, the header's ``shar`` entry).

    Row r of cut shard s is line ``source_line[r]`` of it, so it is item ``source_line[r] - 1``
    of each field file of shard s, whose name must be the cut's id. ``skipped`` (records the
    build skipped) lets a field file hold more items than the shard has rows. ``progress``: a
    progress bar over the field files."""
    source_id = load_column(tmp / "source_id.npy")
    source_line = load_column(tmp / "source_line.npy")
    offsets = load_column(tmp / "id_offsets.npy")
    blob = load_column(tmp / "id_blob.npy")
    n = int(source_id.shape[0])
    starts = np.searchsorted(source_id, np.arange(len(sources) + 1))  # rows are shard by shard
    columns: dict[str, Any] = {}
    entries = []
    bar = None
    if progress:
        from tqdm import tqdm

        total = sum(len(f.paths) for f in spec.fields)
        bar = tqdm(total=total, unit=" files", desc="Shar field headers")
    for field in spec.fields:
        names = shar_columns(field.name, field.kind)
        keys = list(names)
        cols = {name: np.full(n, MISSING, np.int64) for name in names}
        files = []
        blob_writer = None
        blob_size = 0
        if field.kind == "jsonl":
            blob_file = f"shar_{field.name}.bin"
            blob_writer = open(tmp / blob_file, "wb")
        try:
            for s, path in enumerate(field.paths):
                lo, hi = int(starts[s]), int(starts[s + 1])
                lines = np.asarray(source_line[lo:hi], dtype=np.int64)
                entry = _describe(path)
                if field.kind == "tar":
                    items = _scan_tar(path, field.name)
                    item_names = items.names
                    entry.update(fingerprint=items.fingerprint, suffix=items.suffix)
                else:
                    raw, fingerprint = _jsonl_lines(path)
                    item_names = [
                        _jsonl_cut_id(line, path, field.name, i) for i, line in enumerate(raw)
                    ]
                    entry.update(fingerprint=fingerprint)
                _check_items(
                    item_names, lines, lo, (offsets, blob), path, field.name, sources[s], skipped
                )
                k = lines - 1
                if field.kind == "tar":
                    for name, values in zip(
                        keys,
                        (items.data_offset, items.data_size, items.meta_offset, items.meta_size),
                        strict=True,
                    ):
                        cols[name][lo:hi] = values[k]
                else:
                    assert blob_writer is not None
                    taken = [raw[i] for i in k.tolist()]
                    sizes = np.fromiter((len(t) for t in taken), np.int64, len(taken))
                    cols[keys[0]][lo:hi] = blob_size + np.cumsum(sizes) - sizes
                    cols[keys[1]][lo:hi] = sizes
                    blob_writer.write(b"".join(taken))
                    blob_size += int(sizes.sum())
                files.append(entry)
                if bar is not None:
                    bar.update(1)
        finally:
            if blob_writer is not None:
                blob_writer.close()
        for name, values in cols.items():
            writer = ColumnWriter(tmp / f"{name}.npy", names[name])
            writer.append(values)
            writer.close()
            columns[name] = {"file": f"{name}.npy", "dtype": names[name], "length": n}
        entry_out: dict[str, Any] = {"name": field.name, "kind": field.kind, "files": files}
        if field.kind == "jsonl":
            entry_out.update(file=f"shar_{field.name}.bin", size=blob_size)
        entries.append(entry_out)
    if bar is not None:
        bar.close()
    origins = {"origins": spec.origins, "origins_are_paths": spec.origins_are_paths}
    return columns, {"fields": entries, **origins}


def _jsonl_cut_id(line: bytes, path: Path, field: str, i: int) -> str:
    try:
        item = orjson.loads(line)
    except orjson.JSONDecodeError as e:
        raise ManifestError(f"field {field!r}: malformed JSON ({e})", str(path), i + 1) from e
    if not isinstance(item, dict) or not isinstance(item.get("cut_id"), str):
        raise ManifestError(
            f"field {field!r}: expected an object with a string 'cut_id'", str(path), i + 1
        )
    return str(item["cut_id"])


def _check_items(
    names: list[str],
    lines: np.ndarray,
    first_row: int,
    ids: tuple[np.ndarray, np.ndarray],
    path: Path,
    field: str,
    source: Any,
    skipped: int,
) -> None:
    """Each row's item (by its line in the cut shard) exists and names the row's cut (the
    rows' ids compared at once with the items' names; one by one to name a difference)."""
    shard = Path(source.path).name
    rows = len(lines)
    offsets, blob = ids

    def cut_id(row: int) -> str:
        return bytes(blob[offsets[row] : offsets[row + 1]]).decode()

    if rows and len(names) < int(lines.max()):
        j = int(np.argmax(lines > len(names)))
        raise ManifestError(
            f"field {field!r}: {len(names)} items for the {rows} cuts of {shard}; the item "
            f"of cut {cut_id(first_row + j)!r} (line {int(lines[j])}) and after are missing",
            str(path),
        )
    if skipped == 0 and len(names) > rows:
        raise ManifestError(
            f"field {field!r}: {len(names)} items for the {rows} cuts of {shard}; "
            f"item {rows + 1} ({names[rows]!r}) has no cut",
            str(path),
        )
    encoded = [names[line - 1].encode() for line in lines.tolist()]
    lengths = np.fromiter(map(len, encoded), np.int64, rows)
    span = offsets[first_row : first_row + rows + 1]
    if np.array_equal(lengths, np.diff(span)) and b"".join(encoded) == bytes(
        blob[span[0] : span[-1]]
    ):
        return
    for j, line in enumerate(lines.tolist()):
        expected = cut_id(first_row + j)
        if names[line - 1] != expected:
            raise ManifestError(
                f"field {field!r}: item {line} is {names[line - 1]!r}, but line {line} of "
                f"{shard} is cut {expected!r}; the field's items must follow the cut shard's "
                "order",
                str(path),
            )


# -- reading -------------------------------------------------------------------------------------
def stale_field_file(shar: Mapping[str, Any]) -> str | None:
    """What changed among the field files since the build (size, mtime, gone), or None."""
    for field in shar["fields"]:
        for entry in field["files"]:
            problem = stat_matches(entry)
            if problem is not None:
                return f"Shar field {field['name']!r}: {problem}"
    return None


def open_columns(directory: Path, shar: Mapping[str, Any], n: int) -> dict[str, np.ndarray]:
    """Map the field columns of an index's ``shar`` header entry."""
    out = {}
    for field in shar["fields"]:
        for name, dtype in shar_columns(field["name"], field["kind"]).items():
            out[name] = open_column(directory, name, n, f"{name}.npy", dtype)
    return out


class SharFields:
    """Attaches a row's Shar field data to its deserialised cut, reading each field with one
    ``pread``; field files are opened at most :data:`MAX_OPEN_FILES` at a time per process."""

    def __init__(
        self,
        directory: Path,
        shar: Mapping[str, Any],
        arrays: Mapping[str, np.ndarray],
    ) -> None:
        self.directory = directory
        self.fields = list(shar["fields"])
        self.columns = [
            [arrays[name] for name in shar_columns(f["name"], f["kind"])] for f in self.fields
        ]
        self.source_id = arrays["source_id"]
        as_path = shar["origins_are_paths"]
        self.origins = [Path(o) if as_path else o for o in shar["origins"]]
        self._fds: OrderedDict[tuple[int, int], int] = OrderedDict()
        self._pid = os.getpid()
        self._lock = threading.Lock()

    def _path(self, f: int, shard: int) -> str:
        field = self.fields[f]
        if field["kind"] == "jsonl":
            return str(self.directory / field["file"])
        return str(field["files"][shard]["path"])

    def _read(self, f: int, shard: int, offset: int, size: int) -> bytes:
        key = (f, shard if self.fields[f]["kind"] == "tar" else -1)
        if os.getpid() != self._pid:  # forked (a DataLoader worker): never share descriptors
            self._fds = OrderedDict()
            self._pid = os.getpid()
            self._lock = threading.Lock()
        path = self._path(f, shard)
        with self._lock:
            fd = self._fds.get(key)
            if fd is None:
                try:
                    fd = os.open(path, os.O_RDONLY)
                except OSError as e:
                    raise StaleIndexError(
                        f"index {self.directory}: cannot read Shar field "
                        f"{self.fields[f]['name']!r} from {path} ({e.strerror}); rebuild the index",
                        path=self.directory,
                    ) from e
                self._fds[key] = fd
                if len(self._fds) > MAX_OPEN_FILES:
                    os.close(self._fds.popitem(last=False)[1])
            else:
                self._fds.move_to_end(key)
            data = os.pread(fd, size, offset)
        if len(data) != size:
            raise StaleIndexError(
                f"index {self.directory}: Shar field {self.fields[f]['name']!r}: {path} ends "
                f"before byte {offset + size} (changed after the build); rebuild the index",
                path=self.directory,
            )
        return data

    def _member(self, f: int, row: int) -> bytes | None:
        """The bytes of field ``f`` of ``row`` (a tar field: its data and metadata members,
        one ``pread``; a jsonl field: its line), or None when the cut has no member."""
        field, cols = self.fields[f], self.columns[f]
        offset = int(cols[0][row])
        if offset < 0:
            return None
        shard = int(self.source_id[row])
        if field["kind"] != "tar":
            return self._read(f, shard, offset, int(cols[1][row]))
        size, meta_offset, meta_size = (int(c[row]) for c in cols[1:])
        if not offset <= offset + size <= meta_offset <= meta_offset + meta_size:
            raise IndexFormatError(
                f"{self.directory}: row {row}: Shar field {field['name']!r} member "
                "ranges are inconsistent; the index is corrupted, rebuild it"
            )
        return self._read(f, shard, offset, meta_offset + meta_size - offset)

    def attach(self, rows: Sequence[int] | np.ndarray, cuts: Sequence[Any]) -> None:
        """Set the fields of each cut (the cut of the row at the same place) as
        ``LazySharIterator`` does: the field's manifest from its ``.json`` member, filled with
        the data member's bytes by Lhotse's ``fill_shar_placeholder`` (a jsonl field: the
        line's value); a cut without the field keeps what its record holds. ``shard_origin``
        is the cut shard's path. The members are read sorted by file and offset (a forward
        pass over each file), one ``pread`` each."""
        from lhotse.serialization import decode_json_line, deserialize_item
        from lhotse.shar.utils import fill_shar_placeholder

        rows_a = np.asarray(rows, dtype=np.int64)
        shards = np.asarray(self.source_id[rows_a], dtype=np.int64)
        data: list[list[bytes | None]] = []
        for f, cols in enumerate(self.columns):
            got: list[bytes | None] = [None] * rows_a.shape[0]
            for i in np.lexsort((np.asarray(cols[0][rows_a]), shards)).tolist():
                got[i] = self._member(f, int(rows_a[i]))
            data.append(got)
        for i, (row, cut) in enumerate(zip(rows_a.tolist(), cuts, strict=True)):
            shard, cut_id = int(shards[i]), cut.id
            for f, field in enumerate(self.fields):
                buf = data[f][i]
                if buf is None:
                    continue
                if field["kind"] == "tar":
                    start = int(self.columns[f][2][row]) - int(self.columns[f][0][row])
                    manifest = deserialize_item(decode_json_line(buf[start:].decode("utf-8")))
                    suffix = field["files"][shard]["suffix"]
                    size = int(self.columns[f][1][row])
                    fill_shar_placeholder(
                        manifest=manifest, data=buf[:size], tarpath=Path(cut_id + suffix)
                    )
                else:
                    item = orjson.loads(buf)
                    if item.get("cut_id") != cut_id:
                        raise StaleIndexError(
                            f"index {self.directory}: row {row}: Shar field {field['name']!r} "
                            f"line is for cut {item.get('cut_id')!r}, not {cut_id!r}; rebuild "
                            "the index",
                            path=self.directory,
                        )
                    if field["name"] not in item:
                        continue  # Lhotse's placeholder line: no value for this cut
                    manifest = item[field["name"]]
                setattr(cut, field["name"], manifest)
            cut.shard_origin = self.origins[shard]

    def close(self) -> None:
        if os.getpid() == self._pid:
            for fd in self._fds.values():
                os.close(fd)
        self._fds = OrderedDict()


def verify_fields(index: Any) -> list[str]:
    """Recheck a Shar index's field files: each tar's member table (read again from its
    headers) and each jsonl file's bytes against their fingerprints, and every row's member
    ranges against the tar's; the copied jsonl lines' ranges inside ``shar_<field>.bin``, and
    each copied line against the field file's."""
    problems: list[str] = []
    src = np.asarray(index.column("source_id"))
    line = np.asarray(index.column("source_line"), dtype=np.int64)
    for field in index.header.raw["shar"]["fields"]:
        name, kind = field["name"], field["kind"]
        cols = [np.asarray(index.column(c)) for c in shar_columns(name, kind)]
        copy = b""
        if kind == "jsonl" and (index.path / field["file"]).is_file():
            copy = (index.path / field["file"]).read_bytes()
        for s, entry in enumerate(field["files"]):
            path = Path(entry["path"])
            try:
                if kind == "jsonl":
                    raw, fingerprint = _jsonl_lines(path)
                else:
                    items = _scan_tar(path, name)
                    fingerprint = items.fingerprint
            except (OSError, ManifestError) as e:
                problems.append(f"Shar field {name!r}: {path} cannot be read ({e})")
                continue
            if fingerprint != entry["fingerprint"]:
                problems.append(f"Shar field {name!r}: {path} content changed ({fingerprint})")
                continue
            if kind == "jsonl":
                problems.extend(_check_copied_lines(field, copy, cols, src == s, line, raw, path))
                continue
            rows = np.flatnonzero(src == s)
            k = line[rows] - 1
            if rows.size and int(k.max()) >= len(items.names):
                problems.append(f"Shar field {name!r}: rows of shard {s} point past {path}")
                continue
            found = (items.data_offset, items.data_size, items.meta_offset, items.meta_size)
            for column, values, held in zip(shar_columns(name, kind), found, cols, strict=True):
                bad = np.flatnonzero(values[k] != held[rows])
                if bad.size:
                    problems.append(
                        f"column {column} row {int(rows[bad[0]])}: index holds "
                        f"{int(held[rows[bad[0]]])}, {path} gives {int(values[k[bad[0]]])}"
                    )
        if kind == "jsonl":
            blob = index.path / field["file"]
            size = blob.stat().st_size if blob.is_file() else -1
            off, length = cols
            has = off >= 0
            if size != field["size"] or bool(
                ((off[has] + length[has]) > size).any() or (length[has] < 0).any()
            ):
                problems.append(f"Shar field {name!r}: line ranges point outside {blob}")
    return problems


def _check_copied_lines(
    field: Mapping[str, Any],
    copy: bytes,
    cols: list[np.ndarray],
    of_shard: np.ndarray,
    line: np.ndarray,
    raw: list[bytes],
    path: Path,
) -> list[str]:
    """The rows of one shard whose line copied into ``shar_<field>.bin`` is not the field
    file's line (the first named; ranges outside the copy are reported by the caller)."""
    off, length = cols
    for row in np.flatnonzero(of_shard & (off >= 0)).tolist():
        k = int(line[row]) - 1
        start, size = int(off[row]), int(length[row])
        if k >= len(raw) or copy[start : start + size] != raw[k]:
            return [
                f"Shar field {field['name']!r}: {field['file']} row {row}: the copied line is "
                f"not line {k + 1} of {path}"
            ]
    return []
