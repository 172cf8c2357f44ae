import numpy as np
import numpy.typing as npt

def source_totals(
    rows: npt.NDArray[np.int64],
    ends: npt.NDArray[np.int64],
    duration: npt.NDArray[np.float64],
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]: ...
