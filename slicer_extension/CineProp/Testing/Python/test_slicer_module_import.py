"""The module file imports with Slicer's packages stubbed at the import boundary, and its logic runs on arrays.

3D Slicer cannot be installed here. ``slicer``, ``qt``, ``vtk`` and ``ctk`` are replaced by
minimal stand-ins in ``sys.modules`` only; everything the logic calls below (CinePropLib, numpy,
SimpleITK) is real.
"""

from __future__ import annotations

import importlib
import subprocess
import sys
import types
import unittest
from pathlib import Path

import numpy as np
import pytest

from CinePropLib.conversions import ijk_to_kji
from CinePropLib.logic import WorkflowError
from CinePropLib.results import parse_result

MODULE_DIR = Path(__file__).resolve().parents[2]  # slicer_extension/CineProp

LIBRARY_MODULES = ["client", "conversions", "logic", "panel", "results", "segments", "support", "volumefiles"]


def _stub_modules() -> dict[str, types.ModuleType]:
    """Stand-ins for what CineProp.py imports from Slicer, nothing more."""

    class _Base:
        def __init__(self, *args, **kwargs):
            pass

    slicer = types.ModuleType("slicer")
    for name in ("vtkMRMLScalarVolumeNode", "vtkMRMLSegmentationNode", "vtkMRMLSequenceNode"):
        setattr(slicer, name, type(name, (), {}))
    slm = types.ModuleType("slicer.ScriptedLoadableModule")
    slm.ScriptedLoadableModule = type("ScriptedLoadableModule", (_Base,), {})
    slm.ScriptedLoadableModuleWidget = type("ScriptedLoadableModuleWidget", (_Base,), {})
    slm.ScriptedLoadableModuleLogic = type("ScriptedLoadableModuleLogic", (_Base,), {})
    slm.ScriptedLoadableModuleTest = type("ScriptedLoadableModuleTest", (unittest.TestCase,), {})
    util = types.ModuleType("slicer.util")
    util.VTKObservationMixin = type("VTKObservationMixin", (_Base,), {})
    pnw = types.ModuleType("slicer.parameterNodeWrapper")
    pnw.parameterNodeWrapper = lambda cls: cls
    pnw.WithinRange = lambda low, high: ("WithinRange", low, high)
    slicer.ScriptedLoadableModule, slicer.util, slicer.parameterNodeWrapper = slm, util, pnw
    return {"slicer": slicer, "slicer.ScriptedLoadableModule": slm, "slicer.util": util,
            "slicer.parameterNodeWrapper": pnw, "qt": types.ModuleType("qt"), "vtk": types.ModuleType("vtk"),
            "ctk": types.ModuleType("ctk")}


@pytest.fixture
def module(monkeypatch):
    for name, stub in _stub_modules().items():
        monkeypatch.setitem(sys.modules, name, stub)
    for name in ("CineProp", "CinePropLib.nodes"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    mod = importlib.import_module("CineProp")
    yield mod
    for name in ("CineProp", "CinePropLib.nodes"):
        sys.modules.pop(name, None)


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
