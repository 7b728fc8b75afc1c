"""Runs INSIDE 3D Slicer (``slicer_add_python_unittest``; not collected by pytest): Sequence input.

A Sequence of 2D frames → cine arrays → result stored as a segmentation sequence in the cine's
browser, and frame navigation through the browser. The MRML adapters in ``CinePropLib/nodes.py``
cannot run outside Slicer; this is where they are checked.
"""

import unittest

import numpy as np
import slicer

from CinePropLib import nodes
from CinePropLib.segments import SegmentSpec


class CinePropSequenceTest(unittest.TestCase):
    def setUp(self):
        slicer.mrmlScene.Clear(0)

    def runTest(self):
        self.setUp()
        self.test_sequence_round_trip()

    def test_sequence_round_trip(self):
        count = 5
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

        cine = nodes.cine_from_node(sequence)
        self.assertEqual(cine.frames.shape, (20, 24, count))                          # I × J × T
        np.testing.assert_allclose(cine.frames[..., 3], frames[3].T)
        np.testing.assert_allclose(cine.ijk_to_ras, grid)

        volume = nodes.frames_volume(sequence, cine)
        self.assertEqual(slicer.util.arrayFromVolume(volume).shape, (count, 24, 20))
        labels = np.zeros(cine.label_shape, dtype=np.uint8)
        labels[2:6, 3:9, 1] = 2
        result = nodes.show_sequence_labels(sequence, cine, labels, [SegmentSpec("LV", (1.0, 0.0, 0.0), 2)])
        self.assertEqual(result.GetNumberOfDataNodes(), count)
        self.assertTrue(result.GetNthDataNode(1).GetSegmentation().GetSegmentIdBySegmentName("LV"))
        self.assertTrue(browser.IsSynchronizedSequenceNode(result.GetID(), True))

        nodes.go_to_frame(sequence, volume, cine, 3)
        self.assertEqual(browser.GetSelectedItemNumber(), 3)
