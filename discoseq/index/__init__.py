"""The columnar cut index: on-disk format, builder, memory-mapped reader and verification."""

from discoseq.index.builder import build_index
from discoseq.index.reader import CutIndex
from discoseq.index.verify import VerifyReport, verify_index

__all__ = ["CutIndex", "VerifyReport", "build_index", "verify_index"]
