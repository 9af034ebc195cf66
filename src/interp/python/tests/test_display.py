"""kiln_display: chart extraction (exact values for known figures), DataFrame
data, formatter failure safety. Runs without a kernel (Agg backend)."""

import datetime
import json
import os
import sys
import unittest

os.environ["MPLBACKEND"] = "Agg"
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import matplotlib  # noqa: E402
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

import kiln_display  # noqa: E402

kiln_display.install()  # no IPython here: imports + boxplot recording only

TICKS_1_3 = [1, 1.25, 1.5, 1.75, 2, 2.25, 2.5, 2.75, 3]
LABELS_1_3 = ["1.00", "1.25", "1.50", "1.75", "2.00", "2.25", "2.50", "2.75", "3.00"]


def chart_of(fig):
    try:
        chart = kiln_display.figure_chart(fig)
        # must be plain JSON, and stable through a JSON round trip
        assert json.loads(json.dumps(chart, allow_nan=False)) == chart
        return chart
    finally:
        plt.close(fig)


class LineChartTest(unittest.TestCase):
    def test_squares(self):
        fig, ax = plt.subplots()
        ax.plot([1, 2, 3], [1, 4, 9], label="squares")
        ax.set_title("Squares")
        ax.set_xlabel("Time (s)")
        ax.set_ylabel("Value")
        self.assertEqual(chart_of(fig), {
            "type": "line",
            "title": "Squares",
            "x_label": "Time (s)",
            "y_label": "Value",
            "x_unit": "s",
            "y_unit": None,
            "x_ticks": TICKS_1_3,
            "x_tick_labels": LABELS_1_3,
            "x_scale": "linear",
            "y_ticks": [1, 2, 3, 4, 5, 6, 7, 8, 9],
            "y_tick_labels": ["1", "2", "3", "4", "5", "6", "7", "8", "9"],
            "y_scale": "linear",
            "elements": [{"label": "squares", "points": [[1, 1], [2, 4], [3, 9]]}],
        })

    def test_two_lines_and_unlabeled(self):
        fig, ax = plt.subplots()
        x = np.linspace(0, 1, 3)
        ax.plot(x, x * 2, label="double")
        ax.plot(x, x)
        chart = chart_of(fig)
        self.assertEqual(chart["type"], "line")
        self.assertEqual(chart["elements"], [
            {"label": "double", "points": [[0, 0], [0.5, 1], [1, 2]]},
            {"label": "", "points": [[0, 0], [0.5, 0.5], [1, 1]]},
        ])
        self.assertEqual(chart["y_ticks"], [0, 0.25, 0.5, 0.75, 1, 1.25, 1.5, 1.75, 2])

    def test_suptitle_used_when_no_axes_title(self):
        fig, ax = plt.subplots()
        ax.plot([0, 1], [0, 1])
        fig.suptitle("Figure title")
        self.assertEqual(chart_of(fig)["title"], "Figure title")

    def test_datetime_axis(self):
        fig, ax = plt.subplots()
        ax.plot([datetime.date(2023, 9, 1), datetime.date(2023, 9, 3)], [1, 2], label="d")
        chart = chart_of(fig)
        self.assertEqual(chart["x_scale"], "datetime")
        self.assertEqual(chart["elements"], [{"label": "d", "points": [
            ["2023-09-01T00:00:00+00:00", 1], ["2023-09-03T00:00:00+00:00", 2]]}])
        self.assertEqual(chart["x_ticks"][0], "2023-09-01T00:00:00+00:00")
        self.assertEqual(chart["x_ticks"][-1], "2023-09-03T00:00:00+00:00")
        self.assertEqual(len(chart["x_ticks"]), 9)
        self.assertEqual(chart["x_tick_labels"][0], "09-01 00")
        self.assertEqual(chart["y_ticks"], [1, 1.2, 1.4, 1.6, 1.8, 2])
        self.assertEqual(chart["y_tick_labels"], ["1.0", "1.2", "1.4", "1.6", "1.8", "2.0"])

    def test_categorical_axis(self):
        fig, ax = plt.subplots()
        ax.plot(["a", "b", "c"], [1, 2, 3])
        chart = chart_of(fig)
        self.assertEqual(chart["x_scale"], "categorical")
        self.assertEqual(chart["x_ticks"], [0, 1, 2])
        self.assertEqual(chart["x_tick_labels"], ["a", "b", "c"])
        self.assertEqual(chart["elements"][0]["points"], [["a", 1], ["b", 2], ["c", 3]])

    def test_scales(self):
        fig, ax = plt.subplots()
        ax.plot([1, 10, 100], [1, 2, 3])
        ax.set_xscale("log")
        chart = chart_of(fig)
        self.assertEqual(chart["x_scale"], "log")
        self.assertEqual(chart["x_ticks"], [1, 10, 100])
        self.assertEqual(chart["x_tick_labels"], ["10^{0}", "10^{1}", "10^{2}"])
        for scale in ("symlog", "asinh", "logit"):
            fig, ax = plt.subplots()
            ax.plot([0.1, 0.5, 0.9], [0.2, 0.4, 0.6])
            ax.set_yscale(scale)
            self.assertEqual(chart_of(fig)["y_scale"], scale)

    def test_pandas_plot(self):
        df = pd.DataFrame({"x": [1, 2, 3], "y": [2, 4, 6]})
        ax = df.plot(x="x", y="y")
        chart = chart_of(ax.figure)
        self.assertEqual(chart["type"], "line")
        self.assertEqual(chart["x_label"], "x")
        self.assertEqual(chart["elements"], [{"label": "y", "points": [[1, 2], [2, 4], [3, 6]]}])


class ScatterChartTest(unittest.TestCase):
    def test_scatter(self):
        fig, ax = plt.subplots()
        ax.scatter([1, 2, 3], [3, 1, 2], label="pts")
        ax.scatter([1.5], [2.5], label="one")
        ax.set_xlabel("Length [m]")
        self.assertEqual(chart_of(fig), {
            "type": "scatter",
            "title": None,
            "x_label": "Length [m]",
            "y_label": None,
            "x_unit": "m",
            "y_unit": None,
            "x_ticks": TICKS_1_3,
            "x_tick_labels": LABELS_1_3,
            "x_scale": "linear",
            "y_ticks": TICKS_1_3,
            "y_tick_labels": LABELS_1_3,
            "y_scale": "linear",
            "elements": [
                {"label": "pts", "points": [[1, 3], [2, 1], [3, 2]]},
                {"label": "one", "points": [[1.5, 2.5]]},
            ],
        })


class BarChartTest(unittest.TestCase):
    def test_bar(self):
        fig, ax = plt.subplots()
        ax.bar(["a", "b", "c"], [3, 5, 2], label="sales")
        ax.set_title("Sales")
        ax.set_xlabel("Authors")
        ax.set_ylabel("Books (count)")
        self.assertEqual(chart_of(fig), {
            "type": "bar",
            "title": "Sales",
            "x_label": "Authors",
            "y_label": "Books (count)",
            "x_unit": None,
            "y_unit": "count",
            "elements": [
                {"label": "a", "value": 3, "group": "sales"},
                {"label": "b", "value": 5, "group": "sales"},
                {"label": "c", "value": 2, "group": "sales"},
            ],
        })

    def test_stacked_groups(self):
        fig, ax = plt.subplots()
        ax.bar(["a", "b"], [3, 5], label="2022")
        ax.bar(["a", "b"], [1, 2], bottom=[3, 5], label="2023")
        self.assertEqual(chart_of(fig)["elements"], [
            {"label": "a", "value": 3, "group": "2022"},
            {"label": "b", "value": 5, "group": "2022"},
            {"label": "a", "value": 1, "group": "2023"},
            {"label": "b", "value": 2, "group": "2023"},
        ])

    def test_barh_unlabeled(self):
        fig, ax = plt.subplots()
        ax.barh(["a", "b"], [3, 5.5])
        self.assertEqual(chart_of(fig)["elements"], [
            {"label": "a", "value": 3, "group": ""},
            {"label": "b", "value": 5.5, "group": ""},
        ])


class PieChartTest(unittest.TestCase):
    def test_pie(self):
        fig, ax = plt.subplots()
        ax.pie([1, 2, 3], labels=["x", "y", "z"])
        ax.set_title("Pie")
        self.assertEqual(chart_of(fig), {
            "type": "pie",
            "title": "Pie",
            "elements": [
                {"label": "x", "angle": 60, "radius": 1},
                {"label": "y", "angle": 120, "radius": 1},
                {"label": "z", "angle": 180, "radius": 1},
            ],
        })

    def test_pie_radius(self):
        fig, ax = plt.subplots()
        ax.pie([1, 1, 2], labels=["x", "y", "z"], radius=1.5)
        self.assertEqual([(e["angle"], e["radius"]) for e in chart_of(fig)["elements"]],
                         [(90, 1.5), (90, 1.5), (180, 1.5)])


class BoxChartTest(unittest.TestCase):
    def test_boxplot(self):
        fig, ax = plt.subplots()
        ax.boxplot([[1, 2, 3, 4, 5, 20], [2, 3, 4, 5, 6]], labels=["A", "B"])
        ax.set_ylabel("Score (pt)")
        self.assertEqual(chart_of(fig), {
            "type": "box_and_whisker",
            "title": None,
            "x_label": None,
            "y_label": "Score (pt)",
            "x_unit": None,
            "y_unit": "pt",
            "elements": [
                {"label": "A", "min": 1, "first_quartile": 2.25, "median": 3.5,
                 "third_quartile": 4.75, "max": 5, "outliers": [20]},
                {"label": "B", "min": 2, "first_quartile": 3, "median": 4,
                 "third_quartile": 5, "max": 6, "outliers": []},
            ],
        })

    def test_label_from_ticks_horizontal(self):
        fig, ax = plt.subplots()
        ax.boxplot([[1, 2, 3, 4, 100]], vert=False)
        self.assertEqual(chart_of(fig)["elements"], [
            {"label": "1", "min": 1, "first_quartile": 2, "median": 3,
             "third_quartile": 4, "max": 4, "outliers": [100]}])

    def test_seaborn(self):
        import seaborn as sns
        fig, ax = plt.subplots()
        sns.boxplot(data=pd.DataFrame({"u": [1, 2, 3, 4], "v": [2, 3, 4, 9]}), ax=ax)
        chart = chart_of(fig)
        self.assertEqual(chart["type"], "box_and_whisker")
        self.assertEqual([(e["label"], e["median"]) for e in chart["elements"]], [("u", 2.5), ("v", 3.5)])

    def test_cleared_axes_forget_boxes(self):
        fig, ax = plt.subplots()
        ax.boxplot([[1, 2, 3]])
        ax.cla()
        ax.plot([1, 2], [3, 4])
        self.assertEqual(chart_of(fig)["type"], "line")


class SuperChartTest(unittest.TestCase):
    def test_two_axes(self):
        fig, (a1, a2) = plt.subplots(1, 2)
        a1.plot([0, 1], [0, 1], label="l")
        a1.set_title("left")
        a2.bar(["p", "q"], [3, 4])
        fig.suptitle("Two")
        chart = chart_of(fig)
        self.assertEqual(chart["type"], "superchart")
        self.assertEqual(chart["title"], "Two")
        self.assertEqual([c["type"] for c in chart["elements"]], ["line", "bar"])
        self.assertEqual(chart["elements"][0]["title"], "left")
        self.assertIsNone(chart["elements"][1]["title"])
        self.assertEqual(chart["elements"][0]["elements"], [{"label": "l", "points": [[0, 0], [1, 1]]}])
        self.assertEqual(chart["elements"][0]["y_ticks"], [0, 0.2, 0.4, 0.6, 0.8, 1])
        self.assertEqual(chart["elements"][1]["elements"], [
            {"label": "p", "value": 3, "group": ""}, {"label": "q", "value": 4, "group": ""}])


class UnknownChartTest(unittest.TestCase):
    def test_unknown_and_empty(self):
        fig, ax = plt.subplots()
        ax.imshow([[1, 2], [3, 4]])
        self.assertEqual(chart_of(fig), {"type": "unknown", "title": None, "elements": []})
        fig, ax = plt.subplots()
        ax.plot([1, 2])
        ax.scatter([1], [1])
        self.assertEqual(chart_of(fig)["type"], "unknown")
        self.assertIsNone(chart_of(plt.figure()))

    def test_deterministic(self):
        def make():
            fig, ax = plt.subplots()
            ax.plot(np.arange(10), np.sin(np.arange(10)), label="sin")
            return chart_of(fig)
        self.assertEqual(json.dumps(make()), json.dumps(make()))


class SafetyTest(unittest.TestCase):
    def test_formatter_swallows_errors(self):
        class Broken:
            @property
            def axes(self):
                raise RuntimeError("boom")
        self.assertIsNone(kiln_display.safe_figure_chart(Broken()))
        self.assertIsNone(kiln_display.safe_dataframe_data(object()))

    def test_nan_data_points_are_null(self):
        fig, ax = plt.subplots()
        ax.plot([1, 2, 3], [1, float("nan"), 3])
        self.assertEqual(chart_of(fig)["elements"][0]["points"], [[1, 1], [2, None], [3, 3]])


class DataFrameDataTest(unittest.TestCase):
    def test_basic(self):
        df = pd.DataFrame({"a": [1, 2, 3], "b": ["x", "y", "z"]})
        self.assertEqual(kiln_display.dataframe_data(df), {"a": [1, 2, 3], "b": ["x", "y", "z"]})

    def test_json_safe(self):
        df = pd.DataFrame({
            "f": [0.5, float("nan"), np.inf],
            "t": pd.to_datetime(["2020-01-01", None, "2020-01-03 04:05:06"]),
            "d": [pd.Timedelta("1s"), pd.NaT, pd.Timedelta("2h")],
            "o": [None, {"k": 1}, [1, 2]],
            "b": [True, False, True],
            "i": np.array([1, 2, 3], dtype=np.int64),
        })
        data = kiln_display.dataframe_data(df)
        self.assertEqual(json.loads(json.dumps(data, allow_nan=False)), data)
        self.assertEqual(data, {
            "f": [0.5, None, None],
            "t": ["2020-01-01T00:00:00", None, "2020-01-03T04:05:06"],
            "d": ["0 days 00:00:01", None, "0 days 02:00:00"],
            "o": [None, {"k": 1}, [1, 2]],
            "b": [True, False, True],
            "i": [1, 2, 3],
        })

    def test_column_names(self):
        df = pd.DataFrame([[1, 2]], columns=pd.MultiIndex.from_tuples([("a", "x"), ("a", "y")]))
        self.assertEqual(kiln_display.dataframe_data(df), {"a, x": [1], "a, y": [2]})
        df = pd.DataFrame([[1, 2]], columns=[0, 1])
        self.assertEqual(kiln_display.dataframe_data(df), {"0": [1], "1": [2]})


if __name__ == "__main__":
    unittest.main()
