"""MRML nodes ⇄ the arrays of :mod:`CinePropLib.conversions`. The only part that needs 3D Slicer.

Every function here is a thin adapter: read a node into numpy (``slicer.util.arrayFromVolume``
gives ``K×J×I``), call the pure functions, write numpy back into nodes. The maths lives in the
pure modules and is tested without Slicer; this file is exercised by ``CinePropTest`` inside
Slicer.

Two routes, one notion of "current frame" each, both what the user sees in the Red view:

* a **volume** with frames on K (a NIfTI cine, a DICOM cine series, a server study): painted in a
  Red-only layout on the frame (IJ) plane; the current frame is the Red slice's K index.
* a **Sequence** of 2D frames (or its proxy volume, which the user naturally picks): painted on the
  proxy with a recorded segmentation sequence; the current frame is the browser's item
  (:mod:`CinePropLib.sequences`).
"""

import numpy as np
import slicer
import vtk

from CinePropLib import sequences
from CinePropLib.conversions import (
    CineArrays,
    ConversionError,
    cine_from_frames,
    cine_from_volume,
    frame_at_ras,
    frame_center_ras,
    ijk_to_kji,
    labels_from_volume,
)
from CinePropLib.segments import SegmentSpec, assign_values, compose_labels, remap_for_import

#: Node attribute holding the datastore id of a cine loaded from the server.
IMAGE_ID_ATTRIBUTE = "CineProp.ImageId"
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


def is_colour(node) -> bool:
    """Whether a cine's frames are colour (converted to grey for propagation)."""
    if is_sequence(node):
        return node.GetNumberOfDataNodes() > 0 and _components(node.GetNthDataNode(0))
    return _components(node)


def study_nodes(node) -> list:
    """A cine's own nodes (the cine, its segmentation / segmentation sequence), to close a study."""
    refs = [node.GetAttribute(SEGMENTATION_ATTRIBUTE), node.GetAttribute(sequences.SEGMENTATION_SEQUENCE_ATTRIBUTE)]
    found = [slicer.mrmlScene.GetNodeByID(r) for r in refs if r]
    return [n for n in found if n is not None] + [node]


def cine_from_node(node, slice_index=None) -> CineArrays:
    """A 3D scalar volume (frames on K) or a Sequence of 2D volumes → :class:`CineArrays`.

    ``slice_index`` picks one slice position of a Sequence of 3D frames (a DICOM cine series with
    several positions, e.g. a short-axis stack over time).
    """
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
        name = node.GetName() if slice_positions(node) == 1 else f"{node.GetName()}_z{slice_index}"
        return cine_from_frames(frames, grids, name, components, slice_index)
    if node.GetImageData() is None:
        raise ConversionError(f"{node.GetName()}: the volume has no image data")
    return cine_from_volume(slicer.util.arrayFromVolume(node), matrix_of(node), node.GetName(), _components(node))


def resolve_cine(node):
    """The cine a picked node stands for: a Sequence's proxy volume → its Sequence; anything else as is."""
    if node is not None and not is_sequence(node):
        return sequences.sequence_of_proxy(node) or node
    return node


def paint_target(node):
    """``(volume shown, segmentation painted)`` for a cine (see the module docstring for the two routes)."""
    if is_sequence(node):
        return sequences.proxy_volume(node), sequences.segmentation_proxy(node)
    segmentation = slicer.mrmlScene.GetNodeByID(node.GetAttribute(SEGMENTATION_ATTRIBUTE) or "")
    if segmentation is None:
        segmentation = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentationNode", f"{node.GetName()} segmentation")
        segmentation.CreateDefaultDisplayNodes()
        node.SetAttribute(SEGMENTATION_ATTRIBUTE, segmentation.GetID())
    segmentation.SetReferenceImageGeometryParameterFromVolumeNode(node)
    return node, segmentation


def slice_positions(node) -> int:
    """Slice positions per frame (several for a Sequence of stacks over time)."""
    return sequences.slice_positions(node) if is_sequence(node) else 1


def num_frames(node) -> int:
    """Frames of a cine without reading its voxels."""
    if is_sequence(node):
        return node.GetNumberOfDataNodes()
    return node.GetImageData().GetDimensions()[2]


def segment_specs(segmentation, known: dict) -> list:
    """The segmentation's segments as :class:`SegmentSpec` (values from the server's ``known`` names)."""
    seg = segmentation.GetSegmentation()
    ids = [seg.GetNthSegmentID(i) for i in range(seg.GetNumberOfSegments())]
    names = [seg.GetSegment(i).GetName() for i in ids]
    values = assign_values(names, known)
    return [SegmentSpec(n, tuple(float(c) for c in seg.GetSegment(i).GetColor()), values[n])
            for i, n in zip(ids, names)]


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


def read_labels(node, segmentation, known: dict, slice_index=None):
    """The user's painting → (``I×J×T`` uint8 labels, segment specs)."""
    if is_sequence(node):
        labels, values, colors = sequences.read_labels(node, known, slice_index)
        return labels, [SegmentSpec(n, colors[n], v) for n, v in values.items()]
    return labels_from_segmentation(segmentation, node, known)


def show_labels(node, segmentation, cine: CineArrays, labels: np.ndarray, specs) -> None:
    """Put ``I×J×T`` ``labels`` into the painted segmentation (every frame's item, for a Sequence)."""
    if is_sequence(node):
        sequences.write_labels(node, cine, labels, specs, _import)
    else:
        _import(segmentation, ijk_to_kji(labels), matrix_of(node), specs)


def show_cine(volume) -> None:
    """Show ``volume`` in a Red-only layout on its frame (IJ) plane: no x–t / y–t cut to paint by mistake."""
    manager = slicer.app.layoutManager()
    manager.setLayout(slicer.vtkMRMLLayoutNode.SlicerLayoutOneUpRedSliceView)
    slicer.util.setSliceViewerLayers(background=volume, fit=True)
    red = manager.sliceWidget("Red")
    red.mrmlSliceNode().RotateToVolumePlane(volume)
    red.fitSliceToBackground()


def current_frame(node) -> int:
    """The frame the user is looking at: the Sequence browser's item, else the Red view's K index."""
    if is_sequence(node):
        return sequences.current_frame(node)
    slice_to_ras = slicer.app.layoutManager().sliceWidget("Red").mrmlSliceNode().GetSliceToRAS()
    center = [slice_to_ras.GetElement(r, 3) for r in range(3)]
    return frame_at_ras(matrix_of(node), center, num_frames(node))


def go_to_frame(node, frame: int) -> None:
    """Show frame ``frame`` in the Red view (through the browser, for a Sequence)."""
    if is_sequence(node):
        sequences.go_to_frame(node, frame)
        return
    dims = node.GetImageData().GetDimensions()
    x, y, z = frame_center_ras(matrix_of(node), dims, frame)
    slicer.modules.markups.logic().JumpSlicesToLocation(x, y, z, False, -1)


def plot_confidence(result, plot_nodes: dict) -> None:
    """Plot confidence per frame in Slicer's plot view (nodes reused via ``plot_nodes``)."""
    if result.confidence is None:
        return
    table = np.column_stack([np.arange(result.num_frames, dtype=np.float32), result.confidence])
    first = not plot_nodes  # switch the layout to show the plot once; later calls only update it
    slicer.util.plot(table, xColumnIndex=0, columnNames=["frame", "confidence"], title="cineprop confidence",
                     show=first, nodes=plot_nodes)
