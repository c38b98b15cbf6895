"""Figures draw what their labels say."""
import numpy as np
import torch

from dprp_lib.course import plots


def test_singular_values_are_drawn_in_index_order():
    s = torch.tensor([1.0, 3.0, 2.0, -0.5])  # unsorted, one negative: |s| in the stored order
    fig = plots.singular_values({"layer": s}, normalise=False, log=False)
    (line,) = fig.axes[0].get_lines()
    assert np.allclose(line.get_xdata(), [1, 2, 3, 4]) and np.allclose(line.get_ydata(), [1.0, 3.0, 2.0, 0.5])
    normalised = plots.singular_values({"layer": s}).axes[0].get_lines()[0].get_ydata()
    assert np.allclose(normalised, [1.0, 3.0, 2.0, 0.5])  # ÷ |s_1|, still in index order
    bars = plots.singular_values({"layer": s, "twice": 2 * s}, normalise=False, log=False, bars=True).axes[0].patches
    assert not plots.singular_values({"layer": s}, bars=True).axes[0].get_lines()
    first, second = bars[:4], bars[4:]
    assert [b.get_height() for b in first] == [1.0, 3.0, 2.0, 0.5] and [b.get_height() for b in second] == [2.0, 6.0, 4.0, 1.0]
    assert all(a.get_x() < b.get_x() for a, b in zip(first, second))  # side by side at each index


def test_deploy_speedups_draw_one_bar_per_runtime_and_size():
    result = {"model": "resnet20", "threads": 2,
              "sizes": {"~50%": {"deployed_fraction": 0.48}, "~30%": {"deployed_fraction": 0.31}},
              "speedup_vs_dense": {"eager": {"1": {"~50%": 1.1, "~30%": 1.4}, "256": {"~50%": 0.9, "~30%": 1.2}},
                                   "onnxruntime": {"1": {"~50%": 1.0, "~30%": 1.3}, "256": {"~50%": 1.5, "~30%": 2.0}}}}
    fig = plots.deploy_speedups(result)
    assert [ax.get_title() for ax in fig.axes] == ["batch 1", "batch 256"]
    heights = sorted(round(p.get_height(), 2) for p in fig.axes[1].patches)
    assert heights == [0.9, 1.2, 1.5, 2.0]


def test_tradeoff_labels_of_close_points_do_not_overlap():
    points = [{"deployed_fraction": 0.73, "test_acc": 0.534, "label": "×0", "group": "l1"},
              {"deployed_fraction": 0.731, "test_acc": 0.533, "label": "×0.5", "group": "hoyer"},
              {"deployed_fraction": 0.732, "test_acc": 0.5335, "label": "×0.5", "group": "hoyer_square"},
              {"deployed_fraction": 0.3, "test_acc": 0.47, "label": "×2", "group": "l1"}]
    fig = plots.tradeoff(points)
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    boxes = [t.get_window_extent(renderer) for t in fig.axes[0].texts]
    assert len(boxes) == 4
    assert not any(a.overlaps(b) for i, a in enumerate(boxes) for b in boxes[i + 1:])


def _texts(fig):
    return " | ".join(t.get_text() for t in fig.axes[0].texts)


def test_factored_layer_diagram_counts_the_weights_of_each_form():
    text = _texts(plots.factored_layer_diagram(c_in=16, c_out=32, k=3, r=8))
    # dense 32×144; factored: Vᵀ 144·8, U 32·8, and U, s, V as trained 8·(32 + 144 + 1)
    assert "4,608 weights" in text and "1,152 weights" in text and "256 weights" in text and "1,416 numbers" in text


def test_dprp_loop_diagram_names_each_step():
    text = _texts(plots.dprp_loop_diagram())
    for step in ("svdify", "train one epoch", "cut due", "energy rule", "optimizer state", "compact()"):
        assert step in text, step


def test_energy_cut_keeps_the_leading_values_in_each_order():
    s = torch.tensor([3.0, 0.2, 2.0, 1.0])
    fig = plots.energy_cut(s, 0.1)
    assert [ax.get_title() for ax in fig.axes] == ["as stored (index order): keeps 3 of 4", "sorted: keeps 2 of 4"]
    stored = [round(p.get_height(), 2) for p in fig.axes[0].patches]
    assert stored == [3.0, 0.2, 2.0, 1.0]  # drawn in the stored order, not sorted


def test_break_even_figure_crosses_one_at_the_break_even_ranks():
    fig = plots.break_even(64, 576)
    trained, deployed = fig.axes[0].get_lines()[:2]
    r = trained.get_xdata()
    assert np.allclose(trained.get_ydata(), r * (64 + 576 + 1) / (64 * 576))
    assert np.allclose(deployed.get_ydata(), r * (64 + 576) / (64 * 576))


def test_tradeoff_labels_sit_nearest_their_own_points():
    """Chapter 06's case: dense (51.1%) and posthoc (52.4%) at the same size, 1.3 points apart."""
    import numpy as np

    from dprp_lib.course import plots

    points = [{"label": "dense", "deployed_fraction": 1.0, "test_acc": 0.511},
              {"label": "dprp", "deployed_fraction": 0.415, "test_acc": 0.452},
              {"label": "svd-training", "deployed_fraction": 0.78, "test_acc": 0.513},
              {"label": "posthoc", "deployed_fraction": 1.0, "test_acc": 0.524},
              {"label": "posthoc at DPRP's ranks", "deployed_fraction": 0.415, "test_acc": 0.113}]
    fig = plots.tradeoff(points)
    ax = fig.axes[0]
    renderer = fig.canvas.get_renderer()
    centres = ax.transData.transform([(p["deployed_fraction"], p["test_acc"]) for p in points])
    texts = {a.get_text(): a for a in ax.texts}
    for i, p in enumerate(points):
        box = texts[p["label"]].get_window_extent(renderer)
        # the nearest marker to the label's box is its own point
        gaps = [np.hypot(max(box.x0 - cx, 0, cx - box.x1), max(box.y0 - cy, 0, cy - box.y1)) for cx, cy in centres]
        assert int(np.argmin(gaps)) == i, (p["label"], gaps)


def test_grouped_bars_start_every_axis_at_zero():
    """Bars are read by their height: an accuracy axis that starts at 0.35 makes 48% look twice 42%."""
    from dprp_lib.course import plots

    rows = [{"variant": v, "test_acc": a, "test_acc_min": a - 0.01, "test_acc_max": a + 0.01,
             "test_acc_values": [a - 0.01, a + 0.01]} for v, a in (("all three", 0.48), ("no sorting", 0.42))]
    fig = plots.grouped_bars(rows, [("test_acc", "test accuracy")])
    assert fig.axes[0].get_ylim()[0] == 0


def _bars(ax):
    """The bars of bar() calls (axvspan shading is a patch too, but in no container)."""
    return [p for c in ax.containers for p in c]


def test_layer_form_speedups_draw_a_bar_per_timed_layer_and_form_and_mark_the_kept_one():
    from matplotlib.colors import to_rgb

    from dprp_lib.course import plots

    layers = [{"layer": "conv1", "rank": "9/16", "dense_ms": 2.0, "factored_ms": 4.0, "padded_ms": None, "form": "dense"},
              {"layer": "layer1.0.conv1", "rank": "8/16", "dense_ms": 3.0, "factored_ms": 2.0, "padded_ms": 1.5,
               "form": "padded"},
              {"layer": "layer2.0.conv1", "rank": "16/32", "dense_ms": 6.0, "factored_ms": 3.0, "padded_ms": 4.0,
               "form": "factored"},
              {"layer": "fc", "rank": "9/10", "dense_ms": None, "factored_ms": None, "padded_ms": None, "form": "dense"}]
    ax = plots.layer_form_speedups(layers).axes[0]
    bars = _bars(ax)
    assert len(bars) == 5  # 3 timed layers × 2 forms, less conv1's untimed padded form; fc is left out
    assert sorted(round(b.get_height(), 3) for b in bars) == [0.5, 1.5, 1.5, 2.0, 2.0]  # dense time / form time
    assert [t.get_text() for t in ax.get_xticklabels()] == ["conv1 (9/16)", "layer1.0.conv1 (8/16)",
                                                            "layer2.0.conv1 (16/32)"]
    # the kept form is coloured, the others grey: one coloured bar where a factored form was kept, the tallest
    grey = to_rgb("0.72")
    coloured = [b for b in bars if to_rgb(b.get_facecolor()) != grey]
    assert sorted((round(b.get_x() + b.get_width() / 2), round(b.get_height(), 3)) for b in coloured) == [(1, 2.0), (2, 2.0)]
    lines = [ln for ln in ax.get_lines() if ln.get_linestyle() == "--"]
    assert len(lines) == 1 and set(lines[0].get_ydata()) == {1.0}  # "as fast as dense"
    assert ax.get_ylim()[0] == 0


def test_layer_form_speedups_of_the_committed_benchmark_colour_exactly_the_bars_above_one():
    """deploy() keeps the fastest form: on chapter 02's data a layer's coloured bar is its tallest, and
    there is one exactly where that bar rises above 1× (else the layer stays dense, all grey)."""
    import json

    from matplotlib.colors import to_rgb

    import dprp_lib as dprp
    from dprp_lib.course import plots

    bench = json.loads((dprp.paths.ROOT / "results" / "benchmarks" / "deploy-cpu.json").read_text())
    layers = bench["layers_50pct"]["eager"]
    ax = plots.layer_form_speedups(layers).axes[0]
    bars = _bars(ax)
    timed = [r for r in layers if r["dense_ms"]]
    assert len(bars) == sum(1 for r in timed for k, v in r.items() if k.endswith("_ms") and k != "dense_ms" and v)
    for i, row in enumerate(timed):
        own = [b for b in bars if round(b.get_x() + b.get_width() / 2) == i]
        tallest = max(own, key=lambda b: b.get_height())
        coloured = [b for b in own if to_rgb(b.get_facecolor()) != to_rgb("0.72")]
        assert coloured == ([tallest] if tallest.get_height() > 1 else []), row["layer"]


def test_full_data_overview_gives_each_variant_its_colour_and_keeps_the_legend_off_the_data():
    from matplotlib.colors import to_hex

    from dprp_lib.course import plots

    def row(variant, method, fraction, accs):
        return {"variant": variant, "method": method, "deployed_fraction": fraction,
                "test_acc": 100 * sum(accs) / len(accs), "test_acc_values": accs}

    report = {"rows": [row("dense", "dense", 1.0, [0.86, 0.87]), row("dprp 50%", "dprp", 0.49, [0.85, 0.86]),
                       row("thin dense", "dense", 0.5, [0.84, 0.85])]}
    paired = [{"variant": "thin dense", "reference": "dprp 50%", "diffs": [-0.5, -1.5],
               "interval": (-1.0, -7.4, 5.4)}]
    fig = plots.full_data_overview(report, paired, [{"deployed_fraction": 0.3, "test_acc": 0.83},
                                                    {"deployed_fraction": 0.9, "test_acc": 0.855}])
    left, right = fig.axes
    rings = [c for c in left.collections if c.get_label() and not c.get_label().startswith("_")]
    colours = [to_hex(c.get_edgecolor()[0]) for c in rings]
    assert len(rings) == 3 and len(set(colours)) == 3 and colours[0] == "#000000"  # thin dense is not dense's black
    assert sorted(rings[0].get_offsets()[0]) == sorted([1.0, 86.5])  # the ringed mean sits at its variant's mean
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig).draw()  # lay the figure out as it is shown
    renderer = fig.canvas.get_renderer()
    legend = left.get_legend().get_window_extent(renderer)
    assert legend.y1 <= left.get_window_extent(renderer).y0  # below the panel, not over its points
    low, high = right.get_xlim()
    assert low <= -7.4 and high >= 5.4  # the whole interval is drawn
    assert [t.get_text() for t in right.get_yticklabels()] == ["thin dense"]


def test_results_against_paper_draws_one_interval_kind_one_colour_a_method_and_keeps_the_key_off_the_data():
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.colors import to_hex
    from matplotlib.container import ErrorbarContainer

    from dprp_lib.course import plots

    def row(label, method, fraction, diffs, interval):
        return {"label": label, "method": method, "deployed_fraction": fraction, "diffs": diffs, "interval": interval}

    changes = {"laptop mode: a long panel title that names its data set, training images, epochs and seeds, "
               "long enough to have to wrap": [row("dprp", "dprp", 0.41, [-8.0, -2.0, -5.0], (-5.0, -12.5, 2.5)),
                                               row("posthoc", "posthoc", 1.0, [0.5, 0.1, 0.4], (0.33, -0.2, 0.9))],
               "whole data set": [row("dprp 94%", "dprp", 0.93, [-0.5, -1.1, -0.8], (-0.8, -1.9, 0.3)),
                                  row("thin dense", "dense", 0.5, [-1.5, -2.0], (-1.75, -4.9, 1.4))],
               "paper's length": [row("dprp 94%", "dprp", 0.9, [-1.0], None)],
               "nothing committed yet": []}
    published = [{"label": "TRP", "params": (0.3, 0.52), "acc": (90.5, 90.9)},
                 {"label": "dense", "params": (0.99, 1.01), "acc": (91.2, 91.3)}]
    fig = plots.results_against_paper(changes, {"label": "paper: +1.18", "delta_acc": 1.18}, published)
    FigureCanvasAgg(fig).draw()
    renderer = fig.canvas.get_renderer()
    *panels, pub = fig.axes
    assert len(panels) == 3  # the empty panel is left out; the published one comes last
    # every row named on its axis; a method's colour is the same in every panel, and no two methods share one
    colours = {}
    for ax, rows in zip(panels, [r for r in changes.values() if r]):
        ticks = ax.get_yticklabels()
        assert [t.get_text() for t in ticks][::-1] == [f"{r['label']}  ({r['deployed_fraction']:.0%})" for r in rows][::-1]
        for t, r in zip(ticks, rows):
            assert colours.setdefault(r["method"], to_hex(t.get_color())) == to_hex(t.get_color())
    assert len(set(colours.values())) == len(colours) == 3
    # one kind of interval: the bars drawn are exactly the given (95%) intervals, and the key says which
    bars = sorted(tuple(round(x, 6) for x in (seg[0][0], seg[1][0]))
                  for ax in panels for c in ax.containers if isinstance(c, ErrorbarContainer)
                  for seg in c.lines[2][0].get_segments())
    assert bars == sorted([(-12.5, 2.5), (-0.2, 0.9), (-1.9, 0.3), (-4.9, 1.4)])  # the one-seed row has none
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert any("95% interval (t" in s for s in labels) and "one seed: no interval" in labels
    assert not any("range" in s and "interval" in s and "not" not in s for s in labels)  # the range is not an interval
    for ax in panels:  # the paper's claim in every change panel, on one shared x scale
        assert any(list(ln.get_xdata()) == [1.18, 1.18] and ln.get_linestyle() == "--" for ln in ax.get_lines())
        assert ax.get_xlim() == panels[0].get_xlim()
    # the key sits outside every panel, and no title runs off the figure
    key = fig.legends[0].get_window_extent(renderer)
    assert not any(key.overlaps(ax.get_window_extent(renderer)) for ax in fig.axes)
    width = fig.bbox.width
    for ax in fig.axes:
        box = ax.title.get_window_extent(renderer) if ax.get_title() else ax._left_title.get_window_extent(renderer)
        assert 0 <= box.x0 and box.x1 <= width, ax._left_title.get_text()


def test_tradeoff_draws_error_bars_only_where_given():
    from matplotlib.container import ErrorbarContainer

    plain = [{"deployed_fraction": 0.7, "test_acc": 0.5, "label": "a", "group": "l1"},
             {"deployed_fraction": 0.4, "test_acc": 0.45, "label": "b", "group": "hoyer"}]
    ax = plots.tradeoff(plain).axes[0]
    assert not [c for c in ax.containers if isinstance(c, ErrorbarContainer)] and len(ax.collections) == 2
    noisy = [dict(p, yerr=0.03) for p in plain]
    bars = [c for c in plots.tradeoff(noisy).axes[0].containers if isinstance(c, ErrorbarContainer)]
    assert len(bars) == 2 and all(c.has_yerr and not c.has_xerr for c in bars)


def test_descent_to_bound_draws_the_excess_over_each_bound_against_step():
    fig = plots.descent_to_bound({"k = 1": [5.0, 3.5, 3.0], "k = 2": [2.0, 1.0 + 1e-20]}, {"k = 1": 3.0, "k = 2": 1.0}, every=10)
    first, second = fig.axes[0].get_lines()
    assert list(first.get_xdata()) == [0, 10, 20] and np.allclose(first.get_ydata(), [2.0, 0.5, 1e-15])
    assert np.allclose(second.get_ydata(), [1.0, 1e-15])  # round-off below the bound is drawn at the floor
    assert fig.axes[0].get_yscale() == "log"
