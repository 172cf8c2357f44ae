import numpy as np
import numpy.typing as npt

MAX_CAPACITY: int

def cost_units(
    cost: npt.NDArray[np.float64],
    length: float,
    integer: bool,
    units_per_second: float = ...,
) -> tuple[npt.NDArray[np.int64], int]: ...

def best_fit_decreasing(
    seg_offsets: npt.NDArray[np.int64],
    units: npt.NDArray[np.int64],
    capacity: int,
    cost: npt.NDArray[np.float64] | None = ...,
    duration: npt.NDArray[np.float64] | None = ...,
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
    pack_rank: npt.NDArray[np.int64],
    pack_size: npt.NDArray[np.int64],
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]: ...
