import numpy as np
import numpy.typing as npt

KEY_KINDS: dict[str, int]

def estimate_edges(
    rows: npt.NDArray[np.int64] | None,
    kind: int,
    duration: npt.NDArray[np.float64],
    num_frames: npt.NDArray[np.int64],
    num_features: npt.NDArray[np.int64],
    num_tokens: npt.NDArray[np.int64],
    num_buckets: int,
    lo: float = ...,
    hi: float = ...,
    sizes: npt.NDArray[np.int64] | None = ...,
) -> npt.NDArray[np.float64]: ...
def group_by_bucket(
    rows: npt.NDArray[np.int64] | None,
    kind: int,
    duration: npt.NDArray[np.float64],
    num_frames: npt.NDArray[np.int64],
    num_features: npt.NDArray[np.int64],
    num_tokens: npt.NDArray[np.int64],
    edges: npt.NDArray[np.float64],
    token_edges: npt.NDArray[np.float64],
    num_token_buckets: int,
    sizes: npt.NDArray[np.int64] | None = ...,
    out: npt.NDArray[np.int64] | None = ...,
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]: ...

MAX_TOKEN_HISTOGRAM: int

def estimate_token_edges(
    rows: npt.NDArray[np.int64] | None,
    kind: int,
    duration: npt.NDArray[np.float64],
    num_frames: npt.NDArray[np.int64],
    num_features: npt.NDArray[np.int64],
    num_tokens: npt.NDArray[np.int64],
    edges: npt.NDArray[np.float64],
    num_token_buckets: int,
    max_token: int,
) -> npt.NDArray[np.float64]: ...
def group_by_bucket_2d(
    rows: npt.NDArray[np.int64] | None,
    kind: int,
    duration: npt.NDArray[np.float64],
    num_frames: npt.NDArray[np.int64],
    num_features: npt.NDArray[np.int64],
    num_tokens: npt.NDArray[np.int64],
    edges: npt.NDArray[np.float64],
    num_token_buckets: int,
    max_token: int,
    out: npt.NDArray[np.int64] | None = ...,
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.float64]]: ...
