"""The Sequence route: a cine that is a Sequence of 2D frames, painted frame by frame. Needs 3D Slicer.

What the user sees is the sequence browser's proxy volume (one frame, in the Red view); the
browser's selected item is *the* current frame. The user paints the proxy of a segmentation
sequence synchronised with the cine in the same browser, with "save changes" on (as Slicer's
Sequences documentation and SlicerTotalSegmentator record segmentations), so each frame's painting
is kept in its own item and playing the sequence shows the edits. Reading and writing all frames
(Propagate, Submit) steps the browser through the items; clicks that only need the current frame
(Next flagged, Frame is correct) read the browser's item and nothing else.

The maths (per-frame masks → ``I×J×T`` labels) is :func:`CinePropLib.segments.compose_frame_labels`.
"""

import slicer

from CinePropLib.conversions import labels_to_frames
from CinePropLib.segments import compose_frame_labels, missing_segments

#: Attribute on a cine Sequence naming its segmentation sequence.
SEGMENTATION_SEQUENCE_ATTRIBUTE = "CineProp.SegmentationSequenceID"


def _logic():
    return slicer.modules.sequences.logic()


def sequence_of_proxy(node):
    """The Sequence whose browser shows ``node`` (a proxy volume), else ``None``."""
    browser = _logic().GetFirstBrowserNodeForProxyNode(node) if node is not None else None
    return browser.GetSequenceNode(node) if browser is not None else None


def browser_of(sequence):
    """The sequence's browser (one is created when the Sequence was loaded without one)."""
    browser = _logic().GetFirstBrowserNodeForSequenceNode(sequence)
    if browser is None:
        browser = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSequenceBrowserNode", f"{sequence.GetName()} browser")
        browser.SetAndObserveMasterSequenceNodeID(sequence.GetID())
        _logic().UpdateProxyNodesFromSequences(browser)
    return browser


def proxy_volume(sequence):
    """The volume that shows the browser's current frame (what the user sees and paints on)."""
    return browser_of(sequence).GetProxyNode(sequence)


def segmentation_proxy(sequence):
    """The segmentation the user paints: the proxy of the cine's segmentation sequence (created on first use)."""
    browser = browser_of(sequence)
    result = slicer.mrmlScene.GetNodeByID(sequence.GetAttribute(SEGMENTATION_SEQUENCE_ATTRIBUTE) or "")
    if result is None:
        result = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSequenceNode", f"{sequence.GetName()} segmentation")
        result.SetIndexName(sequence.GetIndexName())
        result.SetIndexUnit(sequence.GetIndexUnit())
        empty = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentationNode", "__cineprop_empty__")
        try:
            for t in range(sequence.GetNumberOfDataNodes()):  # one item per frame: painting any frame is kept
                result.SetDataNodeAtValue(empty, sequence.GetNthIndexValue(t))
        finally:
            slicer.mrmlScene.RemoveNode(empty)
        sequence.SetAttribute(SEGMENTATION_SEQUENCE_ATTRIBUTE, result.GetID())
    if not browser.IsSynchronizedSequenceNode(result.GetID(), True):
        browser.AddSynchronizedSequenceNode(result)
    browser.SetSaveChanges(result, True)               # edits of the proxy are written into the frame's item
    _logic().UpdateProxyNodesFromSequences(browser)
    proxy = browser.GetProxyNode(result)
    proxy.CreateDefaultDisplayNodes()
    proxy.SetReferenceImageGeometryParameterFromVolumeNode(proxy_volume(sequence))
    return proxy


def slice_positions(sequence) -> int:
    """Slice positions per frame: 1 for 2D frames, ``K`` for a stack over time (a DICOM cine series)."""
    data = sequence.GetNthDataNode(0) if sequence.GetNumberOfDataNodes() else None
    image = data.GetImageData() if data is not None and data.IsA("vtkMRMLScalarVolumeNode") else None
    return image.GetDimensions()[2] if image is not None else 1


def segment_list(segmentation) -> dict:
    """``{name: colour}`` of a segmentation's segments."""
    seg = segmentation.GetSegmentation()
    return {seg.GetNthSegment(i).GetName(): tuple(seg.GetNthSegment(i).GetColor())
            for i in range(seg.GetNumberOfSegments())}


def ensure_segments(segmentation, template: dict) -> None:
    """Give the frame now shown every segment made on other frames (empty), so painting the next
    support frame needs no new segment; the addition is saved into the frame's item."""
    seg = segmentation.GetSegmentation()
    for name, color in missing_segments(template, segment_list(segmentation)).items():
        seg.AddEmptySegment("", name, list(color))


def current_frame(sequence) -> int:
    return int(browser_of(sequence).GetSelectedItemNumber())


def go_to_frame(sequence, frame: int) -> None:
    browser_of(sequence).SetSelectedItemNumber(int(frame))


class _EachFrame:
    """Step the browser through every item, then return to the item the user was on."""

    def __init__(self, sequence) -> None:
        self.browser = browser_of(sequence)
        self.count = sequence.GetNumberOfDataNodes()

    def __enter__(self):
        self.was = self.browser.GetSelectedItemNumber()
        return self

    def __iter__(self):
        for t in range(self.count):
            self.browser.SetSelectedItemNumber(t)
            yield t

    def __exit__(self, *exc):
        self.browser.SetSelectedItemNumber(self.was)


def read_labels(sequence, known: dict, slice_index=None):
    """Every frame's painting → (``I×J×T`` uint8 labels, ``{name: value}``, ``{name: colour}``).

    Frames with several slice positions give the painting of position ``slice_index``.
    """
    segmentation, volume = segmentation_proxy(sequence), proxy_volume(sequence)
    frames, colors = [], {}
    with _EachFrame(sequence) as steps:
        for _ in steps:
            shape = slicer.util.arrayFromVolume(volume).shape[:3]
            seg = segmentation.GetSegmentation()
            masks = []
            for i in range(seg.GetNumberOfSegments()):
                segment_id = seg.GetNthSegmentID(i)
                name = seg.GetSegment(segment_id).GetName()
                colors.setdefault(name, tuple(float(c) for c in seg.GetSegment(segment_id).GetColor()))
                mask = slicer.util.arrayFromSegmentBinaryLabelmap(segmentation, segment_id, volume)
                masks.append((name, mask if mask.shape[0] == 1 else mask[slice_index:slice_index + 1]))
            frames.append(masks)
    labels, values = compose_frame_labels(frames, (1, *shape[1:]), known)
    return labels, values, colors


def write_labels(sequence, cine, labels, specs, import_frame) -> None:
    """Put ``I×J×T`` ``labels`` into every frame's item (``import_frame(segmentation, frame_kji, grid, specs)``).

    ``cine.frame_grids[t]`` places each frame, the picked slice position of a stack included.
    """
    segmentation = segmentation_proxy(sequence)
    planes = labels_to_frames(labels)
    with _EachFrame(sequence) as steps:
        for t in steps:
            import_frame(segmentation, planes[t], cine.frame_grids[t], specs)
