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
    assert _cmake_set(text, "EXTENSION_NAME") == ["CineProp"]        # the index's rule: no "Slicer" prefix
    assert "add_subdirectory(CineProp)" in text and "project(CineProp)" in text
    # the files the URLs point to exist in the repository
    assert (MODULE_DIR / "Resources" / "Icons" / "CineProp.png").exists()
    for shot in re.findall(r"docs/images/[\w-]+\.png", " ".join(_cmake_set(text, "EXTENSION_SCREENSHOTURLS"))):
        assert (EXTENSION.parent / shot).exists(), shot


def test_files_stay_small():
    for path in [*MODULE_DIR.rglob("*.py"), *(EXTENSION / "tools").glob("*.py")]:
        lines = len(path.read_text(encoding="utf-8").splitlines())
        assert lines <= 430, f"{path.name} has {lines} lines"


def _index_tool():
    import importlib.util

    spec = importlib.util.spec_from_file_location("index_entry", EXTENSION / "tools" / "index_entry.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_index_entry_is_drafted_from_the_one_repository_url():
    """``CineProp.json`` is what tools/index_entry.py writes from CMakeLists.txt (URL set in one place)."""
    import json

    cmake = (EXTENSION / "CMakeLists.txt").read_text()
    drafted = (EXTENSION / "CineProp.json").read_text()
    assert drafted == _index_tool().render(cmake), "run slicer_extension/tools/index_entry.py"
    entry = json.loads(drafted)
    # Slicer's catalog schema v1.0.1: required keys, and no key it does not define
    assert {"$schema", "category", "scm_url"} <= set(entry)
    assert set(entry) <= {"$schema", "category", "scm_url", "scm_revision", "scm_type", "build_dependencies",
                          "build_subdirectory", "enabled", "tier"}
    url = " ".join(_cmake_set(cmake, "CINEPROP_REPOSITORY_URL"))
    assert entry["scm_url"] == url + ".git" and entry["category"] == "Segmentation"
    assert cmake.count(url) == 1 and "PLACEHOLDER" in cmake            # one place, marked for the maintainer
    for name in ("EXTENSION_HOMEPAGE", "EXTENSION_ICONURL", "EXTENSION_SCREENSHOTURLS"):
        assert all(u.startswith("${CINEPROP_REPOSITORY_URL}/") for u in _cmake_set(cmake, name)), name


def test_repository_has_the_licence_the_package_declares():
    licence = (EXTENSION.parent / "LICENSE.txt").read_text()
    assert "Apache License" in licence and "Version 2.0, January 2004" in licence
    assert 'license="Apache-2.0"' in (EXTENSION.parent / "setup.py").read_text()
