from typing import overload

import numpy as np
import numpy.typing as npt

MAX_CAPACITY: int

@overload
def cost_units(
    cost: npt.NDArray[np.float64],
    length: float,
    integer: bool,
    units_per_second: float = ...,
    rows: None = ...,
) -> tuple[npt.NDArray[np.int64], int]: ...
@overload
def cost_units(
    cost: npt.NDArray[np.float64],
    length: float,
    integer: bool,
    units_per_second: float,
    rows: npt.NDArray[np.int64],
) -> tuple[npt.NDArray[np.int64], int, npt.NDArray[np.float64]]: ...
def best_fit_decreasing(
    seg_offsets: npt.NDArray[np.int64],
    units: npt.NDArray[np.int64],
    capacity: int,
    cost: npt.NDArray[np.float64] | None = ...,
    duration: npt.NDArray[np.float64] | None = ...,
    identity: npt.NDArray[np.int64] | None = ...,
    num_ids: int = ...,
) -> tuple[
    npt.NDArray[np.int64],
    npt.NDArray[np.int64],
    npt.NDArray[np.int64],
    npt.NDArray[np.float64],
    npt.NDArray[np.float64],
]: ...
def group_packs(
    rows: npt.NDArray[np.int64],
    pack_of: npt.NDArray[np.int64],
    order: npt.NDArray[np.int64],
    pack_size: npt.NDArray[np.int64],
    pack_cost: npt.NDArray[np.float64],
    pack_duration: npt.NDArray[np.float64],
) -> tuple[
    npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.float64], npt.NDArray[np.float64]
]: ...
def pack_batches(
    seg_packs: npt.NDArray[np.int64],
    pack_cost: npt.NDArray[np.float64],
    cap_duration: npt.NDArray[np.float64],
    cap_cuts: npt.NDArray[np.int64],
    sum_mode: bool,
    pack_tokens: npt.NDArray[np.int64] | None = ...,
    max_tokens: int | None = ...,
    pack_offsets: npt.NDArray[np.int64] | None = ...,
    member_ids: npt.NDArray[np.int64] | None = ...,
    num_ids: int = ...,
) -> tuple[
    npt.NDArray[np.int64],
    npt.NDArray[np.int32],
    npt.NDArray[np.float64],
    npt.NDArray[np.float64],
    npt.NDArray[np.int64],
]: ...
