import numpy as np
import numpy.typing as npt

NUM_BINS: int

def bin_shift(n: int, shuffled: bool) -> int: ...
def histogram(
    duration: npt.NDArray[np.float64],
    member: npt.NDArray[np.uint8],
    key: int,
    shuffled: bool,
    shift: int,
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]: ...
def bin_members(
    duration: npt.NDArray[np.float64],
    member: npt.NDArray[np.uint8],
    key: int,
    shuffled: bool,
    shift: int,
    bin: int,
    count: int,
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.uint64], npt.NDArray[np.int64]]: ...
def collect_rows(
    member: npt.NDArray[np.uint8],
    n: int,
    key: int,
    shuffled: bool,
    lo_u: int,
    lo_i: int,
    hi_u: int,
    hi_i: int,
    base: int,
    out: npt.NDArray[np.int64],
    seen: npt.NDArray[np.int32],
    rounds: npt.NDArray[np.int32],
) -> int: ...
def collect_mask(
    member: npt.NDArray[np.uint8],
    key: int,
    shuffled: bool,
    lo_u: int,
    lo_i: int,
    hi_u: int,
    hi_i: int,
    mask: npt.NDArray[np.uint8],
) -> int: ...
