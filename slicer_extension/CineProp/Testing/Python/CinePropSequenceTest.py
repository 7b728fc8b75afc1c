"""Runs INSIDE 3D Slicer (``slicer_add_python_unittest``; not collected by pytest): the Sequence route.

A Sequence of 2D frames → cine arrays; its proxy volume stands for it; painting on the proxy of a
recorded segmentation sequence (save changes on) is kept per frame and read back as one label array;
a result goes into every frame's item; the current frame is the browser's item. The MRML adapters in
``CinePropLib/nodes.py`` and ``sequences.py`` cannot run outside Slicer; this is where they are checked.
"""

import unittest

import numpy as np
import slicer

from CinePropLib import nodes, sequences
from CinePropLib.segments import SegmentSpec


class CinePropSequenceTest(unittest.TestCase):
    def setUp(self):
        slicer.mrmlScene.Clear(0)

    def runTest(self):
        self.setUp()
        self.test_sequence_round_trip()

    def _sequence(self, count):
        frames = np.random.default_rng(0).random((count, 24, 20)).astype(np.float32)   # T × J × I
        grid = np.array([[0.7, 0, 0, 3.0], [0, 0.7, 0, -4.0], [0, 0, 1.0, 10.0], [0, 0, 0, 1]])
        sequence = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSequenceNode", "cine sequence")
        frame = slicer.util.addVolumeFromArray(frames[0][None], ijkToRAS=grid, name="frame")
        for t in range(count):
            slicer.util.updateVolumeFromArray(frame, frames[t][None])
            sequence.SetDataNodeAtValue(frame, str(t))
        slicer.mrmlScene.RemoveNode(frame)
        browser = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSequenceBrowserNode", "cine browser")
        browser.AddSynchronizedSequenceNode(sequence)
        slicer.modules.sequences.logic().UpdateProxyNodesFromSequences(browser)
        return frames, grid, sequence, browser

    def test_sequence_round_trip(self):
        count = 5
        frames, grid, sequence, browser = self._sequence(count)
        self.assertIs(nodes.resolve_cine(browser.GetProxyNode(sequence)), sequence)   # the proxy → its Sequence

        cine = nodes.cine_from_node(sequence)
        self.assertEqual(cine.frames.shape, (20, 24, count))                          # I × J × T
        np.testing.assert_allclose(cine.frames[..., 3], frames[3].T)
        np.testing.assert_allclose(cine.ijk_to_ras, grid)

        volume, segmentation = nodes.paint_target(sequence)
        self.assertIs(volume, browser.GetProxyNode(sequence))
        recorded = slicer.mrmlScene.GetNodeByID(sequence.GetAttribute(sequences.SEGMENTATION_SEQUENCE_ATTRIBUTE))
        self.assertEqual(recorded.GetNumberOfDataNodes(), count)
        self.assertTrue(browser.GetSaveChanges(recorded))

        labels = np.zeros(cine.label_shape, dtype=np.uint8)
        labels[2:6, 3:9, 1] = 2
        labels[4:8, 10:12, 3] = 2
        nodes.show_labels(sequence, segmentation, cine, labels, [SegmentSpec("LV", (1.0, 0.0, 0.0), 2)])
        back, specs = nodes.read_labels(sequence, segmentation, {"LV": 2})
        np.testing.assert_array_equal(back, labels)                                    # kept frame by frame
        self.assertEqual([(s.name, s.value) for s in specs], [("LV", 2)])

        nodes.go_to_frame(sequence, 3)
        self.assertEqual(browser.GetSelectedItemNumber(), 3)
        self.assertEqual(nodes.current_frame(sequence), 3)
