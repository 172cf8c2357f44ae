import numpy as np
import numpy.typing as npt

MIN_THREAD_HASHES: int

def hash_spans(blob: npt.ArrayLike, offsets: npt.ArrayLike) -> npt.NDArray[np.uint64]: ...
def gather_spans(
    data: npt.NDArray[np.uint8], starts: npt.NDArray[np.int64], ends: npt.NDArray[np.int64]
) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.int64]]: ...
def sort_hashes(
    hashes: npt.NDArray[np.uint64],
    out: tuple[npt.NDArray[np.uint64], npt.NDArray[np.int64]] | None = None,
) -> tuple[npt.NDArray[np.uint64], npt.NDArray[np.int64]]: ...
def merge_sorted_runs(
    hashes: npt.NDArray[np.uint64],
    rows: npt.NDArray[np.int64],
    bounds: npt.NDArray[np.int64],
    threads: int = 1,
    out: tuple[npt.NDArray[np.uint64], npt.NDArray[np.int64]] | None = None,
) -> tuple[npt.NDArray[np.uint64], npt.NDArray[np.int64]]: ...

class IdLookup:
    def __init__(
        self,
        hashes: npt.NDArray[np.uint64],
        rows: npt.NDArray[np.int64],
        offsets: npt.NDArray[np.int64],
        blob: npt.NDArray[np.uint8],
    ) -> None: ...
    def find(self, key: bytes) -> int: ...
