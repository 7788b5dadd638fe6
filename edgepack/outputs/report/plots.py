"""The report's plots, drawn by matplotlib as inline SVG.

Why matplotlib SVG and not an interactive JavaScript library: the report sits in
``dist/<target>/``, the folder an app copies, and must open with nothing fetched. Plotly's
self-contained page inlines a ~4.7 MB script per report (30× the model); matplotlib's SVG
is a few tens of KB, is drawn by the browser with no script at all, and text stays text
(``svg.fonttype: none``), so the page stays searchable. Figures come from
``matplotlib.figure.Figure`` directly (no pyplot): no global state, no GUI backend.

Each function returns one ``<svg>`` element as a string.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from matplotlib.figure import Figure

# The Okabe-Ito palette: distinguishable with the common colour-vision deficiencies.
COLOURS = ("#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442")
_STYLE: Any = {  # rc_context types its keys as Literals; these are all valid
    "svg.fonttype": "none",
    "svg.hashsalt": "edgepack",  # stable element ids: two identical builds, identical pages
    "font.size": 9,
    "axes.spines.top": False,
    "axes.spines.right": False,
    # Class names, file and op names are user text: `$x^$` must print as typed, not be parsed
    # as mathtext (which raised after the whole build, and no report was written).
    "text.parse_math": False,
}


def _figure(width: float = 5.6, height: float = 3.0) -> Figure:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


def _svg(figure: Figure) -> str:
    import matplotlib

    buffer = io.StringIO()
    with matplotlib.rc_context(_STYLE):
        figure.savefig(buffer, format="svg", metadata={"Date": None})
    text = buffer.getvalue()
    text = text[text.index("<svg") :]  # drop the XML prolog and DOCTYPE: it sits inside HTML
    # The RDF <metadata> block only names matplotlib and Dublin Core vocabularies; the page
    # carries no URI it does not need.
    start, end = text.find("<metadata>"), text.find("</metadata>")
    return text[:start] + text[end + len("</metadata>") :] if start >= 0 else text


def accuracy_chain(
    teacher: float | None,
    student: float | None,
    int8: float | None,
    metric: str = "top-1 accuracy",
) -> str:
    """Teacher → float student → int8 artifact, as bars with their values (``metric``, a
    fraction: top-1 accuracy, or a detector's mAP)."""
    import matplotlib

    with matplotlib.rc_context(_STYLE):
        figure = _figure(5.6, 2.4)
        axes = figure.add_subplot()
        names = ["teacher", "float student", "int8 artifact"]
        values = [teacher, student, int8]
        shown = [v if v is not None else 0.0 for v in values]
        bars = axes.barh(names, [v * 100 for v in shown], color=COLOURS[:3])
        labels = [f"{v:.2%}" if v is not None else "not measured" for v in values]
        axes.bar_label(bars, labels=labels, padding=3)
        low = min((v for v in values if v is not None), default=0.0)
        high = max((v for v in values if v is not None), default=1.0)
        # accuracies sit near 100 %; an mAP of 0.3 would be a sliver on a 0-100 axis
        top = 100 if metric.startswith("top-1") else min(100.0, high * 100 + 15)
        axes.set_xlim(max(0.0, low * 100 - 5), top)
        axes.invert_yaxis()
        axes.set_xlabel(f"{metric} on the held-out images (%)")
        return _svg(figure)


def tradeoff(
    points: Sequence[dict[str, Any]], teacher: float | None, metric: str = "accuracy"
) -> str:
    """Accuracy against size for each target; the marker's label gives latency. The teacher's
    accuracy is the dashed line every student is measured against."""
    import matplotlib

    with matplotlib.rc_context(_STYLE):
        figure = _figure()
        axes = figure.add_subplot()
        for colour, point in zip(COLOURS, points, strict=False):
            accuracy = point["accuracy"]
            y = accuracy * 100 if accuracy is not None else None
            if y is None:
                continue
            axes.scatter(point["size_kb"], y, s=60, color=colour, label=point["name"], zorder=3)
            latency = point.get("latency")
            note = f"{point['name']}\n{latency}" if latency else point["name"]
            axes.annotate(note, (point["size_kb"], y), textcoords="offset points", xytext=(6, 4))
        if teacher is not None:
            axes.axhline(teacher * 100, color="#555", linestyle="--", linewidth=1)
            axes.annotate(
                f"teacher {teacher:.2%}",
                (0.01, teacher * 100),
                xycoords=("axes fraction", "data"),
                textcoords="offset points",
                xytext=(0, 3),
                color="#555",
            )
        axes.set_xlabel("artifact size (KB, raw)")
        axes.set_ylabel(f"int8 {metric} (%)")
        axes.margins(x=0.3, y=0.3)
        return _svg(figure)


def size_breakdown(parts: Sequence[tuple[str, int]], top: int = 14) -> str:
    """The largest parts of the artifact as horizontal bars; the rest summed as one bar."""
    import matplotlib

    shown = list(parts[:top])
    rest = sum(size for _, size in parts[top:])
    if rest:
        shown.append((f"{len(parts) - top} smaller parts", rest))
    with matplotlib.rc_context(_STYLE):
        figure = _figure(5.6, 0.9 + 0.22 * len(shown))
        axes = figure.add_subplot()
        bars = axes.barh(
            [label for label, _ in shown], [s / 1024 for _, s in shown], color=COLOURS[0]
        )
        axes.bar_label(bars, labels=[f"{s / 1024:.1f} KB" for _, s in shown], padding=3)
        axes.invert_yaxis()
        axes.set_xlabel("KB")
        axes.margins(x=0.2)
        return _svg(figure)


def confusion(matrix: Sequence[Sequence[int]], labels: Sequence[str]) -> str:
    """Counts of true label (rows) against the int8 artifact's prediction (columns)."""
    import matplotlib
    import numpy as np

    counts = np.asarray(matrix)
    with matplotlib.rc_context(_STYLE):
        side = 2.2 + 0.42 * len(labels)
        figure = _figure(side + 1.2, side)
        axes = figure.add_subplot()
        image = axes.imshow(counts, cmap="Blues")
        figure.colorbar(image, ax=axes, shrink=0.8)
        ticks = range(len(labels))
        axes.set_xticks(ticks, labels, rotation=45, ha="right")
        axes.set_yticks(ticks, labels)
        axes.set_xlabel("predicted by the int8 artifact")
        axes.set_ylabel("true label")
        threshold = counts.max() / 2 if counts.size else 0
        for (row, column), count in np.ndenumerate(counts):
            if count:
                colour = "white" if count > threshold else "black"
                axes.text(
                    column, row, str(count), ha="center", va="center", color=colour, fontsize=7
                )
        return _svg(figure)


def distillation_curve(history: Sequence[dict[str, Any]]) -> str:
    """Mean training loss and held-out accuracy of the float student after each epoch."""
    import matplotlib

    epochs = [entry["epoch"] for entry in history]
    with matplotlib.rc_context(_STYLE):
        figure = _figure()
        axes = figure.add_subplot()
        axes.plot(epochs, [e["loss"] for e in history], marker="o", color=COLOURS[0])
        axes.set_xlabel("epoch")
        axes.set_ylabel("mean distillation loss", color=COLOURS[0])
        scored = [e for e in history if e.get("accuracy") is not None]
        if scored:
            right = axes.twinx()
            right.spines["right"].set_visible(True)
            right.plot(
                [e["epoch"] for e in scored],
                [e["accuracy"] * 100 for e in scored],
                marker="s",
                color=COLOURS[1],
            )
            right.set_ylabel("held-out accuracy (%)", color=COLOURS[1])
        axes.set_xticks(epochs if len(epochs) <= 20 else epochs[:: max(1, len(epochs) // 10)])
        return _svg(figure)


# Pareto markers by candidate kind (a point's "kind"), named in the legend: shape and colour
# both differ, so the kinds stay apart in grey print and for colour-blind readers.
_KINDS = {
    "plain": ("o", COLOURS[0], "plain network"),
    "per-tensor": ("s", COLOURS[1], "per-tensor weights"),
    "pruned": ("^", COLOURS[4], "channels pruned"),
}


def pareto(points: Sequence[dict[str, Any]], x_label: str, limit: float | None) -> str:
    """Short-run accuracy of each trained search candidate against a cost; the chosen one
    ringed, the Pareto front (no other candidate both cheaper and more accurate) joined, the
    budget dashed. A point's ``kind`` (plain, per-tensor, pruned) picks its marker."""
    import matplotlib

    ordered = sorted(points, key=lambda p: (p["x"], -p["accuracy"]))
    front, best = [], -1.0
    for point in ordered:
        if point["accuracy"] > best:
            front.append(point)
            best = point["accuracy"]
    with matplotlib.rc_context(_STYLE):
        figure = _figure()
        axes = figure.add_subplot()
        axes.plot([p["x"] for p in front], [p["accuracy"] * 100 for p in front],
                  color=COLOURS[2], linewidth=1, zorder=2)  # fmt: skip
        shown: set[str] = set()
        for point in ordered:
            y = point["accuracy"] * 100
            kind = point.get("kind", "plain")
            marker, colour, label = _KINDS.get(kind, _KINDS["plain"])
            axes.scatter(point["x"], y, s=40, marker=marker, color=colour, zorder=3,
                         label=None if kind in shown else label)  # fmt: skip
            shown.add(kind)
            if point["chosen"]:
                axes.scatter(point["x"], y, s=160, facecolors="none", edgecolors=COLOURS[3],
                             linewidths=2, zorder=4)  # fmt: skip
            axes.annotate(point["name"], (point["x"], y), textcoords="offset points",
                          xytext=(5, 3), fontsize=7)  # fmt: skip
        if limit is not None:
            axes.axvline(limit, color="#555", linestyle="--", linewidth=1)
        if shown - {"plain"}:
            # below the axes: inside, it covered the candidates' labels
            figure.legend(loc="outside lower center", ncols=3, fontsize=7, frameon=False)
        axes.set_xlabel(x_label)
        axes.set_ylabel("short-run accuracy (%)")
        axes.margins(x=0.15, y=0.2)
        return _svg(figure)
