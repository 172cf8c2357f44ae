"""The compiled core is what runs: every ``discoseq/_core/*.pyx`` imports as an extension module."""

import importlib
from pathlib import Path

import pytest

import discoseq

CORE = Path(discoseq.__file__).parent / "_core"
MODULES = sorted(p.stem for p in CORE.glob("*.pyx"))


def test_core_sources_exist():
    assert {"idhash", "cutscan"} <= set(MODULES)


@pytest.mark.parametrize("name", MODULES)
def test_module_is_compiled(name):
    module = importlib.import_module(f"discoseq._core.{name}")
    assert Path(module.__file__).suffix in (".so", ".pyd"), (
        f"{module.__file__} is not a compiled extension; run `pip install -e .`"
    )
