"""CineProp: few-shot segmentation of cines in 3D Slicer through a cineprop MONAI Label server.

Module → Widget (this file: buttons → background tasks → logic → panel) → Logic
(``CinePropLib.slicerlogic``: nodes ⇄ arrays) → ``CinePropLib`` (REST client, conversions, support
bookkeeping, task runner; no Slicer needed, tested with pytest). The parameter node is tested with
Slicer's own ``parameterNodeWrapper`` (``Testing/Python/test_slicer_parameter_node.py``).
"""

from typing import Annotated, Union

import numpy as np
import qt
import slicer
import vtk
from slicer import vtkMRMLScalarVolumeNode, vtkMRMLSegmentationNode, vtkMRMLSequenceNode
from slicer.parameterNodeWrapper import WithinRange, parameterNodeWrapper
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleTest,
    ScriptedLoadableModuleWidget,
)
from slicer.util import VTKObservationMixin

from CinePropLib import nodes, panel, sequences
from CinePropLib.client import DEFAULT_URL, remember_url
from CinePropLib.workflow import IMAGE_TRAIN_TASK, RELEARN_TASK, WorkflowError, describe_error
from CinePropLib.slicerlogic import CineNodesLogic
from CinePropLib.runner import TaskRunnerMixin, guarded as _guarded
from CinePropLib.tasks import BackgroundTask


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
    # The None is necessary: a fresh node starts empty, and the wrapper's Union serializer accepts a value
    # only when one member type does (a plain node type accepts None by itself).
    cine: Union[vtkMRMLScalarVolumeNode, vtkMRMLSequenceNode, None]
    segmentation: vtkMRMLSegmentationNode
    flagThreshold: Annotated[float, WithinRange(0.0, 1.0)] = 0.5


class CinePropWidget(ScriptedLoadableModuleWidget, VTKObservationMixin, TaskRunnerMixin):
    def __init__(self, parent=None):
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None
        self._plotNodes = {}
        self._task = None
        self._trainingPoll = None
        self._watched = None
        self._unsubmitted = False
        self._layoutBeforeEnter = None

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
        self._settings = qt.QSettings()
        self.ui.serverUrlLineEdit.setCompleter(qt.QCompleter(self._recentUrls()))
        self._trainingTimer = qt.QTimer()
        self._trainingTimer.setInterval(1000)
        self._trainingTimer.connect("timeout()", self.onTrainingTimer)
        self.initTasks()

        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        for button, handler in (("connect", self.onConnect), ("refreshStudies", self.onRefreshStudies),
                                ("loadStudy", self.onLoadStudy), ("nextStudy", self.onNextStudy),
                                ("openFile", self.onOpenFile),
                                ("propagate", self.onPropagate), ("nextFlagged", self.onNextFlagged),
                                ("confirmFrame", self.onConfirmFrame), ("submit", self.onSubmit),
                                ("relearn", self.onRelearn), ("train", self.onTrain),
                                ("stopTraining", self.onStopTraining), ("cancelTask", self.onCancelTask)):
            getattr(self.ui, f"{button}Button").connect("clicked(bool)", handler)
        self.ui.studyList.connect("itemDoubleClicked(QListWidgetItem*)", self.onLoadStudy)
        self.ui.inputSelector.connect("currentNodeChanged(vtkMRMLNode*)", self.onCineChanged)
        self.ui.segmentationSelector.connect("currentNodeChanged(vtkMRMLNode*)", self.onSegmentationChanged)
        self.ui.confidenceTable.connect("cellDoubleClicked(int,int)", self.onConfidenceRow)
        self.ui.slicePositionSpinBox.connect("valueChanged(int)",
                                             lambda _: self.onCineChanged(self.ui.inputSelector.currentNode()))
        self.initializeParameterNode()
        recent = self._recentUrls()          # application settings: the last server, for every new scene
        if recent and self._parameterNode.serverUrl == DEFAULT_URL:
            self._parameterNode.serverUrl = recent[0]
        self.ui.verifyTlsCheckBox.checked = slicer.util.toBool(self._settings.value("CineProp/verifyTls", True))
        self._updateButtons()

    def cleanup(self):
        self._trainingTimer.stop()
        self.stopTasks()
        self.removeObservers()

    def enter(self):
        self.initializeParameterNode()
        # The Segment Editor's keys (z/y undo/redo, effect shortcuts), as Slicer's Segment Editor module does
        self.ui.embeddedSegmentEditorWidget.installKeyboardShortcuts()
        self._layoutBeforeEnter = slicer.app.layoutManager().layout

    def exit(self):
        self.ui.embeddedSegmentEditorWidget.uninstallKeyboardShortcuts()
        if self._layoutBeforeEnter is not None:
            slicer.app.layoutManager().setLayout(self._layoutBeforeEnter)
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self._parameterNodeGuiTag = None

    def onSceneStartClose(self, caller, event):
        self.setParameterNode(None)

    def onSceneEndClose(self, caller, event):
        self._plotNodes = {}   # the closed scene took the plot nodes; the next result makes new ones
        self.logic.forgetCines()
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
    def _updateButtons(self):
        panel.update_buttons(self.ui, self.ui.inputSelector.currentNode() is not None, self.logic.lastResult,
                             busy=self._task is not None)

    def _recentUrls(self):
        stored = self._settings.value("CineProp/recentUrls") or []
        return [str(u) for u in ([stored] if isinstance(stored, str) else stored) if u]  # 1 item reads as a str

    # -- handlers ------------------------------------------------------------------------------
    @_guarded("Connecting")
    def onConnect(self):
        url, user, password = self.ui.serverUrlLineEdit.text, self.ui.userLineEdit.text, self.ui.passwordLineEdit.text
        verify = self.ui.verifyTlsCheckBox.checked

        def connected(result):
            status, studies = result
            self.ui.connectionStatusLabel.text = status
            self.ui.passwordLineEdit.text = ""   # the token is kept, never the password
            self._settings.setValue("CineProp/recentUrls", remember_url(self._recentUrls(), url))
            self._settings.setValue("CineProp/verifyTls", verify)
            self.ui.serverUrlLineEdit.setCompleter(qt.QCompleter(self._recentUrls()))
            panel.show_studies(self.ui, studies, qt)
            self._status("Connected. Load a study, or choose a cine loaded in Slicer.")

        self._runTask("Connecting", lambda ctx: (self.logic.connect(url, user, password, verify),
                                                 self.logic.studies()), connected)

    @_guarded("Listing studies")
    def onRefreshStudies(self):
        self._runTask("Listing studies", lambda ctx: self.logic.studies(),
                      lambda studies: panel.show_studies(self.ui, studies, qt))

    @_guarded("Loading the study")
    def onLoadStudy(self):
        imageId = panel.selected_study(self.ui, qt)
        if imageId is None:
            raise WorkflowError("Select a study in the list first (press Connect to list them)")
        self._openStudy(imageId)

    @_guarded("Opening the cine file")
    def onOpenFile(self):
        path = qt.QFileDialog.getOpenFileName(None, "Open a cine", "", "Cines (*.nii *.nii.gz *.nrrd *.mha)")
        if path:
            node = self.logic.loadCineFile(path, sliceIndex=self.ui.slicePositionSpinBox.value)
            self.ui.inputSelector.setCurrentNode(node)

    @_guarded("Asking for the next study")
    def onNextStudy(self):
        if self._unsubmitted and not slicer.util.confirmYesNoDisplay(
                "The current study has edits or a propagation that were not submitted. Leave it anyway?"):
            return
        self._runTask("Asking for the next study", lambda ctx: self.logic.nextStudy(), self._openNext)

    def _openNext(self, study):
        if study is None:
            self._status("Every study has an approved label: nothing left to annotate.")
            return
        self.logic.closeStudy(self.ui.inputSelector.currentNode())
        self._openStudy(study.id, study.info.get("path"))

    def _openStudy(self, imageId, serverPath=None):
        def loaded(path):
            node = self.logic.loadStudy(imageId, path, self.ui.slicePositionSpinBox.value)
            self.ui.inputSelector.setCurrentNode(node)
            self._unsubmitted = False
            self._status(f"Study {imageId} loaded. Paint the structure on one or a few frames, then Propagate.")

        self._runTask(f"Downloading {imageId}", lambda ctx: self.logic.studyFile(imageId, serverPath), loaded)

    def onCineChanged(self, node):
        self.logic.lastResult = None
        panel.reset_result(self.ui)
        try:
            if node is not None:
                cine, volume, segmentation = self.logic.prepareCine(node, self.ui.slicePositionSpinBox.value)
                if cine is not node:
                    self.ui.inputSelector.setCurrentNode(cine)   # a proxy volume was picked: its whole Sequence
                    return
                self.ui.segmentationSelector.setCurrentNode(segmentation)
                self.ui.embeddedSegmentEditorWidget.setSourceVolumeNode(volume)
                self._watchFrames(node, segmentation)
                panel.show_cine_notes(self.ui, nodes.image_id_of(node), nodes.is_colour(node))
            else:
                panel.show_cine_notes(self.ui, None, False, selected=False)
        except Exception as exc:  # noqa: BLE001
            self._showError("Preparing the cine", exc)
        self._updateButtons()

    def _watchFrames(self, cineNode, segmentation):
        """For a Sequence: every frame shown offers the segments made on other frames."""
        self.removeObservers(self._onFrameShown)
        self.removeObservers(self._onSegmentAdded)
        self._watched = segmentation
        if nodes.is_sequence(cineNode):
            self.addObserver(sequences.browser_of(cineNode), vtk.vtkCommand.ModifiedEvent, self._onFrameShown)
            self.addObserver(segmentation, slicer.vtkSegmentation.SegmentAdded, self._onSegmentAdded)

    def _onFrameShown(self, caller, event):
        self.logic.frameShown(self._watched)

    def _onSegmentAdded(self, caller, event):
        self.logic.rememberSegments(self._watched)

    def onSegmentationChanged(self, node):
        self.ui.embeddedSegmentEditorWidget.setSegmentationNode(node)
        if node is not None:
            self.addObserver(node, slicer.vtkSegmentation.SegmentModified, self._onPainted)

    def _onPainted(self, caller, event):
        self._unsubmitted = True

    @_guarded("Propagating")
    def onPropagate(self):
        cineNode, segmentationNode = self.ui.inputSelector.currentNode(), self.ui.segmentationSelector.currentNode()
        if not nodes.image_id_of(cineNode) and not slicer.util.confirmYesNoDisplay(
                "This cine is not on the server: it will be uploaded to it for this session. Continue?",
                dontShowAgainSettingsKey="CineProp/DontAskBeforeUpload"):
            return
        cine, labels, specs = self.logic.readPainting(cineNode, segmentationNode)   # GUI thread: nodes → arrays
        threshold, imageId = self.ui.flagThresholdSpinBox.value, nodes.image_id_of(cineNode)

        def propagated(result):
            self.logic.acceptResult(cine, result, specs)
            self.ui.embeddedSegmentEditorWidget.saveStateForUndo()   # Undo (z) brings the painting back
            self.logic.showResult(cineNode, segmentationNode, cine, result)
            self._unsubmitted = True
            panel.show_result(self.ui, result, qt)
            nodes.plot_confidence(result, self._plotNodes)
            self._updateButtons()
            note = result.details.get("geometry_note")
            self._status(f"Note: {note}." if note else "Review the flagged frames, correct them, then Propagate "
                         "again or Submit.", error=bool(note))

        self._runTask("Propagating", lambda ctx: self.logic.propagate(
            cine, labels, specs, imageId, threshold), propagated)

    @_guarded("Finding the next flagged frame")
    def onNextFlagged(self):
        cine = self.ui.inputSelector.currentNode()
        frame = self.logic.nextFlaggedFrame(self.logic.currentFrame(cine))
        if frame is None:
            self._status("No flagged frames.")
            return
        self.logic.goToFrame(cine, frame)
        self._status(f"Frame {frame}: confidence {self.logic.frameConfidence(frame)}")

    def onConfidenceRow(self, row, column):
        try:
            self.logic.goToFrame(self.ui.inputSelector.currentNode(), row)
        except Exception as exc:  # noqa: BLE001
            self._showError("Going to the frame", exc)

    @_guarded("Marking the frame")
    def onConfirmFrame(self):
        frame = self.logic.confirmCurrentFrame(self.ui.inputSelector.currentNode())
        self._status(f"Frame {frame} will be support at the next Propagate.")

    @_guarded("Submitting the label")
    def onSubmit(self):
        cineNode = self.ui.inputSelector.currentNode()
        cine, labels, specs = self.logic.readPainting(cineNode, self.ui.segmentationSelector.currentNode())

        def submitted(result):
            imageId, studies = result
            if nodes.slice_positions(cineNode) == 1:   # a stack's positions are submitted as studies of their own
                nodes.set_image_id(cineNode, imageId)
            self._unsubmitted = False
            panel.show_studies(self.ui, studies, qt)
            self._status(f"Saved as the final label of {imageId}. Train, or go to the Next study.")

        logic = self.logic
        self._runTask("Submitting the label", lambda ctx: (
            logic.submit(cine, labels, specs, nodes.image_id_of(cineNode)), logic.studies()), submitted)

    @_guarded("Starting relearning")
    def onRelearn(self):
        self._startTraining(RELEARN_TASK)

    @_guarded("Starting training")
    def onTrain(self):
        self._startTraining(IMAGE_TRAIN_TASK)

    def _startTraining(self, task):
        def started(progress):
            panel.show_training(self.ui, progress)
            self._trainingTimer.start()
            self._status(f"{task} started on the server.")

        self._runTask(f"Starting {task}", lambda ctx: self.logic.startTraining(task), started)

    @_guarded("Stopping training")
    def onStopTraining(self):
        if slicer.util.confirmYesNoDisplay("Stop the training running on the server? Its progress is lost."):
            self._runTask("Stopping training", lambda ctx: self.logic.stopTraining(),
                          lambda _: self._status("Training stopped."))

    def onTrainingTimer(self):
        """Poll the server's train status off the GUI thread (one request at a time)."""
        if self._trainingPoll is not None and self._trainingPoll.poll():
            return
        if self._trainingPoll is None:
            self._trainingPoll = BackgroundTask(lambda ctx: self.logic.trainingProgress(),
                                                self._showTraining, lambda exc: self._showTraining(None, exc))
            return
        self._trainingPoll = None

    def _showTraining(self, progress, error=None):
        running = panel.show_training(self.ui, progress, describe_error(error) if error else "")
        if not running:
            self._trainingTimer.stop()


class CinePropLogic(CineNodesLogic):
    """The module's logic (``CinePropLib.slicerlogic``) with its typed parameter node."""

    def getParameterNode(self):
        return CinePropParameterNode(super().getParameterNode())


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
        _, _, segmentation = logic.prepareCine(volume)
        labels = np.zeros(cine.label_shape, dtype=np.uint8)
        labels[5:15, 10:20, 0] = 1
        labels[6:9, 11:14, 3] = 2
        specs = logic.segmentsFor(["LV", "RV"])
        nodes.show_labels(volume, segmentation, cine, labels, specs)
        back, backSpecs = nodes.labels_from_segmentation(segmentation, volume, {s.name: s.value for s in specs})
        np.testing.assert_array_equal(back, labels)
        self.assertEqual([s.name for s in backSpecs], ["LV", "RV"])
        self.delayDisplay("CineProp round trips passed")
