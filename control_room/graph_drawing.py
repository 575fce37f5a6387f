"""A workflow's graph as an SVG drawing, laid out on the server without any network.

The layout is grandalf's Sugiyama layout (the one LangGraph's own ``draw_ascii`` uses);
this module only sizes the boxes and turns the computed coordinates into the shapes a
template draws: nodes, edges (conditional ones dashed), a loop for a node that may run
again, and a frame around each subgraph's nodes (``xray``: ``sub:inner`` node ids).
"""

from dataclasses import dataclass, field

from grandalf.graphs import Edge, Graph, Vertex
from grandalf.layouts import SugiyamaLayout
from grandalf.routing import route_with_lines

START, END = "__start__", "__end__"
CHAR_W, BOX_H, PAD_X = 8, 34, 16
GAP_X, GAP_Y = 36, 56
MARGIN = 24


class _View:
    """What grandalf reads and writes on a vertex or an edge."""

    def __init__(self, w: float = 0, h: float = 0):
        self.w, self.h, self.xy = w, h, (0.0, 0.0)
        self._pts: list = []

    def setpath(self, pts) -> None:
        self._pts = pts


@dataclass
class DrawnNode:
    id: str
    label: str
    x: float
    y: float
    w: float
    h: float
    kind: str  # "start", "end" or "node"

    @property
    def cx(self) -> float:
        return self.x + self.w / 2

    @property
    def cy(self) -> float:
        return self.y + self.h / 2


@dataclass
class DrawnEdge:
    source: str
    target: str
    conditional: bool
    path: str  # SVG path data
    label: str = ""


@dataclass
class Drawing:
    width: float
    height: float
    nodes: list[DrawnNode] = field(default_factory=list)
    edges: list[DrawnEdge] = field(default_factory=list)
    subgraphs: list[dict] = field(default_factory=list)  # name, x, y, w, h, label at tx, ty


def _label(node_id: str) -> str:
    if node_id == START:
        return "start"
    if node_id == END:
        return "end"
    return node_id.rsplit(":", 1)[-1]


def _kind(node_id: str) -> str:
    return {START: "start", END: "end"}.get(node_id, "node")


def draw(graph, xray: bool = True) -> Drawing:
    """Lay out a compiled graph (``graph.get_graph(xray=...)``) and return its shapes."""
    described = graph.get_graph(xray=xray)
    ids = list(described.nodes)
    vertices = {}
    for node_id in ids:
        vertex = Vertex(node_id)
        vertex.view = _View(w=len(_label(node_id)) * CHAR_W + 2 * PAD_X, h=BOX_H)
        vertices[node_id] = vertex
    loops, layout_edges, edges = [], [], []
    for edge in described.edges:
        if edge.source == edge.target:
            loops.append(edge)
            continue
        laid = Edge(vertices[edge.source], vertices[edge.target], data=edge)
        laid.view = _View()
        layout_edges.append(laid)
    drawing = Drawing(width=0, height=0)
    layout_graph = Graph(list(vertices.values()), layout_edges)
    for component in layout_graph.C:
        # Each connected component on its own, beside the previous one.
        sugiyama = SugiyamaLayout(component)
        sugiyama.xspace, sugiyama.yspace = GAP_X, GAP_Y
        sugiyama.route_edge = route_with_lines
        roots = [v for v in component.sV if v.data == START] or None
        sugiyama.init_all(roots=roots, optimize=True)
        sugiyama.draw(3)
        edges.extend(component.sE)
    xs = [v.view.xy[0] - v.view.w / 2 for v in vertices.values()]
    ys = [v.view.xy[1] - v.view.h / 2 for v in vertices.values()]
    dx, dy = MARGIN - min(xs), MARGIN - min(ys)
    for node_id, vertex in vertices.items():
        cx, cy = vertex.view.xy
        drawing.nodes.append(
            DrawnNode(
                node_id,
                _label(node_id),
                round(cx - vertex.view.w / 2 + dx, 1),
                round(cy - vertex.view.h / 2 + dy, 1),
                vertex.view.w,
                vertex.view.h,
                _kind(node_id),
            )
        )
    by_id = {node.id: node for node in drawing.nodes}
    pairs = {(laid.data.source, laid.data.target) for laid in edges}
    for laid in edges:
        data = laid.data
        points = [(x + dx, y + dy) for x, y in (laid.view._pts or [])]
        if len(points) < 2:
            source, target = by_id[data.source], by_id[data.target]
            points = [(source.cx, source.cy), (target.cx, target.cy)]
        points[0] = _border(by_id[data.source], points[1])
        points[-1] = _border(by_id[data.target], points[-2])
        if (data.target, data.source) in pairs and len(points) == 2:
            path = _bow(points[0], points[1])  # A→B and B→A: two curves, not one line
        else:
            path = "M" + " L".join(f"{x:.1f},{y:.1f}" for x, y in points)
        label = str(data.data) if data.data is not None else ""
        drawing.edges.append(
            DrawnEdge(data.source, data.target, bool(data.conditional), path, label)
        )
    for edge in loops:
        node = by_id[edge.source]
        right, top, bottom = node.x + node.w, node.y + 8, node.y + node.h - 8
        path = (
            f"M{right:.1f},{top:.1f} C{right + 34:.1f},{top - 14:.1f} "
            f"{right + 34:.1f},{bottom + 14:.1f} {right:.1f},{bottom:.1f}"
        )
        drawing.edges.append(DrawnEdge(edge.source, edge.target, bool(edge.conditional), path))
    for name in sorted({node_id.rsplit(":", 1)[0] for node_id in ids if ":" in node_id}):
        inside = [node for node in drawing.nodes if node.id.startswith(name + ":")]
        x0 = min(n.x for n in inside) - 12
        y0 = min(n.y for n in inside) - 22
        x1 = max(n.x + n.w for n in inside) + 12
        y1 = max(n.y + n.h for n in inside) + 10
        drawing.subgraphs.append(
            {
                "name": name,
                "x": x0,
                "y": y0,
                "w": x1 - x0,
                "h": y1 - y0,
                "tx": x0 + 8,
                "ty": y0 + 14,
            }
        )
    right = [n.x + n.w for n in drawing.nodes] + [s["x"] + s["w"] for s in drawing.subgraphs]
    bottom = [n.y + n.h for n in drawing.nodes] + [s["y"] + s["h"] for s in drawing.subgraphs]
    drawing.width = round(max(right) + MARGIN + (40 if loops else 0), 1)
    drawing.height = round(max(bottom) + MARGIN, 1)
    return drawing


def _border(node: DrawnNode, toward: tuple[float, float]) -> tuple[float, float]:
    """Where the line from the node's centre toward a point leaves its box."""
    x, y = toward
    ddx, ddy = x - node.cx, y - node.cy
    if not ddx and not ddy:
        return node.cx, node.cy
    scale = min(
        (node.w / 2) / abs(ddx) if ddx else float("inf"),
        (node.h / 2) / abs(ddy) if ddy else float("inf"),
    )
    return node.cx + ddx * scale, node.cy + ddy * scale


def _bow(start: tuple[float, float], end: tuple[float, float], offset: float = 22) -> str:
    """A curve from start to end bowing to its left, so that the edge back is apart."""
    (x0, y0), (x1, y1) = start, end
    length = max(((x1 - x0) ** 2 + (y1 - y0) ** 2) ** 0.5, 1)
    cx = (x0 + x1) / 2 + offset * (y1 - y0) / length
    cy = (y0 + y1) / 2 - offset * (x1 - x0) / length
    return f"M{x0:.1f},{y0:.1f} Q{cx:.1f},{cy:.1f} {x1:.1f},{y1:.1f}"
