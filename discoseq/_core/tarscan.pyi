import numpy as np
import numpy.typing as npt

FULL: int
END: int
OTHER: int
READ_ERROR: int
NAME_BYTES: int
WINDOW: int

def scan_headers(
    fd: int,
    start: int,
    size: int,
    names: npt.NDArray[np.uint8],
    name_end: npt.NDArray[np.int64],
    data_offset: npt.NDArray[np.int64],
    data_size: npt.NDArray[np.int64],
) -> tuple[int, int, int]: ...
