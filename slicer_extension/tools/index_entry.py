"""Write the Slicer Extensions Index entry (``CineProp.json``) from ``slicer_extension/CMakeLists.txt``.

The repository URL and the category are read from the CMake file, so the maintainer sets the URL in
one place (``CINEPROP_REPOSITORY_URL``). The entry follows Slicer's catalog schema v1.0.1
(``Schemas/slicer-extension-catalog-entry-schema-v1.0.1.json`` in Slicer's source). To submit: copy
the file into a fork of https://github.com/Slicer/ExtensionsIndex and open a pull request.

    python slicer_extension/tools/index_entry.py            # rewrites slicer_extension/CineProp.json
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

EXTENSION = Path(__file__).resolve().parents[1]
SCHEMA = "https://raw.githubusercontent.com/Slicer/Slicer/main/Schemas/slicer-extension-catalog-entry-schema-v1.0.1.json#"


def cmake_value(text: str, name: str) -> str:
    """The (first, unquoted) value of ``set(name value)`` in a CMake file."""
    match = re.search(rf'set\(\s*{name}\s+"?([^")]*)"?\s*\)', text)
    if not match:
        raise SystemExit(f"{name} is not set in CMakeLists.txt")
    return match.group(1).strip()


def entry(cmake_text: str) -> dict:
    """The index entry: schema, repository, revision, category, tier 1 (experimental)."""
    return {"$schema": SCHEMA, "build_dependencies": [], "build_subdirectory": ".",
            "category": cmake_value(cmake_text, "EXTENSION_CATEGORY"),
            "scm_revision": "main", "scm_url": cmake_value(cmake_text, "CINEPROP_REPOSITORY_URL") + ".git",
            "tier": 1}


def render(cmake_text: str) -> str:
    return json.dumps(entry(cmake_text), indent=2) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=EXTENSION / "CineProp.json")
    args = parser.parse_args()
    cmake_text = (EXTENSION / "CMakeLists.txt").read_text(encoding="utf-8")
    args.out.write_text(render(cmake_text), encoding="utf-8")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
