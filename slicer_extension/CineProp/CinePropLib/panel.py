"""What the panel shows: results, studies, training progress, messages.

These functions fill the widgets of ``Resources/UI/CineProp.ui``. They use only Qt method calls
that PythonQt (Slicer's ``qt``) and PySide6 share, and take the Qt namespace as an argument, so
the tests run them on the ``.ui`` loaded with PySide6 and Slicer runs them on its own widgets.

``ui`` is any object with the widgets as attributes (``slicer.util.childWidgetVariables``);
``qt`` provides ``QTableWidgetItem``, ``QListWidgetItem``, ``QColor`` and ``Qt``.
"""

from __future__ import annotations

from typing import Any, Sequence

#: Background of flagged rows in the confidence table (RGB).
FLAGGED_ROW = (250, 215, 160)
ERROR_STYLE = "color: #c0392b;"


def show_status(ui: Any, text: str, error: bool = False) -> None:
    """The message line at the bottom of the panel (red for errors)."""
    ui.statusLabel.setText(text)
    ui.statusLabel.setStyleSheet(ERROR_STYLE if error else "")


def show_studies(ui: Any, studies: Sequence[Any], qt: Any) -> None:
    """Fill the study list; each item keeps the study id under ``Qt.UserRole``."""
    ui.studyList.clear()
    for study in studies:
        item = qt.QListWidgetItem(study.summary())
        item.setData(qt.Qt.UserRole, study.id)
        ui.studyList.addItem(item)


def selected_study(ui: Any, qt: Any) -> str | None:
    """The id of the study selected in the list, if any."""
    item = ui.studyList.currentItem()
    return None if item is None else item.data(qt.Qt.UserRole)


def reset_result(ui: Any) -> None:
    """Forget the shown result (a new cine was chosen)."""
    ui.confidenceTable.setRowCount(0)
    ui.resultLabel.setText("No propagation yet")
    ui.supportFramesLabel.setText("Support frames: none painted yet")


def show_result(ui: Any, result: Any, qt: Any) -> None:
    """Confidence table (frame, confidence, role; flagged rows highlighted) and the summary lines."""
    rows = result.rows()
    table = ui.confidenceTable
    table.setRowCount(len(rows))
    for r, (frame, confidence, role) in enumerate(rows):
        for c, text in enumerate((str(frame), confidence, role)):
            item = qt.QTableWidgetItem(text)
            if role == "flagged":
                item.setBackground(qt.QColor(*FLAGGED_ROW))
            table.setItem(r, c, item)
    ui.resultLabel.setText(result.summary())
    ui.supportFramesLabel.setText(
        f"Support frames: {', '.join(map(str, result.support_frames))}. Frames you correct, or mark with "
        "'Frame is correct', become support at the next Propagate.")


def show_training(ui: Any, progress: Any | None, message: str = "") -> bool:
    """Training status line and bar (steps when the server's log reports them); returns whether it runs."""
    running = progress is not None and progress.running
    text = progress.text() if progress is not None else message
    if running and progress.total:
        text += f" (step {progress.step}/{progress.total}, loss {progress.loss:.4f})"
    ui.trainingStatusLabel.setText(text)
    if running and progress.total:
        ui.trainingProgressBar.setRange(0, progress.total)
        ui.trainingProgressBar.setValue(progress.step)
    elif running:
        ui.trainingProgressBar.setRange(0, 0)  # busy indicator: no step reported yet
    else:
        ui.trainingProgressBar.setRange(0, 1)
        ui.trainingProgressBar.setValue(1 if progress is not None and progress.status == "DONE" else 0)
    return running


def update_buttons(ui: Any, has_cine: bool, result: Any | None, busy: bool = False) -> None:
    """Enable what makes sense now; while a server step runs (``busy``), nothing that starts another."""
    ui.propagateButton.setEnabled(has_cine and not busy)
    ui.submitButton.setEnabled(has_cine and not busy)
    ui.nextFlaggedButton.setEnabled(result is not None and bool(result.flagged))
    ui.confirmFrameButton.setEnabled(result is not None)
    for name in ("connectButton", "loadStudyButton", "nextStudyButton", "relearnButton", "trainButton"):
        getattr(ui, name).setEnabled(not busy)


def show_task(ui: Any, message: str | None, fraction: float | None) -> None:
    """The running step's bar and Cancel button (``message=None`` hides them)."""
    running = message is not None
    ui.taskProgressBar.setVisible(running)
    ui.cancelTaskButton.setVisible(running)
    if running:
        ui.taskProgressBar.setRange(0, 0 if fraction is None else 100)   # busy bar when no fraction is known
        ui.taskProgressBar.setValue(0 if fraction is None else int(round(100 * fraction)))
        ui.taskProgressBar.setFormat(message)
        ui.statusLabel.setText(message)


def show_cine_notes(ui: Any, image_id: str | None, colour: bool, selected: bool = True) -> None:
    """Where the chosen cine lives, and that colour frames are propagated in grey."""
    if not selected:
        ui.studyLabel.setText("No cine selected")
    elif image_id:
        ui.studyLabel.setText(f"Study {image_id} on the server")
    else:
        ui.studyLabel.setText("Local cine: uploaded for this session when you propagate (you are asked first)")
    ui.colourNoteLabel.setText("Colour frames: propagated in grey (the mean of the colour channels); the "
                               "segmentation is shown on the colour frames." if colour and selected else "")
