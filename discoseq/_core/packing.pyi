import numpy as np
import numpy.typing as npt

FEW_COPIES: int

def pack(
    rows: npt.NDArray[np.int64],
    seg_offsets: npt.NDArray[np.int64],
    duration: npt.NDArray[np.float64],
    num_frames: npt.NDArray[np.int64],
    cap_duration: npt.NDArray[np.float64],
    cap_cuts: npt.NDArray[np.int64],
    max_frames: int | None,
    quadratic_duration: float | None,
    sum_mode: bool,
    exclude_oversize: bool,
    tokens: npt.NDArray[np.int64] | None = ...,
    max_tokens: int | None = ...,
    audio_rate: float | None = ...,
    quadratic_tokens: float | None = ...,
    copies: npt.NDArray[np.uint8] | None = ...,
    id_lo: int = ...,
    num_ids: int = ...,
    layout: npt.NDArray[np.int64] | None = ...,
) -> tuple[
    int,
    npt.NDArray[np.int64],
    npt.NDArray[np.int32],
    npt.NDArray[np.float64],
    npt.NDArray[np.float64],
    npt.NDArray[np.int64],
    int,
]: ...
def sort_pools(
    rows: npt.NDArray[np.int64],
    seg_offsets: npt.NDArray[np.int64],
    duration: npt.NDArray[np.float64],
    pool: int,
) -> None: ...
