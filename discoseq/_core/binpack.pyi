import numpy as np
import numpy.typing as npt

MAX_CAPACITY: int

def best_fit_decreasing(
    seg_offsets: npt.NDArray[np.int64],
    units: npt.NDArray[np.int64],
    capacity: int,
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]: ...
def group_packs(
    rows: npt.NDArray[np.int64],
    pack_of: npt.NDArray[np.int64],
    pack_rank: npt.NDArray[np.int64],
    cost: npt.NDArray[np.float64],
    duration: npt.NDArray[np.float64],
) -> tuple[
    npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.float64], npt.NDArray[np.float64]
]: ...
