import numpy as np
import numpy.typing as npt

NUM_BINS: int
CODE_SHIFT: int

_U8 = npt.NDArray[np.uint8]
_I64 = npt.NDArray[np.int64]
_F64 = npt.NDArray[np.float64]

def bin_shift(n: int, shuffled: bool) -> int: ...
def num_bins(n: int, shuffled: bool, shift: int) -> int: ...
def key_codes(key: int, codes: _U8) -> None: ...
def histogram(
    duration: _F64,
    keep: _U8,
    excl: _U8,
    mode: int,
    key: int,
    shuffled: bool,
    tu: int,
    ti: int,
    codes: _U8,
    shift: int,
) -> tuple[_I64, _I64, _I64, _I64]: ...
def bin_members(
    duration: _F64,
    keep: _U8,
    excl: _U8,
    mode: int,
    key: int,
    shuffled: bool,
    tu: int,
    ti: int,
    codes: _U8,
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
    codes: _U8,
    lo_u: int,
    lo_i: int,
    hi_u: int,
    hi_i: int,
    base: int,
    out: _I64,
) -> int: ...
def key_histogram(duration: _F64, keep: _U8, key: int, codes: _U8) -> tuple[_I64, _I64]: ...
def rows_histogram(
    duration: _F64, rows: _I64, shuffled: bool, codes: _U8, shift: int, mask: _U8
) -> tuple[_I64, _I64]: ...
def fingerprint(duration: _F64, keep: _U8) -> int: ...
def column_totals(duration: _F64, keep: _U8) -> tuple[int, int, int, float, float, int]: ...
def kept_rows(keep: _U8, n: int, base: int, out: _I64) -> None: ...

EMIT_PIECES: int

def collect_union(
    n: int, keep: _U8, pieces: list[tuple[object, ...]], base: int, out: _I64
) -> int: ...
def emit_runs(
    n: int,
    keep: _U8,
    pieces: list[tuple[object, ...]],
    base: int,
    out: _I64,
    again: _U8,
) -> list[int]: ...
def cross_pass(
    duration: _F64,
    keep: _U8,
    key: int,
    codes: _U8,
    excl: _U8,
    mode: int,
    tail_key: int,
    tu: int,
    ti: int,
    tail_codes: _U8,
    lo_u: int,
    lo_i: int,
    hi_u: int,
    hi_i: int,
    rows: _I64,
    mask: _U8,
) -> tuple[_I64, _I64, _I64, _I64]: ...
