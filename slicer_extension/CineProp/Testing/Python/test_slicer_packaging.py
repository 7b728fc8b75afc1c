"""The extension's CMake files declare every script and resource, the metadata is complete, and the
files stay small (the project's ~400-line rule)."""

from __future__ import annotations

import re
from pathlib import Path

EXTENSION = Path(__file__).resolve().parents[3]          # slicer_extension/
MODULE_DIR = EXTENSION / "CineProp"


def _cmake_set(text: str, name: str) -> list[str]:
    match = re.search(rf"set\(\s*{name}\s+(.*?)\)\s*$", text, re.S | re.M)
    assert match, f"{name} is not set"
    return [item.strip('"') for item in match.group(1).split()]


def test_module_cmake_lists_every_file():
    text = (MODULE_DIR / "CMakeLists.txt").read_text()
    module = "CineProp"
    listed = {p.replace("${MODULE_NAME}", module) for p in
              _cmake_set(text, "MODULE_PYTHON_SCRIPTS") + _cmake_set(text, "MODULE_PYTHON_RESOURCES")}
    on_disk = {f"{module}.py"}
    on_disk |= {p.relative_to(MODULE_DIR).as_posix() for p in (MODULE_DIR / "CinePropLib").glob("*.py")}
    on_disk |= {p.relative_to(MODULE_DIR).as_posix() for p in (MODULE_DIR / "Resources").rglob("*") if p.is_file()}
    assert listed == on_disk
    assert "slicerMacroBuildScriptedModule" in text and "slicer_add_python_unittest" in text


def test_extension_metadata_is_complete():
    text = (EXTENSION / "CMakeLists.txt").read_text()
    for name in ("EXTENSION_NAME", "EXTENSION_HOMEPAGE", "EXTENSION_CATEGORY", "EXTENSION_CONTRIBUTORS",
                 "EXTENSION_DESCRIPTION", "EXTENSION_ICONURL", "EXTENSION_SCREENSHOTURLS", "EXTENSION_DEPENDS"):
        assert " ".join(_cmake_set(text, name)).strip(), name
    assert _cmake_set(text, "EXTENSION_NAME") == ["SlicerCineProp"]
    assert "add_subdirectory(CineProp)" in text and "project(SlicerCineProp)" in text
    # the files the URLs point to exist in the repository
    assert (MODULE_DIR / "Resources" / "Icons" / "CineProp.png").exists()
    for shot in re.findall(r"docs/images/[\w-]+\.png", " ".join(_cmake_set(text, "EXTENSION_SCREENSHOTURLS"))):
        assert (EXTENSION.parent / shot).exists(), shot


def test_files_stay_small():
    for path in [*MODULE_DIR.rglob("*.py"), *(EXTENSION / "tools").glob("*.py")]:
        lines = len(path.read_text(encoding="utf-8").splitlines())
        assert lines <= 430, f"{path.name} has {lines} lines"
