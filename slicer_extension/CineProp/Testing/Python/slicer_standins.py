"""Slicer's real Python packages with only its compiled parts replaced, for tests that run without Slicer.

What is real: ``slicer.parameterNodeWrapper`` and ``slicer.ScriptedLoadableModule``, imported
from a Slicer source checkout named by the environment variable ``SLICER_SOURCE_DIR`` (read when a
test installs the stand-ins; without it those tests are skipped). No Slicer file is copied into this
repository. What stands in: the compiled parts those files call — ``vtk`` (observers), MRML nodes and
the scene (``vtkMRMLScriptedModuleNode`` parameters and node references), and the handful of Qt/CTK
widgets the wrapper's GUI connectors drive. The stand-ins keep the behaviour the wrapper relies on
(``Modified`` events, ``StartModify``/``EndModify`` batching, node references resolved through the
scene, widgets that emit their change signals) and nothing else.

Use :func:`install` (monkeypatches ``sys.modules``) and :func:`widgets_from_ui` (the ``.ui`` file's
widgets as stand-ins, named as ``slicer.util.childWidgetVariables`` names them).
"""

from __future__ import annotations

import inspect
import itertools
import os
import sys
import types
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

#: Slicer's Python package in a Slicer checkout, and the files the tests run from it.
PACKAGE_IN_CHECKOUT, NEEDED = Path("Base", "Python", "slicer"), ("parameterNodeWrapper/__init__.py",
                                                                 "ScriptedLoadableModule.py")


def slicer_package_dir() -> Path:
    """``$SLICER_SOURCE_DIR/Base/Python/slicer``; skips the test when the variable is unset, fails when
    it is set but names no Slicer checkout."""
    root = os.environ.get("SLICER_SOURCE_DIR", "").strip()
    if not root:
        pytest.skip("needs Slicer's own Python code: set SLICER_SOURCE_DIR to a Slicer source checkout "
                    "(github.com/Slicer/Slicer; only Base/Python/slicer is read)")
    package = Path(root).expanduser() / PACKAGE_IN_CHECKOUT
    missing = [str(package / name) for name in NEEDED if not (package / name).is_file()]
    if missing:
        pytest.fail(f"SLICER_SOURCE_DIR={root!r} is not a Slicer source checkout: {', '.join(missing)} "
                    "not found", pytrace=False)
    return package.resolve()


# -- vtk ------------------------------------------------------------------------------------------
class vtkCommand:  # noqa: N801 - VTK's names
    ModifiedEvent = "ModifiedEvent"


class vtkObject:  # noqa: N801
    """Observers and the Modified event, batched by StartModify/EndModify as vtkMRMLNode does."""

    def __init__(self) -> None:
        self._observers: dict[int, tuple[str, object]] = {}
        self._tags = itertools.count(1)
        self._disable_modified = 0
        self._modified_pending = False

    def AddObserver(self, event, callback, priority=0.0):  # noqa: N802
        tag = next(self._tags)
        self._observers[tag] = (event, callback)
        return tag

    def RemoveObserver(self, tag):  # noqa: N802
        self._observers.pop(tag, None)

    def Modified(self):  # noqa: N802
        if self._disable_modified:
            self._modified_pending = True
            return
        for event, callback in list(self._observers.values()):
            if event == vtkCommand.ModifiedEvent:
                callback(self, event)

    def StartModify(self):  # noqa: N802
        previous = self._disable_modified
        self._disable_modified = 1
        return previous

    def EndModify(self, previous):  # noqa: N802
        self._disable_modified = previous
        if not previous and self._modified_pending:
            self._modified_pending = False
            self.Modified()
        return previous


# -- MRML -----------------------------------------------------------------------------------------
class vtkMRMLNode(vtkObject):  # noqa: N801
    def __init__(self) -> None:
        super().__init__()
        self._id = None
        self._name = ""
        self._scene = None
        self._attributes: dict[str, str] = {}
        self._singleton = None

    def GetClassName(self):  # noqa: N802
        return type(self).__name__

    def IsA(self, name):  # noqa: N802
        return any(c.__name__ == name for c in type(self).__mro__)

    def GetID(self):  # noqa: N802
        return self._id

    def GetName(self):  # noqa: N802
        return self._name

    def SetName(self, name):  # noqa: N802
        self._name = name

    def GetAttribute(self, name):  # noqa: N802
        return self._attributes.get(name)

    def SetAttribute(self, name, value):  # noqa: N802
        self._attributes[name] = value

    def SetSingletonTag(self, tag):  # noqa: N802
        self._singleton = tag

    def UnRegister(self, _owner):  # noqa: N802
        pass


class vtkMRMLScriptedModuleNode(vtkMRMLNode):  # noqa: N801
    """String parameters and node references, as the parameter node wrapper stores its fields."""

    def __init__(self) -> None:
        super().__init__()
        self._parameters: dict[str, str] = {}
        self._references: dict[str, str] = {}

    def SetParameter(self, name, value):  # noqa: N802
        if self._parameters.get(name) != str(value):
            self._parameters[name] = str(value)
            self.Modified()

    def GetParameter(self, name):  # noqa: N802
        return self._parameters.get(name, "")

    def HasParameter(self, name):  # noqa: N802
        return name in self._parameters

    def UnsetParameter(self, name):  # noqa: N802
        if self._parameters.pop(name, None) is not None:
            self.Modified()

    def GetParameterNames(self):  # noqa: N802
        return list(self._parameters)

    def SetNodeReferenceID(self, role, node_id):  # noqa: N802
        if node_id is None:
            self.RemoveNodeReferenceIDs(role)
        elif self._references.get(role) != node_id:
            self._references[role] = node_id
            self.Modified()

    def GetNodeReferenceID(self, role):  # noqa: N802
        return self._references.get(role)

    def GetNodeReference(self, role):  # noqa: N802
        node_id = self._references.get(role)
        return self._scene.GetNodeByID(node_id) if node_id and self._scene else None

    def RemoveNodeReferenceIDs(self, role):  # noqa: N802
        if self._references.pop(role, None) is not None:
            self.Modified()


def _node_class(name: str) -> type:
    return type(name, (vtkMRMLNode,), {})


vtkMRMLScalarVolumeNode = _node_class("vtkMRMLScalarVolumeNode")
vtkMRMLSequenceNode = _node_class("vtkMRMLSequenceNode")
vtkMRMLSegmentationNode = _node_class("vtkMRMLSegmentationNode")
NODE_CLASSES = {c.__name__: c for c in (vtkMRMLScriptedModuleNode, vtkMRMLScalarVolumeNode, vtkMRMLSequenceNode,
                                        vtkMRMLSegmentationNode)}


class Scene:
    """The scene calls ScriptedLoadableModuleLogic makes: singleton lookup, add, create, find by id."""

    def __init__(self) -> None:
        self.nodes: list[vtkMRMLNode] = []
        self._ids = itertools.count(1)

    def CreateNodeByClass(self, class_name):  # noqa: N802
        return NODE_CLASSES[class_name]()

    def AddNode(self, node):  # noqa: N802
        if node._singleton is not None:
            existing = self.GetSingletonNode(node._singleton, node.GetClassName())
            if existing is not None:
                return existing
        node._id, node._scene = f"{node.GetClassName()}{next(self._ids)}", self
        self.nodes.append(node)
        return node

    def AddNewNodeByClass(self, class_name, name=""):  # noqa: N802
        node = self.CreateNodeByClass(class_name)
        node.SetName(name)
        return self.AddNode(node)

    def GetSingletonNode(self, tag, class_name):  # noqa: N802
        return next((n for n in self.nodes if n._singleton == tag and n.IsA(class_name)), None)

    def GetNodeByID(self, node_id):  # noqa: N802
        return next((n for n in self.nodes if n.GetID() == node_id), None)

    def GetNumberOfNodesByClass(self, class_name):  # noqa: N802
        return sum(n.IsA(class_name) for n in self.nodes)

    def GetNthNodeByClass(self, index, class_name):  # noqa: N802
        return [n for n in self.nodes if n.IsA(class_name)][index]

    def GenerateUniqueName(self, name):  # noqa: N802
        return name if all(n.GetName() != name for n in self.nodes) else f"{name}_{len(self.nodes)}"


class NodeModify:
    """``slicer.util.NodeModify``: batch the Modified events of a block into one."""

    def __init__(self, node) -> None:
        self.node = node

    def __enter__(self):
        self.was_modifying = self.node.StartModify()
        return self.node

    def __exit__(self, *exc):
        self.node.EndModify(self.was_modifying)


# -- Qt / CTK widgets (PythonQt style: properties as attributes, signals with .connect) -----------
class Signal:
    """A PythonQt signal: slots taking fewer arguments get the leading ones (as PythonQt calls them)."""

    def __init__(self) -> None:
        self._slots: list = []

    def connect(self, slot):
        self._slots.append(slot)

    def disconnect(self, slot):
        self._slots.remove(slot)

    def emit(self, *args):
        for slot in list(self._slots):
            params = inspect.signature(slot).parameters.values()
            takes = sum(p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) for p in params)
            slot(*(args if any(p.kind == p.VAR_POSITIONAL for p in params) else args[:takes]))


class QWidget:
    def __init__(self, parent=None) -> None:
        self._properties: dict[str, object] = {}

    def property(self, name):
        return self._properties.get(name)

    def setProperty(self, name, value):  # noqa: N802
        self._properties[name] = value

    def isWidgetType(self):  # noqa: N802
        return True

    def layout(self):
        return None


class QLineEdit(QWidget):
    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self._text, self.textChanged = "", Signal()

    @property
    def text(self):
        return self._text

    @text.setter
    def text(self, value):
        if value != self._text:
            self._text = value
            self.textChanged.emit(value)


class QDoubleSpinBox(QWidget):
    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self._value, self.valueChanged = 0.0, Signal()
        self.minimum, self.maximum, self.decimals, self.singleStep = 0.0, 99.99, 2, 1.0

    @property
    def value(self):
        return self._value

    @value.setter
    def value(self, value):
        value = min(max(float(value), self.minimum), self.maximum)  # QDoubleSpinBox clamps
        if value != self._value:
            self._value = value
            self.valueChanged.emit(value)


class qMRMLNodeComboBox(QWidget):  # noqa: N801
    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.nodeTypes: tuple = ()
        self._node, self.currentNodeChanged = None, Signal()

    def currentNode(self):  # noqa: N802
        return self._node

    def setCurrentNode(self, node):  # noqa: N802
        if node is not None and node.GetClassName() not in self.nodeTypes:
            node = None  # the combo box lists only nodeTypes
        if node is not self._node:
            self._node = node
            self.currentNodeChanged.emit(node)


class qMRMLSegmentEditorWidget(QWidget):  # noqa: N801
    """Only what the module's enter/exit call: the Segment Editor's keyboard shortcuts."""

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.shortcutsInstalled = False

    def installKeyboardShortcuts(self, parent=None):  # noqa: N802
        self.shortcutsInstalled = True

    def uninstallKeyboardShortcuts(self):  # noqa: N802
        self.shortcutsInstalled = False


class LayoutManager:
    def __init__(self) -> None:
        self.layout = 3                                # Slicer's "Four-up"

    def setLayout(self, layout):  # noqa: N802
        self.layout = layout


class _AutoModule(types.ModuleType):
    """A module whose unknown attributes are distinct placeholder classes (names only the code refers to)."""

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        placeholder = type(name, (QWidget,), {})
        setattr(self, name, placeholder)
        return placeholder


def _module(name: str, **members) -> types.ModuleType:
    module = _AutoModule(name)
    module.__dict__.update(members)
    return module


def build_modules(package_dir: Path) -> dict[str, types.ModuleType]:
    """``sys.modules`` entries: stand-ins for compiled parts, and a ``slicer`` package whose submodules
    are found in ``package_dir`` (Slicer's ``Base/Python/slicer``)."""
    scene = Scene()
    util = types.ModuleType("slicer.util")
    util.NodeModify = NodeModify
    util.toBool = lambda value: str(value).lower() in ("1", "true", "yes")
    util.settingsValue = lambda key, default, converter=lambda v: v: default
    util.VTKObservationMixin = type("VTKObservationMixin", (), {"__init__": lambda self: None})
    i18n = types.ModuleType("slicer.i18n")
    i18n.tr = lambda text: text
    layout_manager = LayoutManager()
    app = types.SimpleNamespace(moduleManager=lambda: types.SimpleNamespace(connect=lambda *args: None),
                                layoutManager=lambda: layout_manager)
    slicer = _module("slicer", mrmlScene=scene, app=app, util=util, i18n=i18n, vtkMRMLNode=vtkMRMLNode,
                     qMRMLNodeComboBox=qMRMLNodeComboBox, qMRMLSegmentEditorWidget=qMRMLSegmentEditorWidget,
                     **NODE_CLASSES)
    slicer.__path__ = [str(package_dir)]              # slicer.parameterNodeWrapper etc. are the real files
    qt = _module("qt", QWidget=QWidget, QLineEdit=QLineEdit, QDoubleSpinBox=QDoubleSpinBox)
    vtk = _module("vtk", vtkCommand=vtkCommand, vtkObject=vtkObject)
    return {"slicer": slicer, "slicer.util": util, "slicer.i18n": i18n, "qt": qt, "vtk": vtk, "ctk": _module("ctk")}


#: The module's files that import ``slicer`` (imported afresh over the stand-ins).
_IMPORTS_SLICER = ("CineProp", "CinePropLib.nodes", "CinePropLib.runner", "CinePropLib.sequences",
                   "CinePropLib.slicerlogic")


def install(monkeypatch) -> types.ModuleType:
    """Put the modules of :func:`build_modules` in ``sys.modules`` (undone by ``monkeypatch``); returns ``slicer``.

    Skips the test when ``SLICER_SOURCE_DIR`` is unset (:func:`slicer_package_dir`).
    """
    package_dir = slicer_package_dir()
    for name in [n for n in sys.modules if n.split(".")[0] == "slicer" or n in _IMPORTS_SLICER]:
        monkeypatch.delitem(sys.modules, name)
    for name, module in build_modules(package_dir).items():
        monkeypatch.setitem(sys.modules, name, module)
    return sys.modules["slicer"]


def forget_imports() -> None:
    """Drop what was imported over the stand-ins, so the next test imports afresh."""
    for name in [n for n in sys.modules if n.startswith("slicer.") or n in _IMPORTS_SLICER]:
        sys.modules.pop(name, None)


def widgets_from_ui(ui_file: Path) -> types.SimpleNamespace:
    """Every named widget of a ``.ui`` file as a stand-in of its class, with its dynamic properties."""
    qt, slicer = sys.modules["qt"], sys.modules["slicer"]
    widgets = {}
    for element in ET.parse(ui_file).iter("widget"):
        cls_name = element.get("class")
        cls = getattr(slicer if cls_name.startswith("qMRML") else qt, cls_name, None) or QWidget
        widget = cls()
        for prop in element.findall("property"):
            if prop.get("stdset") == "0" and prop.find("string") is not None:
                widget.setProperty(prop.get("name"), prop.find("string").text)
        widgets[element.get("name")] = widget
    return types.SimpleNamespace(**widgets)
