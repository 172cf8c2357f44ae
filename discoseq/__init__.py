"""discoseq: deterministic, index-backed batch sampling for Lhotse speech corpora.

Data flow: Lhotse manifests -> ``discoseq-index build`` -> memory-mapped ``CutIndex`` ->
epoch plan (compiled core) -> batches of row ids -> lazily resolved ``lhotse.CutSet``.
"""

from discoseq.errors import IndexFormatError, ManifestError, StaleIndexError
from discoseq.index import CutIndex, build_index

__version__ = "0.1.0"

__all__ = [
    "CutIndex",
    "IndexFormatError",
    "ManifestError",
    "StaleIndexError",
    "__version__",
    "build_index",
]
