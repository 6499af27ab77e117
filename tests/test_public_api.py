"""``privguard/__init__.py`` is the whole public surface, with a sorted ``__all__``."""

from __future__ import annotations

import importlib
import inspect
import tomllib
from importlib import resources
from pathlib import Path
from types import ModuleType

import privguard

ROOT = Path(__file__).resolve().parent.parent


def _isort_style(name: str) -> tuple[int, str]:
    # How the file sorts (ruff RUF022): CONSTANTS, then Classes, then everything else.
    if name.isupper():
        return (0, name)
    if name[0].isupper():
        return (1, name)
    return (2, name)


def test_all_is_sorted() -> None:
    assert privguard.__all__ == sorted(privguard.__all__, key=_isort_style)
    assert len(set(privguard.__all__)) == len(privguard.__all__)


def test_all_is_exactly_the_public_names() -> None:
    public = {
        name
        for name, value in vars(privguard).items()
        if not name.startswith("_") and not isinstance(value, ModuleType)
    }
    assert set(privguard.__all__) == public | {"__version__"}


def test_every_name_is_importable() -> None:
    namespace: dict[str, object] = {}
    exec("from privguard import *", namespace)
    for name in privguard.__all__:
        assert name in namespace, name
        assert getattr(privguard, name) is namespace[name]
        assert getattr(importlib.import_module("privguard"), name) is namespace[name]


def test_no_private_module_leaks() -> None:
    for name in privguard.__all__:
        assert not name.startswith("_") or name == "__version__", name
    modules = [
        name
        for name, value in vars(privguard).items()
        if isinstance(value, ModuleType) and not name.startswith("_")
    ]
    # privguard.testing is the one public submodule: helpers for the host's own tests.
    assert set(modules) <= {"testing"}, "a private module is a public attribute of privguard"


def test_public_classes_live_in_privguard() -> None:
    for name in privguard.__all__:
        value = getattr(privguard, name)
        if inspect.isclass(value) or inspect.isfunction(value):
            assert value.__module__.startswith("privguard"), name


def test_every_public_exception_is_a_privguard_error() -> None:
    for name in privguard.__all__:
        value = getattr(privguard, name)
        if inspect.isclass(value) and issubclass(value, BaseException):
            assert issubclass(value, privguard.PrivguardError), name


def test_py_typed_ships() -> None:
    marker = resources.files("privguard") / "py.typed"
    assert marker.is_file()
    assert Path(str(marker)).parent == Path(privguard.__file__).parent
    # The wheel takes the whole package directory, so the marker goes with it.
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    wheel = config["tool"]["hatch"]["build"]["targets"]["wheel"]
    assert "src/privguard" in wheel["packages"]
    assert not any("py.typed" in str(x) for x in wheel.get("exclude", []))


def test_version_matches_the_distribution() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert privguard.__version__ == config["project"]["version"]
