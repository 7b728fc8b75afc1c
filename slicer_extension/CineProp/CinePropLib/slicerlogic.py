"""The module logic: MRML nodes ⇄ the arrays of :class:`CinePropLib.workflow.CineWorkflow`. Needs 3D Slicer.

Split for the GUI thread: ``readPainting`` (nodes → arrays) and ``showResult`` (arrays → nodes)
touch MRML and run on the GUI thread; ``propagateArrays`` and the workflow's calls are network
only and run in a :class:`CinePropLib.tasks.BackgroundTask`. A cine's arrays are read once when it
is chosen (``prepareCine``) and kept, so clicks that only need the current frame (Next flagged,
Frame is correct) read and write nothing.
"""

import os

import numpy as np
import slicer
from slicer.ScriptedLoadableModule import ScriptedLoadableModuleLogic

from CinePropLib import nodes, sequences
from CinePropLib.conversions import cine_from_frames, cine_from_volume
from CinePropLib.workflow import CineWorkflow, WorkflowError
from CinePropLib.segments import SegmentSpec, assign_values, palette_color, result_segments
from CinePropLib.support import next_flagged
from CinePropLib.volumefiles import file_positions, read_cine_file


class CineNodesLogic(ScriptedLoadableModuleLogic):
    """Nodes ⇄ arrays around :class:`CineWorkflow` (cines are ``I×J×T``, Slicer arrays ``K×J×I``)."""

    def __init__(self):
        ScriptedLoadableModuleLogic.__init__(self)
        self.workflow = CineWorkflow()
        self.lastResult = None
        self.lastSegments = []
        self._cines = {}        # node ID → (slice position, cine arrays): read once per choice
        self._segmentTemplate = {}   # a Sequence's segments {name: colour}, made on any frame

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
        values = assign_values(list(names), self._known())
        colors = colors or [palette_color(values[n]) for n in names]
        return [SegmentSpec(n, tuple(c), values[n]) for n, c in zip(names, colors)]

    def _known(self):
        return {**self.workflow.known_labels, **{s.name: s.value for s in self.lastSegments}}

    def supportFrames(self, cine, labels):
        return self.workflow.support_frames(cine, labels)

    # -- server (network only: the widget calls these from a BackgroundTask) ---------------------
    def connect(self, url, username="", password="", verifyTls=True):
        """Log in (when the server asks for it) and remember the server; returns its description."""
        return self.workflow.connect(url, username, password, verifyTls)

    def studies(self):
        return self.workflow.studies()

    def nextStudy(self):
        """The next study the server's active-learning strategy proposes (``None``: every study is done)."""
        return self.workflow.next_study()

    def propagate(self, cine, labels, segments, imageId=None, threshold=0.5, params=None):
        """The server's propagation of the painted ``labels``; it becomes the last result only through
        :meth:`acceptResult` (on the GUI thread, once shown), so a cancelled run leaves no trace."""
        return self.workflow.propagate(cine, labels, segments, imageId, threshold, params, record=False)

    def propagateArrays(self, cine, labels, segments, imageId=None, threshold=0.5, params=None):
        """Propagate and accept the result (tests, scripts). The panel splits the two: see :meth:`acceptResult`."""
        return self.acceptResult(cine, self.propagate(cine, labels, segments, imageId, threshold, params), segments)

    def submit(self, cine, labels, segments, imageId=None):
        """Save the labels as the study's final label; returns the study's image id."""
        return self.workflow.submit(cine, labels, segments, imageId)

    def startTraining(self, task):
        return self.workflow.start_training(task)

    def stopTraining(self):
        self.workflow.stop_training()

    def trainingProgress(self):
        return self.workflow.training_progress()

    def acceptResult(self, cine, result, segments):
        """GUI thread, once the user is shown ``result``: it becomes the last result (a cancelled one never does)."""
        self.workflow.record(cine, result)
        values = set(np.unique(result.labels).tolist()) | {s.value for s in segments}
        self.lastResult = result
        self.lastSegments = result_segments(values, result.label_names, segments)
        return result

    def frameConfidence(self, frame):
        """The last result's confidence of ``frame`` as shown in the panel's table."""
        if self.lastResult is None:
            raise WorkflowError("Propagate first")
        return self.lastResult.rows()[frame][1]

    def nextFlaggedFrame(self, currentFrame):
        if self.lastResult is None:
            raise WorkflowError("Propagate first")
        return next_flagged(self.lastResult.flagged, currentFrame, self.lastResult.num_frames)

    # -- nodes ---------------------------------------------------------------------------------
    def studyFile(self, imageId, serverPath=None):
        """A study's file: the server's path when this machine sees it, else downloaded (off the GUI thread)."""
        return serverPath if serverPath and os.path.isfile(serverPath) else str(self.workflow.download_study(imageId))

    def loadCineFile(self, path, name=None, sliceIndex=0):
        """A cine file (3D ``I×J×T``, or 4D ``H×W×Z×T``: dcm2niix's ``H×W×1×T``, or position ``sliceIndex`` of
        a stack over time) as a frames volume with its geometry."""
        stacked = file_positions(path) > 1
        frames, grid = read_cine_file(path, sliceIndex if stacked else None)
        return self._framesVolume(frames, grid, name or os.path.basename(path).split(".")[0])

    def loadStudy(self, imageId, path, sliceIndex=0):
        """A server study (downloaded, or seen on disk) as a frames volume tagged with its id."""
        frames, grid = self.workflow.open_study_file(imageId, path, sliceIndex)
        node = self._framesVolume(frames, grid, imageId)
        nodes.set_image_id(node, imageId)
        return node

    @staticmethod
    def _framesVolume(frames, grid, name):
        """``I×J×T`` frames → a scalar volume node (frames on K)."""
        return slicer.util.addVolumeFromArray(np.ascontiguousarray(frames.transpose(2, 1, 0)), ijkToRAS=grid, name=name)

    def closeStudy(self, cineNode):
        """Remove a server study's nodes (cine, segmentation) before the next one; local data is left alone."""
        if cineNode is None or not nodes.image_id_of(cineNode):
            return
        for node in nodes.study_nodes(cineNode):
            slicer.mrmlScene.RemoveNode(node)
        self._cines.pop(cineNode.GetID(), None)

    def forgetCines(self):
        self._cines.clear()

    def prepareCine(self, node, sliceIndex=None):
        """``(cine node, volume shown, segmentation painted)``; a proxy volume gives its Sequence."""
        cineNode = nodes.resolve_cine(node)
        if cineNode is not node:
            return cineNode, None, None
        volume, segmentation = nodes.paint_target(cineNode)
        nodes.show_cine(volume)
        self._segmentTemplate = sequences.segment_list(segmentation)
        sliceIndex = sliceIndex if nodes.slice_positions(cineNode) > 1 else None
        self._cines[cineNode.GetID()] = (sliceIndex, nodes.cine_from_node(cineNode, sliceIndex))
        return cineNode, volume, segmentation

    def rememberSegments(self, segmentation):
        """A segment was added on the frame shown: every frame of the Sequence will get it."""
        self._segmentTemplate.update(sequences.segment_list(segmentation))

    def frameShown(self, segmentation):
        """The browser moved: the frame now shown gets the segments made on other frames."""
        sequences.ensure_segments(segmentation, self._segmentTemplate)

    def cine(self, cineNode):
        """The cine's arrays, read when it was chosen (read now if it was not)."""
        if cineNode is None:
            raise WorkflowError("Choose a cine first")
        if cineNode.GetID() not in self._cines:
            self._cines[cineNode.GetID()] = (None, nodes.cine_from_node(cineNode))
        return self._cines[cineNode.GetID()][1]

    def readPainting(self, cineNode, segmentationNode):
        """GUI thread: ``(cine, I×J×T labels, specs)`` from the painted segmentation."""
        if segmentationNode is None:
            raise WorkflowError("Choose or create a segmentation and paint in it")
        cine = self.cine(cineNode)
        sliceIndex = self._cines[cineNode.GetID()][0]
        labels, specs = nodes.read_labels(cineNode, segmentationNode, self._known(), sliceIndex)
        return cine, labels, specs

    def showResult(self, cineNode, segmentationNode, cine, result):
        """GUI thread: the result into the painted segmentation (every frame)."""
        nodes.show_labels(cineNode, segmentationNode, cine, result.labels, self.lastSegments)

    def currentFrame(self, cineNode):
        return nodes.current_frame(cineNode)

    def goToFrame(self, cineNode, frame):
        nodes.go_to_frame(cineNode, frame)

    def confirmCurrentFrame(self, cineNode):
        frame = nodes.current_frame(cineNode)
        self.workflow.confirm_frame(self.cine(cineNode), frame)
        return frame
