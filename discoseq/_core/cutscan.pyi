"""Type stub for the compiled ``discoseq._core.cutscan`` module (see cutscan.pyx)."""

from typing import Any, Final

import numpy as np
import numpy.typing as npt

MONO_CUT: Final[int]
MIXED_CUT: Final[int]
PADDING_CUT: Final[int]
MULTI_CUT: Final[int]
UNKNOWN_CUT: Final[int]
CUT_TYPE_NAMES: Final[dict[int, str]]
#: level -> {"unknown": "slow" | "ignored", "keys": {key: "required" | "optional" | "slow"},
#: "read": tuple of keys}; see the "Schema" section of cutscan.pyx.
SCHEMA: Final[dict[str, dict[str, Any]]]

def scan_cut_lines(
    buf: bytes | bytearray | memoryview | npt.NDArray[np.uint8],
) -> dict[str, np.ndarray]:
    """Scan complete ``\\n``-separated Lhotse cut JSON lines without the GIL.

    One row per non-blank line, keys: ``line_no`` (int64), ``start``/``end`` (int64 byte span,
    without ``\\n`` / trailing ``\\r``), ``status`` (uint8: 0 fast path exact, 1 use the slow
    Python path), ``cut_type`` (uint8: 0 MonoCut, 1 MixedCut, 2 PaddingCut, 3 MultiCut,
    255 unknown), ``duration`` (float64), ``num_frames``/``num_samples``/``num_features``/
    ``num_tokens`` (int64, -1 = None), ``num_supervisions`` (int32), ``id_start``/``id_end``
    (int64 byte span of the id string content).
    """
    ...

def count_records(buf: bytes | bytearray | memoryview | npt.NDArray[np.uint8]) -> int:
    """How many rows :func:`scan_cut_lines` returns for ``buf``: its non-blank lines (blank:
    only ASCII whitespace), counted without the GIL."""
    ...
