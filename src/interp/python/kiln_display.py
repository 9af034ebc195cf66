"""In-kernel display helpers for kiln code-interpreter Python kernels.

kiln-interp runs `import kiln_display; kiln_display.install()` silently in
every Python kernel right after it starts. install():

* imports numpy, pandas, matplotlib and matplotlib.pyplot once (so the first
  user cell does not pay for them) and switches matplotlib to ipykernel's
  inline backend: figures still open at the end of a cell are shown as
  display_data with image/png + text/plain;
* registers two extra IPython display formatters:
    - "e2b/data"  for pandas DataFrame: a JSON-able dict {column: [values]};
    - "e2b/chart" for matplotlib Figure: structured chart data (see
      figure_chart() below for the exact shape).

Formatter functions never raise: any failure yields None, so the MIME type is
simply missing from the bundle and the cell is not affected.

The chart and data extraction functions are plain functions of a Figure or a
DataFrame and can be used (and tested) without IPython.
"""

import datetime as _dt
import math
import numbers
import re

__all__ = ["install", "figure_chart", "axes_chart", "dataframe_data", "CHART_MIME", "DATA_MIME"]

CHART_MIME = "e2b/chart"
DATA_MIME = "e2b/data"

_installed = False


# --------------------------------------------------------------------------
# JSON value helpers
# --------------------------------------------------------------------------

def _num(value):
    """A plain JSON number for a numeric value: NaN/inf -> None, integral
    floats -> int, numpy scalars -> Python scalars."""
    if value is None:
        return None
    if isinstance(value, bool):
        return value
    try:
        import numpy as np
        if isinstance(value, np.generic):
            value = value.item()
    except Exception:
        pass
    if isinstance(value, bool):
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        f = float(value)
        if math.isnan(f) or math.isinf(f):
            return None
        if f.is_integer() and abs(f) < 2 ** 53:
            return int(f)
        return f
    return None


def _iso(d):
    """ISO-8601 text for a datetime-like value."""
    if isinstance(d, _dt.datetime):
        return d.isoformat()
    if isinstance(d, _dt.date):
        return d.isoformat()
    return str(d)


def _json_value(value):
    """Converts one DataFrame cell to a JSON-safe value."""
    if value is None:
        return None
    try:
        import pandas as pd
        if value is pd.NaT:
            return None
        if isinstance(value, pd.Timestamp):
            return value.isoformat()
        if isinstance(value, pd.Timedelta):
            return str(value)
        if isinstance(value, pd.Period):
            return str(value)
        if isinstance(value, pd.Interval):
            return str(value)
    except Exception:
        pass
    try:
        import numpy as np
        if isinstance(value, np.datetime64):
            if np.isnat(value):
                return None
            import pandas as pd
            return pd.Timestamp(value).isoformat()
        if isinstance(value, np.timedelta64):
            if np.isnat(value):
                return None
            import pandas as pd
            return str(pd.Timedelta(value))
        if isinstance(value, np.ndarray):
            return [_json_value(v) for v in value.tolist()]
        if isinstance(value, np.generic):
            value = value.item()
    except Exception:
        pass
    if isinstance(value, bool) or isinstance(value, str):
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        f = float(value)
        if math.isnan(f) or math.isinf(f):
            return None
        return f
    if isinstance(value, numbers.Complex):
        return str(value)
    if isinstance(value, (_dt.datetime, _dt.date, _dt.time)):
        return value.isoformat()
    if isinstance(value, _dt.timedelta):
        return str(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, dict):
        return {str(k): _json_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_json_value(v) for v in value]
    try:
        import decimal
        if isinstance(value, decimal.Decimal):
            f = float(value)
            return None if (math.isnan(f) or math.isinf(f)) else f
    except Exception:
        pass
    return str(value)


def _column_name(col):
    if isinstance(col, tuple):
        return ", ".join(str(c) for c in col)
    if isinstance(col, str):
        return col
    j = _json_value(col)
    return j if isinstance(j, str) else str(col if j is None else j)


# --------------------------------------------------------------------------
# DataFrame -> e2b/data
# --------------------------------------------------------------------------

def dataframe_data(df):
    """{column name: [values...]} (pandas' to_dict(orient="list") shape) with
    JSON-safe values: NaN/NaT -> None, datetimes -> ISO strings, numpy
    scalars -> Python scalars. Duplicate column names: the later column wins,
    as with to_dict. Returns None on any failure."""
    try:
        out = {}
        for i in range(df.shape[1]):
            col = df.iloc[:, i]
            out[_column_name(df.columns[i])] = [_json_value(v) for v in col.tolist()]
        return out
    except Exception:
        return None


# --------------------------------------------------------------------------
# Figure -> e2b/chart
# --------------------------------------------------------------------------

_UNIT_RE = re.compile(r"[\(\[]\s*([^()\[\]]+?)\s*[\)\]]\s*$")


def _unit(label):
    """'Time (s)' -> 's', 'Length [m]' -> 'm', otherwise None."""
    if not label:
        return None
    m = _UNIT_RE.search(label)
    return m.group(1) if m else None


def _text_or_none(text):
    return text if text else None


def _artist_label(artist):
    """The user-given label of an artist/container; matplotlib's automatic
    labels ('_child0', '_container1', '_nolegend_') become ''."""
    try:
        label = artist.get_label()
    except Exception:
        return ""
    if label is None:
        return ""
    label = str(label)
    return "" if label.startswith("_") else label


def _axis_scale(ax, which):
    axis = ax.xaxis if which == "x" else ax.yaxis
    try:
        import matplotlib.dates as mdates
        import matplotlib.category as mcat
        converter = axis.converter
        if isinstance(converter, mcat.StrCategoryConverter):
            return "categorical"
        date_types = tuple(t for t in (getattr(mdates, "DateConverter", None),
                                       getattr(mdates, "ConciseDateConverter", None),
                                       getattr(mdates, "_SwitchableDateConverter", None))
                           if t is not None)
        if converter is not None and isinstance(converter, date_types):
            return "datetime"
        fmt = axis.get_major_formatter()
        if isinstance(fmt, (mdates.DateFormatter, mdates.AutoDateFormatter,
                            mdates.ConciseDateFormatter)):
            return "datetime"
    except Exception:
        pass
    scale = ax.get_xscale() if which == "x" else ax.get_yscale()
    if scale in ("linear", "log", "symlog", "logit", "function", "functionlog", "asinh"):
        return scale
    return "linear"


def _category_names(ax, which):
    """{position: category string} for a categorical axis."""
    axis = ax.xaxis if which == "x" else ax.yaxis
    units = getattr(axis, "units", None)
    mapping = getattr(units, "_mapping", None)
    if not mapping:
        return {}
    return {int(v): str(k) for k, v in mapping.items()}


def _coord(value, scale, categories):
    """One data coordinate (already numeric, matplotlib's internal units) as
    a JSON value for the axis scale."""
    n = _num(value)
    if n is None:
        return None
    if scale == "datetime":
        try:
            import matplotlib.dates as mdates
            return _iso(mdates.num2date(float(value)))
        except Exception:
            return n
    if scale == "categorical" and isinstance(n, int) and n in categories:
        return categories[n]
    return n


def _tick_num(value):
    """Tick locations carry floating noise from the locator arithmetic
    (0.4000000000000001); 12 significant digits remove it."""
    n = _num(value)
    if isinstance(n, float):
        return _num(float("%.12g" % n))
    return n


_MATHTEXT_RE = re.compile(r"^\$(.*)\$$", re.S)


def _plain_label(text):
    """'$\\mathdefault{10^{2}}$' (log axes) -> '10^{2}'; other labels as is."""
    text = str(text)
    m = _MATHTEXT_RE.match(text)
    if not m:
        return text
    inner = m.group(1)
    while True:
        i = inner.find("\\mathdefault{")
        if i < 0:
            break
        depth = 0
        j = i + len("\\mathdefault{") - 1
        end = -1
        for k in range(j, len(inner)):
            if inner[k] == "{":
                depth += 1
            elif inner[k] == "}":
                depth -= 1
                if depth == 0:
                    end = k
                    break
        if end < 0:
            break
        inner = inner[:i] + inner[j + 1:end] + inner[end + 1:]
    return inner


def _visible_ticks(ax, which):
    """Major tick locations inside the view interval (the ticks matplotlib
    draws) and their label texts."""
    axis = ax.xaxis if which == "x" else ax.yaxis
    locs = list(axis.get_majorticklocs())
    lo, hi = sorted(axis.get_view_interval())
    span = hi - lo
    tol = abs(span) * 1e-10 if span else 1e-10
    kept = [loc for loc in locs if lo - tol <= loc <= hi + tol]
    labels = []
    try:
        labels = [_plain_label(t) for t in axis.get_major_formatter().format_ticks(kept)]
    except Exception:
        labels = [str(_num(k)) for k in kept]
    return kept, labels


def _tick_fields(ax, chart):
    for which in ("x", "y"):
        scale = _axis_scale(ax, which)
        categories = _category_names(ax, which) if scale == "categorical" else {}
        kept, labels = _visible_ticks(ax, which)
        if scale == "datetime":
            ticks = [_coord(t, scale, categories) for t in kept]
        else:
            ticks = [_tick_num(t) for t in kept]
        chart[which + "_ticks"] = ticks
        chart[which + "_tick_labels"] = labels
        chart[which + "_scale"] = scale


def _title(ax, fallback=True):
    for loc in ("center", "left", "right"):
        try:
            t = ax.get_title(loc=loc)
        except Exception:
            t = ""
        if t:
            return t
    return _suptitle(ax.figure) if fallback else None


def _suptitle(fig):
    sup = getattr(fig, "_suptitle", None)
    if sup is not None:
        text = sup.get_text()
        if text:
            return text
    return None


def _base_2d(ax, chart_type):
    x_label = _text_or_none(ax.get_xlabel())
    y_label = _text_or_none(ax.get_ylabel())
    return {
        "type": chart_type,
        "title": _title(ax),
        "x_label": x_label,
        "y_label": y_label,
        "x_unit": _unit(x_label),
        "y_unit": _unit(y_label),
    }


def _points(xs, ys, ax):
    xscale = _axis_scale(ax, "x")
    yscale = _axis_scale(ax, "y")
    xcat = _category_names(ax, "x") if xscale == "categorical" else {}
    ycat = _category_names(ax, "y") if yscale == "categorical" else {}
    return [[_coord(x, xscale, xcat), _coord(y, yscale, ycat)] for x, y in zip(xs, ys)]


def _data_lines(ax):
    """Line2D artists that carry user data (not boxplot parts)."""
    box_artists = _box_artist_ids(ax)
    lines = []
    for line in ax.get_lines():
        if id(line) in box_artists:
            continue
        if not line.get_visible():
            continue
        lines.append(line)
    return lines


def _scatter_collections(ax):
    from matplotlib.collections import PathCollection
    out = []
    for coll in ax.collections:
        if isinstance(coll, PathCollection) and coll.get_visible():
            offsets = coll.get_offsets()
            if offsets is not None and len(offsets) > 0:
                out.append(coll)
    return out


def _bar_containers(ax):
    from matplotlib.container import BarContainer
    return [c for c in ax.containers if isinstance(c, BarContainer)]


def _wedges(ax):
    from matplotlib.patches import Wedge
    return [p for p in ax.patches if isinstance(p, Wedge)]


def _live_boxplots(ax):
    """The boxplot calls recorded on this axes whose artists are still in it."""
    records = getattr(ax, "_kiln_boxplots", None) or []
    if not records:
        return []
    present = {id(a) for a in ax.get_children()}
    live = []
    for rec in records:
        artists = rec["artists"]
        boxes = artists.get("boxes") or []
        if boxes and all(id(b) in present for b in boxes):
            live.append(rec)
    return live


def _box_artist_ids(ax):
    ids = set()
    for rec in _live_boxplots(ax):
        for group in rec["artists"].values():
            for artist in group:
                ids.add(id(artist))
    return ids


def _line_chart(ax, lines):
    chart = _base_2d(ax, "line")
    _tick_fields(ax, chart)
    elements = []
    for line in lines:
        xy = line.get_xydata()
        elements.append({
            "label": _artist_label(line),
            "points": _points(xy[:, 0], xy[:, 1], ax),
        })
    chart["elements"] = elements
    return chart


def _scatter_chart(ax, collections):
    chart = _base_2d(ax, "scatter")
    _tick_fields(ax, chart)
    elements = []
    for coll in collections:
        offsets = coll.get_offsets()
        xs = [row[0] for row in offsets]
        ys = [row[1] for row in offsets]
        elements.append({"label": _artist_label(coll), "points": _points(xs, ys, ax)})
    chart["elements"] = elements
    return chart


def _tick_label_lookup(ax, which):
    """Callable position -> tick label (the drawn label at that position, or
    the category name, or the formatted number)."""
    axis = ax.xaxis if which == "x" else ax.yaxis
    scale = _axis_scale(ax, which)
    categories = _category_names(ax, which) if scale == "categorical" else {}
    locs = list(axis.get_majorticklocs())
    try:
        labels = [_plain_label(t) for t in axis.get_major_formatter().format_ticks(locs)]
    except Exception:
        labels = [str(_num(l)) for l in locs]

    def lookup(pos):
        for loc, label in zip(locs, labels):
            if abs(loc - pos) <= 1e-9 * max(1.0, abs(pos)):
                return label
        n = _num(pos)
        if isinstance(n, int) and n in categories:
            return categories[n]
        c = _coord(pos, scale, categories)
        return c if isinstance(c, str) else str(c)

    return lookup


def _bar_chart(ax, containers):
    chart = _base_2d(ax, "bar")
    elements = []
    for container in containers:
        vertical = getattr(container, "orientation", "vertical") != "horizontal"
        lookup = _tick_label_lookup(ax, "x" if vertical else "y")
        group = _artist_label(container)
        for rect in container.patches:
            if vertical:
                pos = rect.get_x() + rect.get_width() / 2.0
                value = rect.get_height()
            else:
                pos = rect.get_y() + rect.get_height() / 2.0
                value = rect.get_width()
            elements.append({"label": lookup(pos), "value": _num(value), "group": group})
    chart["elements"] = elements
    return chart


def _pie_chart(ax, wedges):
    elements = []
    for w in wedges:
        angle = float(w.theta2) - float(w.theta1)
        elements.append({
            "label": _artist_label(w),
            "angle": _num(round(angle, 4)),
            "radius": _num(w.r),
        })
    return {"type": "pie", "title": _title(ax), "elements": elements}


def _box_chart(ax, records):
    chart = _base_2d(ax, "box_and_whisker")
    elements = []
    for rec in records:
        lookup = _tick_label_lookup(ax, "x" if rec["vert"] else "y")
        for stats, pos in zip(rec["stats"], rec["positions"]):
            label = stats.get("label")
            if label is None or label == "":
                label = lookup(pos)
            fliers = stats.get("fliers")
            fliers = [] if fliers is None else list(fliers)
            elements.append({
                "label": str(label),
                "min": _num(stats.get("whislo")),
                "first_quartile": _num(stats.get("q1")),
                "median": _num(stats.get("med")),
                "third_quartile": _num(stats.get("q3")),
                "max": _num(stats.get("whishi")),
                "outliers": [_num(v) for v in fliers],
            })
    chart["elements"] = elements
    return chart


def axes_chart(ax, in_superchart=False):
    """Chart dict for one Axes (type 'unknown' when nothing is recognized).
    The title is the axes title; a lone axes without one takes the figure's
    suptitle."""
    chart = _axes_chart(ax)
    chart["title"] = _title(ax, fallback=not in_superchart)
    return chart


def _axes_chart(ax):
    boxes = _live_boxplots(ax)
    if boxes:
        return _box_chart(ax, boxes)
    wedges = _wedges(ax)
    if wedges:
        return _pie_chart(ax, wedges)
    bars = _bar_containers(ax)
    lines = _data_lines(ax)
    scatters = _scatter_collections(ax)
    if bars and not lines and not scatters:
        return _bar_chart(ax, bars)
    if lines and not scatters and not bars:
        return _line_chart(ax, lines)
    if scatters and not lines and not bars:
        return _scatter_chart(ax, scatters)
    return {"type": "unknown", "title": None, "elements": []}


def _chart_axes(fig):
    """Visible axes of the figure, without colorbar axes."""
    out = []
    for ax in fig.axes:
        if not ax.get_visible():
            continue
        if getattr(ax, "_colorbar", None) is not None or ax.get_label() == "<colorbar>":
            continue
        out.append(ax)
    return out


def figure_chart(fig):
    """e2b/chart data for a Figure: the chart of its single axes, a
    'superchart' whose elements are the charts of each axes when it has
    several, or None for a figure without axes."""
    axes = _chart_axes(fig)
    if not axes:
        return None
    if len(axes) == 1:
        return axes_chart(axes[0])
    return {
        "type": "superchart",
        "title": _suptitle(fig),
        "elements": [axes_chart(ax, in_superchart=True) for ax in axes],
    }


def _safe(func):
    def wrapper(obj):
        try:
            return func(obj)
        except Exception:
            return None
        except RecursionError:
            return None
    wrapper.__name__ = getattr(func, "__name__", "formatter")
    return wrapper


safe_figure_chart = _safe(figure_chart)
safe_dataframe_data = _safe(dataframe_data)


# --------------------------------------------------------------------------
# boxplot recording
# --------------------------------------------------------------------------

def _patch_bxp():
    """Wraps Axes.bxp (used by Axes.boxplot, pyplot.boxplot, pandas and
    seaborn box plots) so that each call records its statistics and artists on
    the axes; the chart extractor reads them back."""
    import inspect
    from matplotlib.axes import Axes
    original = Axes.bxp
    if getattr(original, "_kiln_wrapped", False):
        return
    signature = inspect.signature(original)

    def bxp(self, *args, **kwargs):
        artists = original(self, *args, **kwargs)
        try:
            bound = signature.bind(self, *args, **kwargs)
            params = bound.arguments
            stats = [dict(s) for s in params.get("bxpstats") or []]
            positions = params.get("positions")
            if positions is None:
                positions = list(range(1, len(stats) + 1))
            vert = params.get("vert", True)
            if vert is None:
                vert = True
            records = getattr(self, "_kiln_boxplots", None)
            if records is None:
                records = []
                self._kiln_boxplots = records
            records.append({
                "stats": stats,
                "positions": [float(p) for p in positions],
                "vert": bool(vert),
                "artists": {k: list(v) for k, v in artists.items()},
            })
        except Exception:
            pass
        return artists

    bxp._kiln_wrapped = True
    bxp.__doc__ = original.__doc__
    bxp.__name__ = original.__name__
    bxp.__qualname__ = original.__qualname__
    bxp.__wrapped__ = original
    Axes.bxp = bxp


# --------------------------------------------------------------------------
# IPython integration
# --------------------------------------------------------------------------

def _make_formatter_class():
    from IPython.core.formatters import BaseFormatter
    from traitlets import ObjectName, Unicode

    class JSONDictFormatter(BaseFormatter):
        """Formatter whose values are JSON-able dicts (like application/json)."""
        _return_type = (dict, list)
        format_type = Unicode("e2b/unset")
        print_method = ObjectName("_kiln_repr_unused_")

    return JSONDictFormatter


def _register(ip, mime, cls, type_, func):
    formatters = ip.display_formatter.formatters
    formatter = formatters.get(mime)
    if formatter is None:
        formatter = cls(parent=ip.display_formatter)
        formatter.format_type = mime
        formatters[mime] = formatter
    formatter.for_type(type_, func)
    formatter.enabled = True
    active = ip.display_formatter.active_types
    if active is not None and mime not in active:
        ip.display_formatter.active_types = list(active) + [mime]


def _enable_user_site():
    """`!pip install x` as the sandbox user installs into the user site directory, which
    Python only puts on sys.path at start-up when it already exists: create it now and add
    it, so that `import x` works in the same kernel right after the install."""
    try:
        import os
        import site
        import sys
        if not site.ENABLE_USER_SITE:
            return
        path = site.getusersitepackages()
        os.makedirs(path, exist_ok=True)
        if path not in sys.path:
            site.addsitedir(path)  # also reads .pth files (editable installs)
            # Ahead of the system's packages, where Python puts it when it exists at start-up,
            # so that `pip install -U` of a Debian-packaged module takes effect.
            sys.path.remove(path)
            first_system = next((i for i, p in enumerate(sys.path)
                                 if p.endswith(("dist-packages", "site-packages"))), len(sys.path))
            sys.path.insert(first_system, path)
    except Exception:
        pass


def install(ip=None):
    """Configures the running IPython kernel (see the module docstring).
    Safe to call more than once; never raises."""
    global _installed
    try:
        if ip is None:
            from IPython import get_ipython
            ip = get_ipython()
    except Exception:
        ip = None
    _enable_user_site()
    try:
        import numpy  # noqa: F401  (paid once here, not in the first cell)
        import pandas  # noqa: F401
    except Exception:
        pass
    try:
        import matplotlib
        if ip is not None:
            matplotlib.use("module://matplotlib_inline.backend_inline")
        import matplotlib.pyplot  # noqa: F401
        _patch_bxp()
    except Exception:
        pass
    if ip is None:
        return
    try:
        ip.enable_matplotlib("inline")
    except Exception:
        pass
    try:
        cls = _make_formatter_class()
    except Exception:
        return
    try:
        from matplotlib.figure import Figure
        _register(ip, CHART_MIME, cls, Figure, safe_figure_chart)
    except Exception:
        pass
    try:
        import pandas as pd
        _register(ip, DATA_MIME, cls, pd.DataFrame, safe_dataframe_data)
    except Exception:
        pass
    _installed = True
