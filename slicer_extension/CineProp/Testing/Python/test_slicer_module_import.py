"""The module file imports over Slicer's real Python packages (compiled parts stand in); its logic runs on arrays.

3D Slicer cannot be installed here: ``slicer_standins`` supplies Slicer's own ``parameterNodeWrapper``
and ``ScriptedLoadableModule`` (from the checkout named by ``SLICER_SOURCE_DIR``; the tests that import
``CineProp.py`` are skipped without it) with stand-ins for MRML/VTK/Qt only; everything the logic calls
below (CinePropLib, numpy, SimpleITK) is real.
"""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import slicer_standins

from CinePropLib.conversions import ijk_to_kji
from CinePropLib.workflow import WorkflowError
from CinePropLib.results import parse_result

MODULE_DIR = Path(__file__).resolve().parents[2]  # slicer_extension/CineProp

LIBRARY_MODULES = [
    "client", "conversions", "panel", "results", "segments", "support", "tasks", "volumefiles", "workflow"]


@pytest.fixture
def module(monkeypatch):
    slicer_standins.install(monkeypatch)
    yield importlib.import_module("CineProp")
    slicer_standins.forget_imports()


def test_library_imports_without_slicer():
    """Everything but ``nodes`` imports in a clean interpreter with no Slicer or Qt package touched."""
    code = ("import sys\n"
            f"sys.path.insert(0, {str(MODULE_DIR)!r})\n"
            + "".join(f"import CinePropLib.{m}\n" for m in LIBRARY_MODULES)
            + "bad = [m for m in ('slicer', 'qt', 'vtk', 'ctk', 'PySide6') if m in sys.modules]\n"
            "assert not bad, bad\n")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_module_needs_slicer_without_stubs(monkeypatch):
    monkeypatch.delitem(sys.modules, "CineProp", raising=False)
    monkeypatch.setitem(sys.modules, "slicer", None)   # as in a plain Python: import fails
    with pytest.raises(ImportError):
        importlib.import_module("CineProp")


def test_module_classes_follow_slicer_conventions(module):
    for suffix in ("", "Widget", "Logic", "Test", "ParameterNode"):
        assert hasattr(module, f"CineProp{suffix}")
    assert issubclass(module.CinePropLogic, sys.modules["slicer.ScriptedLoadableModule"].ScriptedLoadableModuleLogic)
    assert set(module.CinePropParameterNode.__annotations__) == {"serverUrl", "cine", "segmentation",
                                                                 "flagThreshold"}


def test_logic_runs_on_arrays(module, cine_and_labels, oblique_grid):
    frames, labels = cine_and_labels                      # I×J×T
    logic = module.CinePropLogic()
    cine = logic.cineFromVolumeArray(ijk_to_kji(frames), oblique_grid, "synthetic")
    np.testing.assert_array_equal(cine.frames, frames)

    sequence = logic.cineFromFrameArrays([frames[:, :, t].T[None] for t in range(frames.shape[2])],
                                         [oblique_grid] * frames.shape[2])
    np.testing.assert_array_equal(sequence.frames, frames)

    logic.workflow.info = {"models": {"cineprop": {"labels": {"RV": 1, "myocardium": 2, "LV": 3}}}}
    specs = logic.segmentsFor(["LV", "scar"])
    assert [(s.name, s.value) for s in specs] == [("LV", 3), ("scar", 1)]

    painted = np.zeros_like(labels)
    painted[..., 2] = labels[..., 2]
    assert logic.supportFrames(cine, painted) == [2]

    with pytest.raises(WorkflowError, match="Propagate first"):
        logic.nextFlaggedFrame(0)
    logic.lastResult = parse_result(labels, {"confidence": [1, 0.9, 1, 0.2, 0.9, 0.3, 0.9], "support_frames": [2]})
    assert logic.nextFlaggedFrame(2) == 3 and logic.nextFlaggedFrame(3) == 5 and logic.nextFlaggedFrame(6) == 3

    with pytest.raises(WorkflowError, match="Not connected"):
        logic.propagateArrays(cine, painted, specs)


def _attribute_calls(path: Path, owner: str) -> set[str]:
    """Names ``X`` in ``<owner>.X`` (``owner`` a dotted name such as ``self.logic``) in a source file."""
    import ast

    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Attribute) and ast.unparse(node.value) == owner:
            found.add(node.attr)
    return found


def test_code_that_runs_only_in_slicer_calls_what_exists(module):
    """The widget and the MRML adapters cannot run here; every logic, adapter, panel and workflow
    function they call must at least exist (a renamed function fails here, not in front of a user)."""
    from CinePropLib import nodes, panel, sequences
    from CinePropLib.workflow import CineWorkflow

    files = [MODULE_DIR / "CineProp.py", *(MODULE_DIR / "CinePropLib").glob("*.py")]
    logic, workflow = module.CinePropLogic(), CineWorkflow()             # instances: attributes set in __init__
    owners = {"self.logic": logic, "self.logic.workflow": workflow, "self.workflow": workflow,
              "nodes": nodes, "sequences": sequences, "panel": panel}
    missing = [f"{path.name}: {owner}.{name}" for path in files for owner, target in owners.items()
               for name in _attribute_calls(path, owner) if not hasattr(target, name)]
    assert not missing, missing
    assert _attribute_calls(MODULE_DIR / "CineProp.py", "self.logic")       # the check sees the calls


def test_the_widget_calls_only_its_logic():
    """Widget → Logic → workflow: the widget never calls into what the logic holds (``self.logic.workflow.x()``)."""
    import ast

    tree = ast.parse((MODULE_DIR / "CineProp.py").read_text())
    reaches = sorted({ast.unparse(node.func) for node in ast.walk(tree)
                      if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                      and ast.unparse(node.func).startswith("self.logic.") and ast.unparse(node.func).count(".") > 2})
    assert not reaches, reaches
    assert not _attribute_calls(MODULE_DIR / "CineProp.py", "self.logic.workflow")
