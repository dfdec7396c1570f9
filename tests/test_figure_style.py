"""The figures' two layouts and their readability check (``paper_figs._style``)."""

from __future__ import annotations

import warnings

import matplotlib.pyplot as plt
import pytest

from paper_figs import _style, draw_layouts


def test_column_layout_reflows_the_same_axes_grid_into_a_column():
  with _style.layout("column"):
    fig, axes = _style.figure(2, 3, width=_style.PAGE, height=4.0)
  assert axes.shape == (2, 3) and fig.get_figwidth() == _style.COLUMN
  # reading order is kept: row-major panels fill rows of two
  rows = [ax.get_subplotspec().rowspan.start for ax in axes.ravel()]
  cols = [ax.get_subplotspec().colspan.start for ax in axes.ravel()]
  assert rows == [0, 0, 1, 1, 2, 2] and cols == [0, 2, 0, 2, 0, 2]
  # three rows of 0.75 × the page's row height (the panels are 0.73 × as wide)
  assert fig.get_figheight() == pytest.approx(3 * 0.75 * 4.0 / 2)
  plt.close(fig)
  with _style.layout("page"):
    fig, axes = _style.figure(2, 3, width=_style.PAGE, height=4.0)
  assert axes.shape == (2, 3) and fig.get_figwidth() == _style.PAGE
  plt.close(fig)


def test_column_grid_centres_a_short_last_row_and_validates():
  assert _style.column_grid(1, 3, 2) == [(0, 0, 2), (0, 2, 4), (1, 1, 3)]
  assert _style.column_grid(1, 2, 1) == [(0, 0, 2), (1, 0, 2)]
  with _style.layout("column"), pytest.raises(ValueError, match="column_ncols must be in"):
    _style.figure(1, 3, width=_style.PAGE, column_ncols=4)
  with pytest.raises(ValueError, match="layout must be one of page, column; got 'poster'"):
    with _style.layout("poster"):
      pass


def test_layout_block_restores_the_layout_and_rc_even_when_drawing_fails():
  fontsize = plt.rcParams["legend.fontsize"]
  with pytest.raises(RuntimeError), _style.layout("column"):
    assert plt.rcParams["legend.fontsize"] == _style.RC_COLUMN["legend.fontsize"]
    raise RuntimeError("a figure failed")
  assert _style.current_layout() == "page"
  assert plt.rcParams["legend.fontsize"] == fontsize  # the column's keys do not leak


def test_cli_layout_choices_are_the_figures_layouts():
  from paper_figs import LAYOUT_CHOICES
  from vanish import cli

  parser = cli.build_parser()
  reproduce = parser._subparsers._group_actions[0].choices["reproduce"]
  (layout,) = [a for a in reproduce._actions if a.dest == "layout"]
  assert layout.choices == list(LAYOUT_CHOICES) and layout.default == "both"
  assert {x for v in LAYOUT_CHOICES.values() for x in v} == set(_style.LAYOUTS)


def test_wrap_breaks_at_spaces_but_never_inside_a_formula():
  fig = plt.figure()
  renderer = fig.canvas.get_renderer()
  text = r"one-neuron chain, $\varepsilon = 10^{-3}$, width 64, depth 50"
  wrapped = _style.wrap(text, 60, fontsize=8, renderer=renderer)
  lines = wrapped.split("\n")
  assert len(lines) >= 3 and " ".join(lines) == text
  assert all(line.count("$") % 2 == 0 for line in lines)  # each formula on one line
  assert _style.wrap(text, 1000, fontsize=8, renderer=renderer) == text
  plt.close(fig)


def test_text_collisions_finds_crowded_ticks_and_text_in_another_panel():
  fig, axes = _style.figure(1, 2, width=_style.COLUMN, height=1.5)
  assert _style.text_collisions(fig) == []
  axes[0, 0].set_xticks(range(0, 100_001, 5_000))  # 21 wide labels on a 1.4 in axis
  axes[0, 0].set_xlim(0, 100_000)
  far = axes[0, 1].text(-0.6, 0.5, "far into panel 1", transform=axes[0, 1].transAxes)
  far.set_in_layout(False)  # else the layout moves panel 1 out of its way
  found = _style.text_collisions(fig)
  assert any("'5000' (panel 1) overlaps '10000' (panel 1)" in f for f in found)
  assert any("'far into panel 1' (panel 2) enters panel 1" in f for f in found)
  plt.close(fig)


def test_a_key_kept_out_of_the_layout_that_runs_off_the_figure_is_reported():
  fig, axes = _style.figure(1, 1, width=_style.COLUMN, height=2.0)
  axes[0, 0].plot([0, 1], [0, 1], label="a rather long description of this line")
  _style.panel_labels(axes)
  _style.key_above(axes[0, 0], align="left", ncols=1)  # kept out of the layout, title lifted
  assert _style.text_collisions(fig) == []
  axes[0, 0].legend(loc="lower left", bbox_to_anchor=(0.6, 1.0)).set_in_layout(False)
  assert _style.text_collisions(fig) == ["a legend (panel 1) runs off the figure"]
  plt.close(fig)


def test_draw_layouts_keeps_the_warnings_of_a_draw_that_fails(tmp_path):
  def draw(out_dir):
    if _style.current_layout() == "column":
      raise RuntimeError("the column drawing failed")
    fig, axes = _style.figure(1, 1)
    axes[0, 0].text(0.5, 0.5, "here")
    axes[0, 0].text(0.5, 0.5, "here too")
    return _style.save(fig, out_dir, "F98_demo")

  with pytest.warns(_style.LayoutWarning, match="'here' .* overlaps 'here too'"):
    with pytest.raises(RuntimeError, match="column drawing failed"):
      draw_layouts(draw, ("page", "column"), out_dir=tmp_path)


def test_save_names_the_column_files_and_warns_on_collisions(tmp_path):
  def draw(out_dir):
    fig, axes = _style.figure(1, 2, width=_style.PAGE, height=2.0)
    axes[0, 0].plot([0, 1], [0, 1], label="a line")
    axes[0, 0].text(0.5, 0.5, "here")
    axes[0, 0].text(0.5, 0.5, "here too")  # the same place: a collision
    _style.panel_labels(axes)
    return _style.save(fig, out_dir, "F99_demo")

  files, collisions = draw_layouts(draw, ("page", "column"), out_dir=tmp_path)
  assert [f.name for f in files] == [
    "F99_demo.pdf",
    "F99_demo.png",
    "F99_demo_column.pdf",
    "F99_demo_column.png",
  ]
  assert collisions == [
    "F99_demo: 'here' (panel 1) overlaps 'here too' (panel 1)",
    "F99_demo_column: 'here' (panel 1) overlaps 'here too' (panel 1)",
  ]
  with warnings.catch_warnings():
    warnings.simplefilter("error")  # draw_layouts leaves no LayoutWarning behind
    draw_layouts(draw, ("page",), out_dir=tmp_path)


def test_panel_labels_carry_the_panel_title_to_the_left():
  fig, axes = _style.figure(1, 2, width=_style.PAGE, height=2.0)
  axes[0, 0].set_title("tanh, depth 50", fontsize=7)
  axes[0, 1].set_title("right note", loc="right")
  _style.panel_labels(axes)
  assert axes[0, 0].get_title(loc="left") == r"$\mathbf{(a)}$ tanh, depth 50"
  assert axes[0, 1].get_title(loc="left") == r"$\mathbf{(b)}$ right note"
  assert axes[0, 0].get_title() == "" and axes[0, 1].get_title(loc="right") == ""
  assert _style.text_collisions(fig) == []
  plt.close(fig)
