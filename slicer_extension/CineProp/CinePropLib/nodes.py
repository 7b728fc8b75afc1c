"""MRML nodes ⇄ the arrays of :mod:`CinePropLib.conversions`. The only part that needs 3D Slicer.

Every function here is a thin adapter: read a node into numpy (``slicer.util.arrayFromVolume``
gives ``K×J×I``), call the pure functions, write numpy back into nodes. The maths lives in the
pure modules and is tested without Slicer; this file is exercised by ``CinePropTest`` inside
Slicer.

A Sequence of 2D frames is painted on a 3D "frames" volume built from it (frame ``t`` on slice
``k = t``) because every frame of a segmentation sequence would otherwise need its own segment
list; results are shown on that volume and, for playback, as a segmentation sequence in the
cine's sequence browser (each frame on its own geometry).
"""

import numpy as np
import slicer
import vtk

from CinePropLib.conversions import (
    CineArrays,
    ConversionError,
    cine_from_frames,
    cine_from_volume,
    frame_at_ras,
    frame_center_ras,
    ijk_to_kji,
    labels_to_frames,
    labels_from_volume,
)
from CinePropLib.segments import SegmentSpec, assign_values, compose_labels, remap_for_import

#: Node attribute holding the datastore id of a cine loaded from the server.
IMAGE_ID_ATTRIBUTE = "CineProp.ImageId"
#: Attribute on a Sequence naming its 3D frames volume / its result segmentation sequence.
FRAMES_VOLUME_ATTRIBUTE = "CineProp.FramesVolumeID"
SEGMENTATION_SEQUENCE_ATTRIBUTE = "CineProp.SegmentationSequenceID"
#: Attribute on the painted volume naming its segmentation.
SEGMENTATION_ATTRIBUTE = "CineProp.SegmentationID"


def is_sequence(node) -> bool:
    return node is not None and node.IsA("vtkMRMLSequenceNode")


def matrix_of(volume_node) -> np.ndarray:
    """A volume node's ``IJKToRAS`` as a 4×4 numpy array."""
    matrix = vtk.vtkMatrix4x4()
    volume_node.GetIJKToRASMatrix(matrix)
    return slicer.util.arrayFromVTKMatrix(matrix)


def image_id_of(node):
    """The datastore id of a cine loaded from the server, else ``None``."""
    return (node.GetAttribute(IMAGE_ID_ATTRIBUTE) or None) if node is not None else None


def set_image_id(node, image_id: str) -> None:
    node.SetAttribute(IMAGE_ID_ATTRIBUTE, image_id)


def _components(volume_node) -> bool:
    image = volume_node.GetImageData()
    return image is not None and image.GetNumberOfScalarComponents() > 1


def cine_from_node(node) -> CineArrays:
    """A 3D scalar volume (frames on K) or a Sequence of 2D volumes → :class:`CineArrays`."""
    if node is None:
        raise ConversionError("Choose a cine: a volume with frames on its last axis, or a Sequence of 2D frames")
    if is_sequence(node):
        frames, grids = [], []
        for i in range(node.GetNumberOfDataNodes()):
            data = node.GetNthDataNode(i)
            if data is None or not data.IsA("vtkMRMLScalarVolumeNode"):
                raise ConversionError(f"{node.GetName()}: item {i} is not an image; choose a Sequence of 2D frames")
            frames.append(slicer.util.arrayFromVolume(data))
            grids.append(matrix_of(data))
        components = node.GetNumberOfDataNodes() > 0 and _components(node.GetNthDataNode(0))
        return cine_from_frames(frames, grids, node.GetName(), components)
    if node.GetImageData() is None:
        raise ConversionError(f"{node.GetName()}: the volume has no image data")
    return cine_from_volume(slicer.util.arrayFromVolume(node), matrix_of(node), node.GetName(), _components(node))


def frames_volume(node, cine: CineArrays):
    """The 3D volume to paint on: the node itself, or (Sequence) a volume built from its frames."""
    if not is_sequence(node):
        return node
    volume = slicer.mrmlScene.GetNodeByID(node.GetAttribute(FRAMES_VOLUME_ATTRIBUTE) or "")
    if volume is None:
        volume = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", f"{node.GetName()} frames")
        volume.CreateDefaultDisplayNodes()
        node.SetAttribute(FRAMES_VOLUME_ATTRIBUTE, volume.GetID())
    volume.SetIJKToRASMatrix(slicer.util.vtkMatrixFromArray(cine.ijk_to_ras))
    slicer.util.updateVolumeFromArray(volume, ijk_to_kji(cine.frames))
    if image_id_of(node):
        set_image_id(volume, image_id_of(node))
    return volume


def segmentation_for(volume):
    """The segmentation painted on ``volume`` (created on first use), referenced to its grid."""
    segmentation = slicer.mrmlScene.GetNodeByID(volume.GetAttribute(SEGMENTATION_ATTRIBUTE) or "")
    if segmentation is None:
        segmentation = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentationNode", f"{volume.GetName()} segmentation")
        segmentation.CreateDefaultDisplayNodes()
        volume.SetAttribute(SEGMENTATION_ATTRIBUTE, segmentation.GetID())
    segmentation.SetReferenceImageGeometryParameterFromVolumeNode(volume)
    return segmentation


def segment_specs(segmentation, known: dict) -> list:
    """The segmentation's segments as :class:`SegmentSpec` (values from the server's ``known`` names)."""
    seg = segmentation.GetSegmentation()
    ids = [seg.GetNthSegmentID(i) for i in range(seg.GetNumberOfSegments())]
    names = [seg.GetSegment(i).GetName() for i in ids]
    values = assign_values(names, known)
    return [SegmentSpec(n, tuple(float(c) for c in seg.GetSegment(i).GetColor()), values[n]) for i, n in zip(ids, names)]


def labels_from_segmentation(segmentation, volume, known: dict):
    """Export every segment on ``volume``'s grid → (``I×J×T`` uint8 labels, segment specs)."""
    specs = segment_specs(segmentation, known)
    seg = segmentation.GetSegmentation()
    shape = slicer.util.arrayFromVolume(volume).shape[:3]
    masks = []
    for spec in specs:
        segment_id = seg.GetSegmentIdBySegmentName(spec.name)
        masks.append((spec.value, slicer.util.arrayFromSegmentBinaryLabelmap(segmentation, segment_id, volume)))
    return labels_from_volume(compose_labels(masks, shape)), specs


def _import(segmentation, labels_kji: np.ndarray, grid: np.ndarray, specs) -> None:
    """Overwrite ``specs``' segments in ``segmentation`` from a label array on ``grid`` (``K×J×I``)."""
    seg = segmentation.GetSegmentation()
    ids = vtk.vtkStringArray()
    for spec in specs:
        segment_id = seg.GetSegmentIdBySegmentName(spec.name) or seg.AddEmptySegment("", spec.name, list(spec.color))
        seg.GetSegment(segment_id).SetColor(*spec.color)
        ids.InsertNextValue(segment_id)
    labelmap = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "__cineprop_temp__")
    try:
        labelmap.SetIJKToRASMatrix(slicer.util.vtkMatrixFromArray(grid))
        slicer.util.updateVolumeFromArray(labelmap, remap_for_import(labels_kji, specs))
        if not slicer.modules.segmentations.logic().ImportLabelmapToSegmentationNode(labelmap, segmentation, ids):
            raise ConversionError("Slicer could not import the result into the segmentation")
    finally:
        slicer.mrmlScene.RemoveNode(labelmap)


def show_labels(segmentation, volume, labels: np.ndarray, specs) -> None:
    """Put ``I×J×T`` ``labels`` into ``segmentation`` (one segment per spec, names/colours kept)."""
    _import(segmentation, ijk_to_kji(labels), matrix_of(volume), specs)


def show_sequence_labels(sequence, cine: CineArrays, labels: np.ndarray, specs):
    """Store ``labels`` as a segmentation sequence synchronised with the cine ``sequence``; returns it."""
    browser = slicer.modules.sequences.logic().GetFirstBrowserNodeForSequenceNode(sequence)
    result = slicer.mrmlScene.GetNodeByID(sequence.GetAttribute(SEGMENTATION_SEQUENCE_ATTRIBUTE) or "")
    if result is None:
        result = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSequenceNode", f"{sequence.GetName()} segmentation")
        sequence.SetAttribute(SEGMENTATION_SEQUENCE_ATTRIBUTE, result.GetID())
    result.RemoveAllDataNodes()
    result.SetIndexName(sequence.GetIndexName())
    result.SetIndexUnit(sequence.GetIndexUnit())
    frame = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentationNode", "__cineprop_frame__")
    try:
        for t, frame_kji in enumerate(labels_to_frames(labels)):
            frame.GetSegmentation().RemoveAllSegments()
            _import(frame, frame_kji, cine.frame_grids[t], specs)
            result.SetDataNodeAtValue(frame, sequence.GetNthIndexValue(t))
    finally:
        slicer.mrmlScene.RemoveNode(frame)
    if browser is not None and not browser.IsSynchronizedSequenceNode(result.GetID(), True):
        browser.AddSynchronizedSequenceNode(result)
        browser.SetSaveChanges(result, False)
    if browser is not None:
        slicer.modules.sequences.logic().UpdateProxyNodesFromSequences(browser)
        proxy = browser.GetProxyNode(result)
        if proxy is not None:
            proxy.CreateDefaultDisplayNodes()
    return result


def show_cine(volume) -> None:
    """Show ``volume`` in the slice views, the red view on its frame (IJ) plane."""
    slicer.util.setSliceViewerLayers(background=volume, fit=True)
    red = slicer.app.layoutManager().sliceWidget("Red")
    if red is not None:
        red.mrmlSliceNode().RotateToVolumePlane(volume)
        red.fitSliceToBackground()


def current_frame(node, volume, num_frames: int) -> int:
    """The frame the user is looking at: the Sequence browser's item, else the red view's K index."""
    if is_sequence(node):
        browser = slicer.modules.sequences.logic().GetFirstBrowserNodeForSequenceNode(node)
        if browser is not None:
            return int(browser.GetSelectedItemNumber())
    red = slicer.app.layoutManager().sliceWidget("Red")
    if red is None:
        return 0
    slice_to_ras = red.mrmlSliceNode().GetSliceToRAS()
    center = [slice_to_ras.GetElement(r, 3) for r in range(3)]
    return frame_at_ras(matrix_of(volume), center, num_frames)


def go_to_frame(node, volume, cine: CineArrays, frame: int) -> None:
    """Show frame ``frame``: move the slice views there (and the Sequence browser, for a Sequence)."""
    if is_sequence(node):
        browser = slicer.modules.sequences.logic().GetFirstBrowserNodeForSequenceNode(node)
        if browser is not None:
            browser.SetSelectedItemNumber(int(frame))
    x, y, z = frame_center_ras(matrix_of(volume), cine.label_shape, frame)
    slicer.modules.markups.logic().JumpSlicesToLocation(x, y, z, False, -1)


def plot_confidence(result, plot_nodes: dict) -> None:
    """Plot confidence per frame in Slicer's plot view (nodes reused via ``plot_nodes``)."""
    if result.confidence is None:
        return
    table = np.column_stack([np.arange(result.num_frames, dtype=np.float32), result.confidence])
    first = not plot_nodes  # switch the layout to show the plot once; later calls only update it
    slicer.util.plot(table, xColumnIndex=0, columnNames=["frame", "confidence"], title="cineprop confidence",
                     show=first, nodes=plot_nodes)
