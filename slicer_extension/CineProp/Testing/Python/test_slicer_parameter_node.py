"""The module's parameter node declaration against Slicer's REAL ``parameterNodeWrapper`` package.

``slicer.parameterNodeWrapper`` and ``slicer.ScriptedLoadableModule`` are Slicer's own files, imported
from the Slicer source checkout named by ``SLICER_SOURCE_DIR`` (every test here is skipped without it);
only the compiled MRML/VTK/Qt parts stand in (``slicer_standins.py``). Issue 14: a ``Union`` of node types without ``None`` made the wrapper raise
``TypeError`` when it wrote the default into a fresh node, in ``setup()`` and on every module entry.
"""


import importlib
from pathlib import Path
from typing import Union

import pytest
import slicer_standins

UI_FILE = Path(__file__).resolve().parents[2] / "Resources" / "UI" / "CineProp.ui"


@pytest.fixture
def slicer(monkeypatch):
    module = slicer_standins.install(monkeypatch)
    yield module
    slicer_standins.forget_imports()


@pytest.fixture
def cineprop(slicer):
    return importlib.import_module("CineProp")


def test_the_old_declaration_fails_in_the_real_wrapper(slicer):
    """The test can fail: the declaration issue 14 reported raises in Slicer's own wrapper."""
    from slicer.parameterNodeWrapper import parameterNodeWrapper

    @parameterNodeWrapper
    class Old:
        cine: Union[slicer.vtkMRMLScalarVolumeNode, slicer.vtkMRMLSequenceNode]

    with pytest.raises(TypeError, match="Unable to write value 'None'"):
        Old(slicer.vtkMRMLScriptedModuleNode())


def test_fresh_node_every_field_read_and_written(slicer, cineprop):
    from CinePropLib.client import DEFAULT_URL

    scene = slicer.mrmlScene
    logic = cineprop.CinePropLogic()
    params = logic.getParameterNode()                 # creates the singleton node and writes the defaults
    assert scene.GetNumberOfNodesByClass("vtkMRMLScriptedModuleNode") == 1
    assert (params.serverUrl, params.cine, params.segmentation, params.flagThreshold) == (DEFAULT_URL, None, None, 0.5)

    volume = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "cine")
    sequence = scene.AddNewNodeByClass("vtkMRMLSequenceNode", "cine sequence")
    segmentation = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "painted")
    params.serverUrl = "https://monai.example.org:8000"
    params.cine = volume
    params.segmentation = segmentation
    params.flagThreshold = 0.3
    again = logic.getParameterNode()                  # module re-entry: the same node, the values kept
    assert again.parameterNode is params.parameterNode
    assert (again.serverUrl, again.cine, again.segmentation, again.flagThreshold) == (
        "https://monai.example.org:8000", volume, segmentation, 0.3)
    for value in (sequence, None, volume):            # every member of the Union, None included
        params.cine = value
        assert logic.getParameterNode().cine is value
    params.segmentation = None
    assert logic.getParameterNode().segmentation is None

    with pytest.raises(TypeError):
        params.cine = segmentation                    # not a cine type
    with pytest.raises(ValueError):
        params.flagThreshold = 1.5                    # WithinRange(0, 1)
    assert params.cine is volume and params.flagThreshold == 0.3


def test_widget_initialize_parameter_node_connects_the_ui(slicer, cineprop):
    """The widget's enter path (initializeParameterNode → connectGui) on the .ui's own widgets."""
    widget = cineprop.CinePropWidget(slicer_standins.QWidget())
    widget.ui = slicer_standins.widgets_from_ui(UI_FILE)
    widget.logic = cineprop.CinePropLogic()
    widget.enter()
    ui, params = widget.ui, widget._parameterNode
    assert ui.embeddedSegmentEditorWidget.shortcutsInstalled    # z/y undo/redo and effect keys while entered

    assert ui.inputSelector.nodeTypes == ("vtkMRMLScalarVolumeNode", "vtkMRMLSequenceNode")
    assert ui.segmentationSelector.nodeTypes == ("vtkMRMLSegmentationNode",)
    assert ui.serverUrlLineEdit.text == params.serverUrl
    assert (ui.flagThresholdSpinBox.minimum, ui.flagThresholdSpinBox.maximum) == (0.0, 1.0)

    sequence = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSequenceNode", "cine")
    ui.inputSelector.setCurrentNode(sequence)         # GUI → node
    ui.flagThresholdSpinBox.value = 0.7
    assert params.cine is sequence and params.flagThreshold == pytest.approx(0.7)
    params.serverUrl = "http://10.0.0.5:8000"         # node → GUI
    params.cine = None
    assert ui.serverUrlLineEdit.text == "http://10.0.0.5:8000" and ui.inputSelector.currentNode() is None

    slicer.app.layoutManager().setLayout(6)           # the module chose Red-only while painting
    widget.exit()                                     # disconnected: the GUI no longer writes the node
    assert not ui.embeddedSegmentEditorWidget.shortcutsInstalled
    assert slicer.app.layoutManager().layout == 3     # the user's layout is back
    ui.flagThresholdSpinBox.value = 0.2
    assert params.flagThreshold == pytest.approx(0.7)
    widget.enter()                                    # enter again: connects, the GUI shows the node
    assert ui.flagThresholdSpinBox.value == pytest.approx(0.7)
