"""The compiled core (Cython). This package only re-exports its modules.

Engine: ``rng`` (keyed counter-based randomness, Fisher–Yates), ``bucketing`` (edge estimation,
bucket grouping), ``packing`` (greedy hard-capped packing), ``sharding`` (batch order, tail groups,
CSR gather); each kernel's plain-Python twin lives in ``tests/reference_plan.py``.
Index: ``cutscan`` (the manifest line scanner: the cut schema as tables, over the JSON grammar
in ``jsongrammar.pxd``; its exact twin is ``discoseq/index/fields.py``) and ``idhash`` (cut-id
hashing and id -> row lookup; twin ``tests/_core/test_idhash.py::py_hash``).
"""

try:
    from . import bucketing, cutscan, idhash, packing, rng, sharding
except ImportError as exc:  # pragma: no cover - exercised only on a broken install
    raise ImportError(
        "discoseq's compiled core (discoseq._core) is not built or is out of date "
        f"({exc}). Build it with `pip install -e .` (or `python setup.py build_ext --inplace`) "
        "from the source tree; there is no pure-Python fallback."
    ) from exc

__all__ = ["bucketing", "cutscan", "idhash", "packing", "rng", "sharding"]
