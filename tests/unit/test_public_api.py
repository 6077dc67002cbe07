"""Each package's public face (``__all__``) names exactly what it exports."""

from __future__ import annotations

import importlib

import pytest


@pytest.mark.parametrize("module", ["tongdao", "tongdao.store", "tongdao.compliance"])
def test_all_names_exist(module: str) -> None:
    mod = importlib.import_module(module)
    for name in mod.__all__:
        assert hasattr(mod, name), f"{module}.__all__ names missing {name}"
    assert sorted(mod.__all__) == sorted(set(mod.__all__))
