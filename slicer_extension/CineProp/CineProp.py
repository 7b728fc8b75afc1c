"""CineProp: few-shot segmentation of cines in 3D Slicer through a cineprop MONAI Label server.

Module → Widget (this file, thin) → Logic (this file: nodes ⇄ arrays) → ``CinePropLib`` (REST
client, conversions, support bookkeeping; no Slicer needed, tested with pytest).
"""

import functools
import logging
import os
from typing import Annotated, Union

import numpy as np
import qt
import slicer
from slicer import vtkMRMLScalarVolumeNode, vtkMRMLSegmentationNode, vtkMRMLSequenceNode
from slicer.parameterNodeWrapper import WithinRange, parameterNodeWrapper
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleLogic,
    ScriptedLoadableModuleTest,
    ScriptedLoadableModuleWidget,
)
from slicer.util import VTKObservationMixin

from CinePropLib import nodes, panel
from CinePropLib.client import DEFAULT_URL, ServerError
from CinePropLib.conversions import ConversionError, cine_from_frames, cine_from_volume
from CinePropLib.logic import IMAGE_TRAIN_TASK, RELEARN_TASK, CineWorkflow, WorkflowError, describe_error
from CinePropLib.segments import SegmentSpec, assign_values, palette_color, result_segments
from CinePropLib.support import next_flagged


class CineProp(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = "CineProp"
        self.parent.categories = ["Segmentation"]
        self.parent.dependencies = []
        self.parent.contributors = ["cineprop developers"]
        self.parent.helpText = (
            "Paint a structure on one or a few frames of a cine (a volume with frames on its last axis, or a "
            "Sequence of 2D frames), propagate it to every frame with a cineprop MONAI Label server, review the "
            "flagged frames, correct, submit, train, and go to the next study. See docs/slicer.md.")
        self.parent.acknowledgementText = (
            "Method: 'Reducing Annotation Burden: Exploiting Image Knowledge for Few-Shot Medical Video Object "
            "Segmentation via Spatiotemporal Consistency Relearning' (MICCAI 2024). Built on MONAI Label.")


@parameterNodeWrapper
class CinePropParameterNode:
    """GUI state saved with the scene: server address, cine, segmentation and flag threshold."""

    serverUrl: str = DEFAULT_URL
    cine: Union[vtkMRMLScalarVolumeNode, vtkMRMLSequenceNode]
    segmentation: vtkMRMLSegmentationNode
    flagThreshold: Annotated[float, WithinRange(0.0, 1.0)] = 0.5


def _guarded(busy):
    """Run a button handler with a wait cursor; show any error as one line in the panel."""
    def decorate(method):
        @functools.wraps(method)
        def run(self, *_signalArgs):
            self._status(f"{busy}…")
            slicer.app.setOverrideCursor(qt.Qt.WaitCursor)
            try:
                method(self)
            except Exception as exc:  # noqa: BLE001 - everything ends as a readable message
                if not isinstance(exc, (WorkflowError, ServerError, ConversionError)):
                    logging.exception("CineProp: %s failed", busy)  # a bug: traceback to the console only
                self._status(describe_error(exc), error=True)
            finally:
                slicer.app.restoreOverrideCursor()
        return run
    return decorate


class CinePropWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    def __init__(self, parent=None):
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None
        self._plotNodes = {}

    def setup(self):
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/CineProp.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        for widget in (self.ui.inputSelector, self.ui.segmentationSelector, self.ui.embeddedSegmentEditorWidget):
            widget.setMRMLScene(slicer.mrmlScene)
        editorNode = slicer.mrmlScene.GetSingletonNode("CineProp", "vtkMRMLSegmentEditorNode")
        if editorNode is None:
            editorNode = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentEditorNode", "CineProp editor")
            editorNode.SetSingletonTag("CineProp")
        self.ui.embeddedSegmentEditorWidget.setMRMLSegmentEditorNode(editorNode)
        self.ui.embeddedSegmentEditorWidget.setSegmentationNodeSelectorVisible(False)
        self.ui.embeddedSegmentEditorWidget.setSourceVolumeNodeSelectorVisible(False)
        self.logic = CinePropLogic()
        self._trainingTimer = qt.QTimer()
        self._trainingTimer.setInterval(2000)
        self._trainingTimer.connect("timeout()", self.onTrainingTimer)

        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        self.ui.connectButton.connect("clicked(bool)", self.onConnect)
        self.ui.refreshStudiesButton.connect("clicked(bool)", self.onRefreshStudies)
        self.ui.loadStudyButton.connect("clicked(bool)", self.onLoadStudy)
        self.ui.studyList.connect("itemDoubleClicked(QListWidgetItem*)", self.onLoadStudy)
        self.ui.nextStudyButton.connect("clicked(bool)", self.onNextStudy)
        self.ui.inputSelector.connect("currentNodeChanged(vtkMRMLNode*)", self.onCineChanged)
        self.ui.segmentationSelector.connect("currentNodeChanged(vtkMRMLNode*)", self.onSegmentationChanged)
        self.ui.propagateButton.connect("clicked(bool)", self.onPropagate)
        self.ui.nextFlaggedButton.connect("clicked(bool)", self.onNextFlagged)
        self.ui.confirmFrameButton.connect("clicked(bool)", self.onConfirmFrame)
        self.ui.confidenceTable.connect("cellDoubleClicked(int,int)", self.onConfidenceRow)
        self.ui.submitButton.connect("clicked(bool)", self.onSubmit)
        self.ui.relearnButton.connect("clicked(bool)", self.onRelearn)
        self.ui.trainButton.connect("clicked(bool)", self.onTrain)
        self.ui.stopTrainingButton.connect("clicked(bool)", self.onStopTraining)
        self.initializeParameterNode()
        self._updateButtons()

    def cleanup(self):
        self._trainingTimer.stop()
        self.removeObservers()

    def enter(self):
        self.initializeParameterNode()

    def exit(self):
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self._parameterNodeGuiTag = None

    def onSceneStartClose(self, caller, event):
        self.setParameterNode(None)

    def onSceneEndClose(self, caller, event):
        if self.parent.isEntered:
            self.initializeParameterNode()

    def initializeParameterNode(self):
        self.setParameterNode(self.logic.getParameterNode())

    def setParameterNode(self, inputParameterNode):
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
        self._parameterNode = inputParameterNode
        if self._parameterNode:
            self._parameterNodeGuiTag = self._parameterNode.connectGui(self.ui)

    # -- helpers -------------------------------------------------------------------------------
    def _status(self, text, error=False):
        panel.show_status(self.ui, text, error)
        slicer.app.processEvents()

    def _updateButtons(self):
        panel.update_buttons(self.ui, self.ui.inputSelector.currentNode() is not None, self.logic.lastResult)

    # -- handlers ------------------------------------------------------------------------------
    @_guarded("Connecting")
    def onConnect(self):
        self.ui.connectionStatusLabel.text = self.logic.workflow.connect(self.ui.serverUrlLineEdit.text)
        panel.show_studies(self.ui, self.logic.workflow.studies(), qt)
        self._status("Connected. Load a study, or choose a cine loaded in Slicer.")

    @_guarded("Listing studies")
    def onRefreshStudies(self):
        panel.show_studies(self.ui, self.logic.workflow.studies(), qt)
        self._status("")

    @_guarded("Loading the study")
    def onLoadStudy(self):
        imageId = panel.selected_study(self.ui, qt)
        if imageId is None:
            raise WorkflowError("Select a study in the list first (press Connect to list them)")
        self._openStudy(imageId)

    @_guarded("Asking for the next study")
    def onNextStudy(self):
        study = self.logic.workflow.next_study()
        if study is None:
            self._status("Every study has an approved label: nothing left to annotate.")
            return
        self._openStudy(study.id, study.info.get("path"))

    def _openStudy(self, imageId, serverPath=None):
        node = self.logic.loadStudy(imageId, serverPath)
        self.ui.inputSelector.setCurrentNode(node)
        self._status(f"Study {imageId} loaded. Paint the structure on one or a few frames, then Propagate.")

    def onCineChanged(self, node):
        self.logic.lastResult = None
        panel.reset_result(self.ui)
        try:
            if node is not None:
                volume, segmentation = self.logic.prepareCine(node)
                self.ui.segmentationSelector.setCurrentNode(segmentation)
                self.ui.embeddedSegmentEditorWidget.setSourceVolumeNode(volume)
                imageId = nodes.image_id_of(node)
                self.ui.studyLabel.text = (f"Study {imageId} on the server" if imageId else
                                           "Local cine: uploaded for this session when you propagate")
            else:
                self.ui.studyLabel.text = "No cine selected"
        except Exception as exc:  # noqa: BLE001
            self._status(describe_error(exc), error=True)
        self._updateButtons()

    def onSegmentationChanged(self, node):
        self.ui.embeddedSegmentEditorWidget.setSegmentationNode(node)

    @_guarded("Propagating")
    def onPropagate(self):
        result = self.logic.propagate(self.ui.inputSelector.currentNode(), self.ui.segmentationSelector.currentNode(),
                                      self.ui.flagThresholdSpinBox.value)
        panel.show_result(self.ui, result, qt)
        nodes.plot_confidence(result, self._plotNodes)
        self._updateButtons()
        self._status("Review the flagged frames, correct them, then Propagate again or Submit.")

    @_guarded("Finding the next flagged frame")
    def onNextFlagged(self):
        cine = self.ui.inputSelector.currentNode()
        frame = self.logic.nextFlaggedFrame(self.logic.currentFrame(cine))
        if frame is None:
            self._status("No flagged frames.")
            return
        self.logic.goToFrame(cine, frame)
        self._status(f"Frame {frame}: confidence {self.logic.lastResult.rows()[frame][1]}")

    def onConfidenceRow(self, row, column):
        try:
            self.logic.goToFrame(self.ui.inputSelector.currentNode(), row)
        except Exception as exc:  # noqa: BLE001
            self._status(describe_error(exc), error=True)

    @_guarded("Marking the frame")
    def onConfirmFrame(self):
        frame = self.logic.confirmCurrentFrame(self.ui.inputSelector.currentNode())
        self._status(f"Frame {frame} will be support at the next Propagate.")

    @_guarded("Submitting the label")
    def onSubmit(self):
        imageId = self.logic.submit(self.ui.inputSelector.currentNode(), self.ui.segmentationSelector.currentNode())
        panel.show_studies(self.ui, self.logic.workflow.studies(), qt)
        self._status(f"Saved as the final label of {imageId}. Train, or go to the Next study.")

    @_guarded("Starting relearning")
    def onRelearn(self):
        self._startTraining(RELEARN_TASK)

    @_guarded("Starting training")
    def onTrain(self):
        self._startTraining(IMAGE_TRAIN_TASK)

    def _startTraining(self, task):
        panel.show_training(self.ui, self.logic.workflow.start_training(task))
        self._trainingTimer.start()
        self._status(f"{task} started on the server.")

    @_guarded("Stopping training")
    def onStopTraining(self):
        self.logic.workflow.stop_training()
        self._status("Training stopped.")

    def onTrainingTimer(self):
        try:
            running = panel.show_training(self.ui, self.logic.workflow.training_progress())
        except Exception as exc:  # noqa: BLE001 - shown, and polling stops
            running = panel.show_training(self.ui, None, describe_error(exc))
        if not running:
            self._trainingTimer.stop()


class CinePropLogic(ScriptedLoadableModuleLogic):
    """Nodes ⇄ arrays around :class:`CinePropLib.logic.CineWorkflow`.

    The ``*Array*`` methods take and return numpy arrays only (cines are ``I×J×T``, Slicer arrays
    ``K×J×I``) and run without Slicer; the others read and write MRML nodes.
    """

    def __init__(self):
        ScriptedLoadableModuleLogic.__init__(self)
        self.workflow = CineWorkflow()
        self.lastResult = None
        self.lastSegments = []

    def getParameterNode(self):
        return CinePropParameterNode(super().getParameterNode())

    # -- arrays --------------------------------------------------------------------------------
    @staticmethod
    def cineFromVolumeArray(arrayKJI, ijkToRAS, name="cine"):
        """A volume's ``K×J×I`` array (frames on K) → cine ``I×J×T``."""
        return cine_from_volume(arrayKJI, ijkToRAS, name)

    @staticmethod
    def cineFromFrameArrays(framesKJI, ijkToRASList, name="cine"):
        """A Sequence's frames (``1×J×I`` each) → one cine ``I×J×T``."""
        return cine_from_frames(framesKJI, ijkToRASList, name)

    def segmentsFor(self, names, colors=None):
        """:class:`SegmentSpec` for segment names (values from the server's labels and the last result)."""
        known = {**self.workflow.known_labels, **{s.name: s.value for s in self.lastSegments}}
        values = assign_values(list(names), known)
        colors = colors or [palette_color(values[n]) for n in names]
        return [SegmentSpec(n, tuple(c), values[n]) for n, c in zip(names, colors)]

    def supportFrames(self, cine, labels):
        return self.workflow.support_frames(cine, labels)

    def propagateArrays(self, cine, labels, segments, imageId=None, threshold=0.5):
        """Propagate; returns the result with one :class:`SegmentSpec` per label in ``self.lastSegments``."""
        result = self.workflow.propagate(cine, labels, segments, imageId, threshold)
        values = set(np.unique(result.labels).tolist()) | {s.value for s in segments}
        self.lastResult = result
        self.lastSegments = result_segments(values, result.label_names, segments)
        return result

    def nextFlaggedFrame(self, currentFrame):
        if self.lastResult is None:
            raise WorkflowError("Propagate first")
        return next_flagged(self.lastResult.flagged, currentFrame, self.lastResult.num_frames)

    def submitArrays(self, cine, labels, segments, imageId=None):
        return self.workflow.submit(cine, labels, segments, imageId)

    # -- nodes ---------------------------------------------------------------------------------
    def loadStudy(self, imageId, serverPath=None):
        """Show a datastore study (from the server's path when this machine sees it, else downloaded)."""
        path = serverPath if serverPath and os.path.isfile(serverPath) else str(self.workflow.download_study(imageId))
        node = slicer.util.loadVolume(path, properties={"name": imageId})
        nodes.set_image_id(node, imageId)
        return node

    def prepareCine(self, cineNode):
        """The volume to paint on and its segmentation (created on first use); shows the cine."""
        volume = nodes.frames_volume(cineNode, nodes.cine_from_node(cineNode))
        segmentation = nodes.segmentation_for(volume)
        nodes.show_cine(volume)
        return volume, segmentation

    def _read(self, cineNode, segmentationNode):
        if segmentationNode is None:
            raise WorkflowError("Choose or create a segmentation and paint in it")
        cine, volume = self._frames(cineNode)
        known = {**self.workflow.known_labels, **{s.name: s.value for s in self.lastSegments}}
        labels, specs = nodes.labels_from_segmentation(segmentationNode, volume, known)
        return cine, volume, labels, specs

    def propagate(self, cineNode, segmentationNode, threshold=0.5):
        cine, volume, labels, specs = self._read(cineNode, segmentationNode)
        result = self.propagateArrays(cine, labels, specs, nodes.image_id_of(cineNode), threshold)
        nodes.show_labels(segmentationNode, volume, result.labels, self.lastSegments)
        if nodes.is_sequence(cineNode):
            nodes.show_sequence_labels(cineNode, cine, result.labels, self.lastSegments)
        return result

    def submit(self, cineNode, segmentationNode):
        cine, volume, labels, specs = self._read(cineNode, segmentationNode)
        imageId = self.submitArrays(cine, labels, specs, nodes.image_id_of(cineNode))
        for node in (cineNode, volume):
            nodes.set_image_id(node, imageId)
        return imageId

    def _frames(self, cineNode):
        cine = nodes.cine_from_node(cineNode)
        return cine, nodes.frames_volume(cineNode, cine)

    def currentFrame(self, cineNode):
        cine, volume = self._frames(cineNode)
        return nodes.current_frame(cineNode, volume, cine.num_frames)

    def goToFrame(self, cineNode, frame):
        cine, volume = self._frames(cineNode)
        nodes.go_to_frame(cineNode, volume, cine, frame)

    def confirmCurrentFrame(self, cineNode):
        cine, volume = self._frames(cineNode)
        frame = nodes.current_frame(cineNode, volume, cine.num_frames)
        self.workflow.confirm_frame(cine, frame)
        return frame


class CinePropTest(ScriptedLoadableModuleTest):
    """Runs inside Slicer: node ⇄ array round trips on a tiny synthetic cine (no server needed)."""

    def setUp(self):
        slicer.mrmlScene.Clear(0)

    def runTest(self):
        self.setUp()
        self.test_volume_and_segmentation_round_trip()

    def test_volume_and_segmentation_round_trip(self):
        frames = np.zeros((6, 40, 32), dtype=np.float32)  # K×J×I: 6 frames of 32×40 (I×J)
        frames[:, 10:20, 5:15] = 1.0
        grid = np.array([[0.8, 0, 0, -10], [0, 0.9, 0, 5], [0, 0, 2.0, 30], [0, 0, 0, 1]])
        volume = slicer.util.addVolumeFromArray(frames, ijkToRAS=grid, name="synthetic cine")
        logic = CinePropLogic()
        cine = nodes.cine_from_node(volume)
        self.assertEqual(cine.frames.shape, (32, 40, 6))
        np.testing.assert_allclose(cine.ijk_to_ras, grid)
        _, segmentation = logic.prepareCine(volume)
        labels = np.zeros(cine.label_shape, dtype=np.uint8)
        labels[5:15, 10:20, 0] = 1
        labels[6:9, 11:14, 3] = 2
        specs = logic.segmentsFor(["LV", "RV"])
        nodes.show_labels(segmentation, volume, labels, specs)
        back, backSpecs = nodes.labels_from_segmentation(segmentation, volume, {s.name: s.value for s in specs})
        np.testing.assert_array_equal(back, labels)
        self.assertEqual([s.name for s in backSpecs], ["LV", "RV"])
        self.delayDisplay("CineProp round trips passed")
