"""discoseq: deterministic, index-backed batch sampling for Lhotse speech corpora.

Data flow: Lhotse manifests -> ``discoseq-index build`` -> memory-mapped ``CutIndex`` ->
epoch plan (compiled core) -> batches of row ids -> lazily resolved ``lhotse.CutSet``.
"""

import importlib
from typing import TYPE_CHECKING, Any

from discoseq._version import __version__
from discoseq.config import SamplerConfig
from discoseq.errors import IndexFormatError, IndexWriteError, ManifestError, StaleIndexError
from discoseq.index import CutIndex, MultiIndex, build_index, open_index
from discoseq.strategy import SamplingStrategy

if TYPE_CHECKING:
    from discoseq.loader import create_dataloader
    from discoseq.sampler import DiscoSeqSampler, EpochView

# The torch-facing names load on first use, so ``import discoseq`` (and the CLI, the index and
# the engine) stays free of torch.
_LAZY = {
    "DiscoSeqSampler": "discoseq.sampler",
    "EpochView": "discoseq.sampler",
    "create_dataloader": "discoseq.loader",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'discoseq' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


__all__ = [
    "CutIndex",
    "DiscoSeqSampler",
    "EpochView",
    "IndexFormatError",
    "IndexWriteError",
    "ManifestError",
    "MultiIndex",
    "SamplerConfig",
    "SamplingStrategy",
    "StaleIndexError",
    "__version__",
    "build_index",
    "create_dataloader",
    "open_index",
]
