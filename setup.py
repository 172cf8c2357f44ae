"""Build the Cython engine in ``discoseq/_core``; all metadata lives in pyproject.toml.

Environment switches:
  DISCOSEQ_DEBUG=1     turn bounds/wraparound/initialized checks back on (debug build)
  DISCOSEQ_ANNOTATE=1  write Cython's annotate HTML next to each .pyx
"""

import os
from pathlib import Path

import numpy
from Cython.Build import cythonize
from setuptools import Extension, setup

DEBUG = os.environ.get("DISCOSEQ_DEBUG", "") not in ("", "0")
ANNOTATE = os.environ.get("DISCOSEQ_ANNOTATE", "") not in ("", "0")

directives = {
    "language_level": 3,
    "boundscheck": DEBUG,
    "wraparound": DEBUG,
    "initializedcheck": DEBUG,
    "cdivision": not DEBUG,
    "embedsignature": True,
}

extensions = [
    Extension(
        f"discoseq._core.{pyx.stem}",
        [str(pyx)],
        include_dirs=[numpy.get_include()],
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
        # No fused multiply-add contraction: plans must be bit-identical on every machine
        # (GCC contracts a*b+c by default where the target has FMA, e.g. aarch64).
        extra_compile_args=(["-O3"] if not DEBUG else ["-O0", "-g"]) + ["-ffp-contract=off"],
    )
    for pyx in sorted(Path("discoseq/_core").glob("*.pyx"))
]

setup(ext_modules=cythonize(extensions, compiler_directives=directives, annotate=ANNOTATE))
