"""Render the CineProp panel from ``Resources/UI/CineProp.ui`` with PySide6, offscreen → PNG screenshots.

Every widget, layout and text comes from the ``.ui``; the panel is filled by ``CinePropLib.panel``,
the code the module runs in Slicer. Only Slicer's own widget classes are drawn by small PySide6
stand-ins: ``ctkCollapsibleButton`` (a group box), ``qMRMLNodeComboBox`` (a combo box) and
``qMRMLSegmentEditorWidget`` (a sketch of Slicer's Segment Editor: effect buttons + segment list).

The numbers shown come from a real propagation of a bundled ACDC cine: through a running cineprop
server with ``--server URL`` (how the images in ``docs/images`` were made), else locally with
cineprop's ``flow`` baseline. Usage::

    QT_QPA_PLATFORM=offscreen python tools/render_panel.py --server http://127.0.0.1:8000
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np

HERE = Path(__file__).resolve()
REPO = HERE.parents[1]
MODULE_DIR = REPO / "slicer_extension" / "CineProp"
sys.path.insert(0, str(MODULE_DIR))

from CinePropLib import panel  # noqa: E402
from CinePropLib.client import DEFAULT_URL, Study  # noqa: E402
from CinePropLib.workflow import CineWorkflow, TrainingProgress  # noqa: E402
from CinePropLib.results import parse_result  # noqa: E402
from CinePropLib.segments import SegmentSpec  # noqa: E402

SAMPLE = REPO / "data" / "sample" / "patient001_frame01.nii.gz"
SAMPLE_LABEL = REPO / "data" / "sample" / "patient001_frame01_label.nii.gz"
#: The screenshots use a strict review threshold so that some frames are flagged.
THRESHOLD = 0.85
SEGMENTS = [SegmentSpec("RV", (0.26, 0.52, 0.96), 1), SegmentSpec("myocardium", (0.27, 0.67, 0.35), 2),
            SegmentSpec("LV", (0.90, 0.30, 0.24), 3)]


def _stand_ins():
    from PySide6.QtCore import Property
    from PySide6.QtGui import QColor
    from PySide6.QtWidgets import (QComboBox, QFrame, QGroupBox, QHBoxLayout, QLabel, QTableWidget,
                                   QTableWidgetItem, QToolButton, QVBoxLayout)

    class ctkCollapsibleButton(QGroupBox):  # noqa: N801 - the Slicer class name the .ui uses
        def _text(self):
            return self.title()

        def _set_text(self, text):
            self.setTitle("▾ " + text)

        text = Property(str, _text, _set_text)

    class qMRMLNodeComboBox(QComboBox):  # noqa: N801
        pass

    class qMRMLWidget(QFrame):  # noqa: N801
        pass

    class qMRMLSegmentEditorWidget(QFrame):  # noqa: N801
        def __init__(self, parent=None):
            super().__init__(parent)
            self.setFrameShape(QFrame.StyledPanel)
            self.setMinimumHeight(170)
            layout = QVBoxLayout(self)
            tools = QHBoxLayout()
            for name in ("Paint", "Draw", "Erase", "Scissors", "Smoothing"):
                button = QToolButton()
                button.setText(name)
                button.setCheckable(True)
                button.setChecked(name == "Paint")
                tools.addWidget(button)
            layout.addLayout(tools)
            table = QTableWidget(len(SEGMENTS), 2)
            table.setHorizontalHeaderLabels(["", "Segment"])
            table.verticalHeader().hide()
            table.setColumnWidth(0, 24)
            table.horizontalHeader().setStretchLastSection(True)
            for r, seg in enumerate(SEGMENTS):
                swatch = QTableWidgetItem("")
                swatch.setBackground(QColor.fromRgbF(*seg.color))
                table.setItem(r, 0, swatch)
                table.setItem(r, 1, QTableWidgetItem(seg.name))
            table.setFixedHeight(26 * (len(SEGMENTS) + 1))
            layout.addWidget(table)
            note = QLabel("3D Slicer's Segment Editor (drawn here by a stand-in)")
            note.setStyleSheet("color: gray; font-size: 9px")
            layout.addWidget(note)

    return [ctkCollapsibleButton, qMRMLNodeComboBox, qMRMLWidget, qMRMLSegmentEditorWidget]


def load_panel():
    """The panel widget and its ``ui`` namespace (widgets by object name)."""
    from PySide6.QtUiTools import QUiLoader
    from PySide6.QtWidgets import QWidget

    loader = QUiLoader()
    for cls in _stand_ins():
        loader.registerCustomWidget(cls)
    root = loader.load(str(MODULE_DIR / "Resources" / "UI" / "CineProp.ui"))
    if root is None:
        raise SystemExit(loader.errorString())
    ui = SimpleNamespace(**{w.objectName(): w for w in root.findChildren(QWidget) if w.objectName()})
    return root, ui


def propagate_sample(server: str | None):
    """Propagate the sample cine from its middle frame.

    Returns (result, where the numbers came from, connection status line, study list).
    """
    from CinePropLib.conversions import CineArrays
    from CinePropLib.volumefiles import read_volume

    frames, grid = read_volume(SAMPLE)
    truth, _ = read_volume(SAMPLE_LABEL)
    support_frame = frames.shape[2] // 2
    painted = np.zeros_like(truth)
    painted[..., support_frame] = truth[..., support_frame]
    if server:
        workflow = CineWorkflow()
        status = workflow.connect(server)
        result = workflow.propagate(CineArrays(frames, grid, "patient001_frame01"), painted, SEGMENTS,
                                    image_id="patient001_frame01", threshold=THRESHOLD)
        return result, f"server {server}", status, workflow.studies()
    from cineprop.io.cine import Cine
    from cineprop.methods import build_propagator
    from cineprop.support import SupportSet

    prop = build_propagator("flow").propagate(Cine(frames, name="patient001"), SupportSet.from_labels(painted))
    details = {"confidence": prop.confidence.tolist(), "support_frames": prop.support_frames,
               "flagged": prop.flagged(THRESHOLD), "seconds": prop.seconds}
    studies = [Study(p.name.split(".")[0]) for p in sorted(SAMPLE.parent.glob("*_frame01.nii.gz"))]
    return parse_result(prop.labels, details), "local flow baseline", "Connected to cineprop", studies


def save(root, path: Path, width: int = 400) -> None:
    """Grab the panel at ``width`` px and save a small palette PNG."""
    from PIL import Image

    from PySide6.QtWidgets import QApplication

    root.setFixedWidth(width)
    root.show()
    layout = root.layout()
    layout.activate()
    height = max(root.sizeHint().height(), layout.totalMinimumSize().height(),
                 layout.totalHeightForWidth(width) if layout.hasHeightForWidth() else 0)
    root.setFixedHeight(height)
    QApplication.processEvents()
    image = root.grab().toImage()
    buffer = image.constBits().tobytes()
    rgba = np.frombuffer(buffer, np.uint8).reshape(image.height(), image.bytesPerLine() // 4, 4)
    rgb = rgba[:, : image.width(), [2, 1, 0]]          # Qt ARGB32 is BGRA in memory
    busy = np.flatnonzero((rgb != rgb[-1:, :, :]).any(axis=(1, 2)))   # drop the empty spacer at the bottom
    rgb = rgb[: int(busy[-1]) + 12] if busy.size else rgb
    Image.fromarray(np.ascontiguousarray(rgb)).quantize(128).save(path, optimize=True)


def render(out: Path, server: str | None = None) -> list[Path]:
    """Write the three workflow screenshots into ``out``; returns their paths."""
    from PySide6.QtCore import Qt
    from PySide6.QtGui import QColor
    from PySide6.QtWidgets import QApplication, QListWidgetItem, QTableWidgetItem

    app = QApplication.instance() or QApplication(["render_panel"])
    qt = SimpleNamespace(Qt=Qt, QColor=QColor, QListWidgetItem=QListWidgetItem, QTableWidgetItem=QTableWidgetItem)
    result, source, status, studies = propagate_sample(server)
    root, ui = load_panel()
    out.mkdir(parents=True, exist_ok=True)
    paths = []

    ui.serverUrlLineEdit.setText(DEFAULT_URL)  # what `make run` serves; the numbers came from `server`
    ui.connectionStatusLabel.setText(status)
    panel.show_studies(ui, studies, qt)
    ui.studyList.setCurrentRow(0)
    ui.inputSelector.addItem("patient001_frame01")
    ui.segmentationSelector.addItem("patient001_frame01 segmentation")
    ui.studyLabel.setText("Study patient001_frame01 on the server")
    panel.reset_result(ui)
    ui.supportFramesLabel.setText(f"Support frames: {result.support_frames[0]} (painted)")
    panel.update_buttons(ui, True, None)
    panel.show_status(ui, "Study patient001_frame01 loaded. Paint the structure on one or a few frames, then "
                          "Propagate.")
    paths.append(out / "slicer-1-paint.png")
    save(root, paths[-1])

    ui.flagThresholdSpinBox.setValue(THRESHOLD)
    panel.show_result(ui, result, qt)
    panel.update_buttons(ui, True, result)
    panel.show_status(ui, "Review the flagged frames, correct them, then Propagate again or Submit.")
    paths.append(out / "slicer-2-review.png")
    save(root, paths[-1])

    panel.show_training(ui, TrainingProgress("SUBMITTED", "cineprop_image", "started"))  # right after "Train"
    panel.show_status(ui, "Saved as the final label of patient001_frame01. Train, or go to the Next study.")
    paths.append(out / "slicer-3-learn.png")
    save(root, paths[-1])
    app.processEvents()
    print(f"numbers from: {source}; {result.summary()}")
    return paths


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server", help="a running cineprop server to propagate through")
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "images")
    args = parser.parse_args(argv)
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    for path in render(args.out, args.server):
        print(path, f"{path.stat().st_size // 1024} KiB")


if __name__ == "__main__":
    main()
