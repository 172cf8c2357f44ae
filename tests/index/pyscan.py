"""A pure-Python twin of ``discoseq._core.cutscan.scan_cut_lines`` that sends every line down the
exact slow path (status 1): used to check the compiled scanner changes nothing."""

from __future__ import annotations

import numpy as np


def scan_all_slow(buf: bytes | memoryview) -> dict[str, np.ndarray]:
    buf = bytes(buf)
    starts, ends, line_nos = [], [], []
    pos = 0
    for line_no, line in enumerate(buf.split(b"\n")):
        end = pos + len(line)
        stripped_end = end - 1 if line.endswith(b"\r") else end
        if line.strip():
            starts.append(pos)
            ends.append(stripped_end)
            line_nos.append(line_no)
        pos = end + 1
    n = len(starts)
    return {
        "line_no": np.array(line_nos, np.int64),
        "start": np.array(starts, np.int64),
        "end": np.array(ends, np.int64),
        "status": np.ones(n, np.uint8),
        "cut_type": np.zeros(n, np.uint8),
        "duration": np.zeros(n, np.float64),
        "num_frames": np.full(n, -1, np.int64),
        "num_samples": np.full(n, -1, np.int64),
        "num_features": np.full(n, -1, np.int64),
        "num_tokens": np.full(n, -1, np.int64),
        "num_supervisions": np.zeros(n, np.int32),
        "id_start": np.zeros(n, np.int64),
        "id_end": np.zeros(n, np.int64),
    }
