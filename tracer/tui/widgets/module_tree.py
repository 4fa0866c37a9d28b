"""The module hierarchy of a run: path, type and parameter count per node."""

from __future__ import annotations

from collections.abc import Sequence

from rich.text import Text
from textual.message import Message
from textual.widgets import Tree
from textual.widgets.tree import TreeNode

from tracer.records import ModuleRecord
from tracer.tui import formatting as fmt


class ModuleTree(Tree[str]):
    """A tree of modules; each node's data is the module's qualified path."""

    class ModuleHighlighted(Message):
        """The cursor moved onto a module (by the user)."""

        def __init__(self, path: str) -> None:
            self.path = path
            super().__init__()

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(Text("modules"), id=id)
        self.show_root = True
        self.guide_depth = 2
        self._by_path: dict[str, TreeNode[str]] = {}
        self.modules: list[ModuleRecord] = []
        self._target: TreeNode[str] | None = None

    def show(self, modules: Sequence[ModuleRecord]) -> None:
        """Rebuild the tree from module records (``named_modules()`` order, parents first)."""
        self.clear()
        self._by_path = {}
        self.modules = list(modules)
        for module in modules:
            if module.parent is None or module.path == "":
                self.root.set_label(node_label(module, root=True))
                self.root.data = module.path
                self._by_path[module.path] = self.root
                continue
            parent = self._by_path.get(module.parent, self.root)
            node = parent.add(node_label(module), data=module.path, expand=module.depth < 2)
            self._by_path[module.path] = node
        for node in self._by_path.values():
            node.allow_expand = bool(node.children)
        self.root.expand()

    def select_path(self, path: str) -> None:
        """Move the cursor to a module, expanding its ancestors (the latest request wins)."""
        node = self._by_path.get(path)
        if node is None:
            return
        self._target = node
        expanded = False
        parent = node.parent
        while parent is not None:
            if not parent.is_expanded:  # expand() redraws the whole tree even when open
                parent.expand()
                expanded = True
            parent = parent.parent
        if expanded:
            # line numbers are rebuilt on the next refresh; move once they are
            self.call_after_refresh(self._move_to_target)
        else:
            self._move_to_target()

    def _move_to_target(self) -> None:
        node = self._target
        if node is not None and self.cursor_node is not node:
            self.move_cursor(node, animate=False)

    @property
    def current_path(self) -> str | None:
        """The module path under the cursor."""
        node = self.cursor_node
        return node.data if node is not None else None

    @property
    def paths(self) -> list[str]:
        """Every module path in the tree, in order."""
        return list(self._by_path)

    def on_tree_node_highlighted(self, event: Tree.NodeHighlighted[str]) -> None:
        """Turn the tree's own event into a module event."""
        event.stop()
        if event.node.data is not None:
            self.post_message(self.ModuleHighlighted(event.node.data))


def node_label(module: ModuleRecord, root: bool = False) -> Text:
    """``lstm  LSTM  1.11M``: the last path part, the type, the parameter count (literal text)."""
    name = module.type if root else module.path.rsplit(".", 1)[-1]
    label = Text(fmt.cell(name))
    if not root:
        label.append(f"  {fmt.cell(module.type)}", style="dim")
    if module.params_total:
        label.append(f"  {fmt.count(module.params_total, 'compact')}", style="cyan")
    return label
