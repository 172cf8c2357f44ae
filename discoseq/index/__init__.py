"""The columnar cut index: on-disk format, builder, memory-mapped reader, verification, and one
way to open any source (an index, a manifest, a CutSet) as an index."""

from discoseq.index.builder import build_index
from discoseq.index.columns import add_column
from discoseq.index.multi import MultiIndex, open_index
from discoseq.index.opener import OpenedIndex, open_source
from discoseq.index.reader import CutIndex
from discoseq.index.verify import VerifyReport, verify_index

__all__ = [
    "CutIndex",
    "MultiIndex",
    "OpenedIndex",
    "VerifyReport",
    "add_column",
    "build_index",
    "open_index",
    "open_source",
    "verify_index",
]
