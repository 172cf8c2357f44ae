import numpy as np
import numpy.typing as npt

NUM_BINS: int

_U8 = npt.NDArray[np.uint8]
_I64 = npt.NDArray[np.int64]

def bin_shift(n: int, shuffled: bool) -> int: ...
def num_bins(n: int, shuffled: bool, shift: int) -> int: ...
def histogram(
    duration: npt.NDArray[np.float64],
    keep: _U8,
    excl: _U8,
    mode: int,
    key: int,
    shuffled: bool,
    tu: int,
    ti: int,
    shift: int,
) -> tuple[_I64, _I64, _I64, _I64]: ...
def bin_members(
    duration: npt.NDArray[np.float64],
    keep: _U8,
    excl: _U8,
    mode: int,
    key: int,
    shuffled: bool,
    tu: int,
    ti: int,
    shift: int,
    bin: int,
    count: int,
) -> tuple[_I64, npt.NDArray[np.uint64], _I64]: ...
def collect_rows(
    n: int,
    keep: _U8,
    excl: _U8,
    mode: int,
    key: int,
    shuffled: bool,
    tu: int,
    ti: int,
    lo_u: int,
    lo_i: int,
    hi_u: int,
    hi_i: int,
    base: int,
    out: _I64,
    seen: npt.NDArray[np.int32],
    rounds: npt.NDArray[np.int32],
) -> int: ...
def collect_mask(
    keep: _U8,
    excl: _U8,
    mode: int,
    key: int,
    shuffled: bool,
    tu: int,
    ti: int,
    lo_u: int,
    lo_i: int,
    hi_u: int,
    hi_i: int,
    mask: _U8,
) -> int: ...
def tail_split(
    duration: npt.NDArray[np.float64],
    keep: _U8,
    excl: _U8,
    mode: int,
    key: int,
    shuffled: bool,
    tu: int,
    ti: int,
    lo_u: int,
    lo_i: int,
    hi_u: int,
    hi_i: int,
    next_key: int,
    shift: int,
    out: _I64,
    mask: _U8,
) -> tuple[int, _I64, _I64, _I64, _I64]: ...
def fingerprint(duration: npt.NDArray[np.float64], keep: _U8) -> tuple[int, int, int, int]: ...
def count_rounds(
    run: _I64, seen: npt.NDArray[np.int32], rounds: npt.NDArray[np.int32]
) -> tuple[int, int]: ...
