from collections.abc import Callable

import numpy as np
import numpy.typing as npt

def order_batches(
    seg_batch_offsets: npt.NDArray[np.int64],
    world_size: int,
    tail_key: int,
    order_key: int,
    shuffle: bool,
    drop_last: bool,
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.int64]]: ...
def gather_batches(
    rows: npt.NDArray[np.int64],
    batch_offsets: npt.NDArray[np.int64],
    order: npt.NDArray[np.int64],
    alloc: Callable[[int], npt.NDArray[np.int64]] | None = ...,
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]: ...
