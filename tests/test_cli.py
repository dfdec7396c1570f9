"""The command line, run metadata and README: smoke tests plus checks that printed numbers are real.

The demo's table must equal :func:`vanish.log_gradient_norms` recomputed here from the
documented seed streams; ``reproduce`` must draw from the store, reuse it, report a failing
figure and report figures without a script as missing, never faked; bad arguments must fail
with a message naming the parameter; and the README's two commands and Python example must
be the ones that work.
"""

from __future__ import annotations

import doctest
import importlib
import json
import math
import re
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

import vanish as vn
from experiments import _common
from vanish import cli
from vanish.metadata import run_metadata, to_json

ROOT = Path(__file__).resolve().parents[1]
LN10 = math.log(10)


def reference_log_norms(activation, *, depth, width, members, sigma_w2, sigma_b2, seed):
  """The demo's computation written out independently from its documented key streams."""
  net = vn.MLP(
    widths=[width] * (depth + 1),
    activation=activation,
    weights=vn.init.gaussian(sigma_w2=sigma_w2),
    biases=vn.init.normal(std=sigma_b2**0.5),
  )
  key = jax.random.key(seed)
  params = net.init(jax.random.fold_in(key, 0), members=members)
  x = jax.random.normal(jax.random.fold_in(key, 1), (width,))
  return np.asarray(vn.log_gradient_norms(net, params, x))


# --------------------------------------------------------------------------- demo


def test_demo_json_and_table_equal_an_independent_computation(tmp_path, capsys):
  out = tmp_path / "sub" / "demo.json"
  argv = "demo --depth 6 --width 5 --members 24 --seed 3 --sigma-b2 0.05 --compare tanh sigmoid"
  assert cli.main([*argv.split(), "--json", str(out)]) == 0
  printed = capsys.readouterr().out
  data = json.loads(out.read_text())
  assert [p.name for p in out.parent.iterdir()] == ["demo.json"]  # no temp file left behind

  expected = reference_log_norms(
    "tanh", depth=6, width=5, members=24, sigma_w2=1.0, sigma_b2=0.05, seed=3
  )
  np.testing.assert_allclose(np.array(data["log_gradient_norms"]), expected, rtol=1e-6)
  log10 = expected / LN10
  for l, row in enumerate(data["layers"]):
    assert row["layer"] == l + 1
    np.testing.assert_allclose(row["median_log10"], np.median(log10[:, l]), rtol=1e-6)
    np.testing.assert_allclose(row["q10_log10"], np.quantile(log10[:, l], 0.1), rtol=1e-6)
    np.testing.assert_allclose(row["q90_log10"], np.quantile(log10[:, l], 0.9), rtol=1e-6)
    np.testing.assert_allclose(row["median_norm"], 10 ** np.median(log10[:, l]), rtol=1e-5)
  ratio = log10[:, 0] - log10[:, -1]
  np.testing.assert_allclose(data["ratio_first_last"]["median_log10"], np.median(ratio), rtol=1e-6)

  # The printed table shows the same numbers (to its 3 decimals).
  rows = re.findall(
    r"^\s+(\d+)\s+(-?\d+\.\d{3})\s+(-?\d+\.\d{3})\s+(-?\d+\.\d{3})\s", printed, re.MULTILINE
  )
  assert [int(r[0]) for r in rows] == list(range(1, 7))
  for (_, median, q10, q90), row in zip(rows, data["layers"], strict=True):
    assert float(median) == pytest.approx(row["median_log10"], abs=6e-4)
    assert float(q10) == pytest.approx(row["q10_log10"], abs=6e-4)
    assert float(q90) == pytest.approx(row["q90_log10"], abs=6e-4)

  # Config, metadata and the comparison are recorded; the tanh row reuses the main ensemble.
  assert data["config"]["seed"] == 3 and data["config"]["sigma_w2"] == 1.0
  assert data["metadata"]["precision"] == "highest" and data["metadata"]["config"]["depth"] == 6
  assert data["metadata"]["versions"]["jax"] == jax.__version__
  tanh, sigmoid = data["comparison"]
  assert tanh["ratio_first_last"] == data["ratio_first_last"]
  sigmoid_logs = reference_log_norms(
    "sigmoid", depth=6, width=5, members=24, sigma_w2=1.0, sigma_b2=0.05, seed=3
  )
  np.testing.assert_allclose(
    sigmoid["first_median_log10"], np.median(sigmoid_logs[:, 0]) / LN10, rtol=1e-6
  )
  # Nielsen ch. 5: σ' ≤ 1/4, so five sigmoid layers back the gradient shrinks > 100x.
  assert sigmoid["verdict"] == "vanishing"
  assert "sigmoid" in printed and "vanishing" in printed and "precision: highest" in printed


def test_demo_default_sigma_w2_is_he_for_relu_and_long_tables_are_abridged(capsys):
  assert cli.main("demo --activation relu --depth 45 --width 3 --members 2".split()) == 0
  printed = capsys.readouterr().out
  assert "W ~ N(0, 2/fan_in)" in printed
  assert "(showing 20 of 45 layers" in printed
  assert re.search(r"^\s+45\s", printed, re.MULTILINE)  # the last layer is always shown


@pytest.mark.parametrize(
  ("flag", "value", "named"),
  [
    ("--depth", "0", "depth"),
    ("--width", "-3", "width"),
    ("--members", "many", "members"),
    ("--sigma-w2", "-1", "sigma-w2"),
    ("--sigma-b2", "nan", "sigma-b2"),
    ("--seed", "-1", "seed"),
    ("--activation", "swishy", "--activation"),
    ("--precision", "fp8", "--precision"),
  ],
)
def test_bad_demo_arguments_fail_naming_the_parameter(flag, value, named, capsys):
  with pytest.raises(SystemExit) as error:
    cli.main(["demo", flag, value])
  assert error.value.code == 2
  err = capsys.readouterr().err
  assert f"argument {flag}" in err and named in err and value in err


def test_json_write_is_atomic(tmp_path):
  path = tmp_path / "result.json"
  path.write_text('{"old": true}\n')
  with pytest.raises(ValueError):  # NaN is not JSON: the write fails midway
    cli._write_json_atomic(path, {"x": float("nan")})
  assert path.read_text() == '{"old": true}\n'
  assert sorted(p.name for p in tmp_path.iterdir()) == ["result.json"]
  cli._write_json_atomic(path, {"x": 1.5})
  assert json.loads(path.read_text()) == {"x": 1.5}


@pytest.mark.parametrize("seed", range(5))
def test_quantile_matches_numpy_and_orders_minus_infinity_first(seed):
  rng = np.random.default_rng(seed)
  values = rng.normal(size=rng.integers(1, 50))
  for q in (0.0, 0.1, 0.5, 0.9, 1.0):
    assert cli.quantile(values, q) == pytest.approx(np.quantile(values, q), rel=1e-12, abs=1e-12)
  dead = np.concatenate([np.full(3, -np.inf), values])
  assert cli.quantile(dead, 0.0) == -np.inf
  assert cli.quantile(dead, 1.0) == values.max()


# --------------------------------------------------------------------------- info, reproduce


def test_info_reports_devices_versions_and_precision(capsys):
  assert cli.main(["info"]) == 0
  printed = capsys.readouterr().out
  assert f"jax {jax.__version__}" in printed
  assert f"{jax.device_count()} x " in printed
  assert "precision: highest" in printed
  assert cli.main(["info", "--json"]) == 0
  meta = json.loads(capsys.readouterr().out)
  assert meta["device_count"] == jax.device_count() and meta["backend"] == jax.default_backend()


FAKE_FIGURE = """
import numpy as np
from pathlib import Path
from experiments._common import cached_run
from vanish import store

def draw(*, quick, out_dir, store_root, force=False):
  path = cached_run(store_root, "fake_experiment", {"size": "quick" if quick else "full"},
                    lambda k: {"arrays": {f"x{k}": np.arange(3.0) * k}, "rows": [{"k": k}]},
                    table="rows", force=force, chunks=[1, 2])
  run = store.load(path)
  Path(out_dir).mkdir(parents=True, exist_ok=True)
  target = Path(out_dir) / "F2_fake.txt"
  target.write_text(str(run.arrays["x2"].sum()))
  return [target]
"""


@pytest.fixture
def fake_figures(tmp_path, monkeypatch):
  """F2 draws from the store through a two-chunk experiment, F3 fails, the rest are missing."""
  package = tmp_path / "fakefigs"
  package.mkdir()
  (package / "__init__.py").write_text("")
  (package / "good.py").write_text(FAKE_FIGURE)
  (package / "bad.py").write_text("def draw(**kw):\n  raise RuntimeError('broken figure')\n")
  monkeypatch.syspath_prepend(str(tmp_path))
  modules = {"F2": "fakefigs.good", "F3": "fakefigs.bad"}
  monkeypatch.setattr(cli.Figure, "module", property(lambda self: modules.get(self.name)))
  # other edits to the checkout during the test must not look like new code to the store
  monkeypatch.setattr(_common, "code_fingerprint", lambda *args: "test-code")
  monkeypatch.chdir(tmp_path)
  return tmp_path


def test_reproduce_draws_from_the_store_reuses_it_and_reports_missing(fake_figures, capsys):
  argv = ["reproduce", "--only", "F2", "F4", "--store", "st", "--out", "figs"]
  assert cli.main(argv) == 2  # F4 is missing
  out = capsys.readouterr().out
  assert "[1/2] F2" in out and "drawn in" in out and "F2_fake.txt" in out
  assert "missing: no paper_figs/f4_*.py" in out
  assert "experiments computed: 1, reused from the store: 0" in out
  assert "computed: fake_experiment\n" in out and "reused:" not in out
  assert (fake_figures / "figs" / "F2_fake.txt").read_text() == "6.0"
  summary = json.loads((fake_figures / "figs" / "reproduce_summary.json").read_text())
  assert [f["status"] for f in summary["figures"]] == ["drawn", "missing"]
  assert summary["figures"][0]["experiments"][0]["computed_chunks"] == 2
  assert summary["figures"][0]["experiments"][0]["experiment"] == "fake_experiment"
  assert summary["experiments"] == {"computed": ["fake_experiment"], "reused": []}

  assert cli.main(["reproduce", "--only", "F2", "--store", "st", "--out", "figs"]) == 0
  out = capsys.readouterr().out
  assert "experiments computed: 0, reused from the store: 1" in out
  assert "reused:   fake_experiment\n" in out and "    computed:" not in out
  summary = json.loads((fake_figures / "figs" / "reproduce_summary.json").read_text())
  assert summary["experiments"] == {"computed": [], "reused": ["fake_experiment"]}
  assert cli.main(["reproduce", "--only", "F2", "--store", "st", "--out", "figs", "--force"]) == 0
  assert "experiments computed: 1, reused from the store: 0" in capsys.readouterr().out


def test_reproduce_reports_a_failing_figure_and_draws_the_others(fake_figures, capsys):
  assert cli.main(["reproduce", "--only", "F3", "F2", "--store", "st", "--out", "figs"]) == 1
  out = capsys.readouterr().out
  assert "failed: RuntimeError: broken figure" in out
  assert (fake_figures / "figs" / "F2_fake.txt").is_file()
  # without --out the figures go beside the results they are drawn from
  assert cli.main(["reproduce", "--only", "F2", "--store", "other"]) == 0
  assert "figures in other/figures/" in capsys.readouterr().out
  assert (fake_figures / "other" / "figures" / "F2_fake.txt").is_file()


def test_reproduce_reports_a_script_whose_experiment_has_not_landed_as_missing(
  fake_figures, monkeypatch, capsys
):
  """Only a missing ``experiments.<name>`` module makes a figure missing; any other import
  error (another package's module, a name missing from a module) is a failure."""
  scripts = {
    "F5": "from experiments import no_such_experiment\n",
    "F6": "import experiments.no_such_experiment\n",
    "F7": "import no_such_package_for_vanish_tests\n",
    "F8": "from experiments._common import no_such_helper\n",
  }
  package = fake_figures / "importfigs"  # a package of its own: fakefigs may be imported
  package.mkdir()
  (package / "__init__.py").write_text("")
  for name, text in scripts.items():
    (package / f"{name.lower()}.py").write_text(f"{text}def draw(**kw): pass\n")
  importlib.invalidate_caches()
  modules = {"F2": "fakefigs.good", **{name: f"importfigs.{name.lower()}" for name in scripts}}
  monkeypatch.setattr(cli.Figure, "module", property(lambda self: modules.get(self.name)))
  argv = ["reproduce", "--store", "st", "--out", "figs", "--only", "F5", "F6"]
  assert cli.main(argv) == 2
  out = capsys.readouterr().out
  assert out.count("missing: no experiments/no_such_experiment.py (imported by importfigs.f") == 2
  assert "missing   2: F5 F6" in out
  # --list says so too, before anything runs
  assert cli.main(["reproduce", "--list", "--only", "F5", "F6", "F7", "F2"]) == 0
  listed = capsys.readouterr().out.splitlines()
  assert [line.split()[1] for line in listed] == ["missing", "missing", "ready", "ready"]
  assert listed[0].endswith("— no experiments/no_such_experiment.py (imported by importfigs.f5)")
  assert cli.main([*argv, "F7", "F8", "F2"]) == 1
  out = capsys.readouterr().out
  assert "failed: ModuleNotFoundError: No module named 'no_such_package_for_vanish_tests'" in out
  assert "failed: ImportError: cannot import name 'no_such_helper'" in out
  assert "missing   2: F5 F6" in out and "failed    2: F7 F8" in out and "drawn     1: F2" in out


def test_reproduce_never_fakes_a_missing_figure(tmp_path, monkeypatch, capsys):
  monkeypatch.setattr(cli.Figure, "module", property(lambda self: None))
  monkeypatch.chdir(tmp_path)
  assert cli.main(["reproduce", "--full", "--only", "F4", "f6"]) == 2
  out = capsys.readouterr().out
  assert out.count("missing: no paper_figs/") == 2 and "missing   2: F4 F6" in out
  assert [p.name for p in (tmp_path / "results" / "figures").iterdir()] == [
    "reproduce_summary.json"
  ]
  assert not (tmp_path / "results").joinpath("probabilistic_model").exists()


def test_reproduce_list_and_unknown_figure(capsys):
  assert list(cli.FIGURES) == [f"F{i}" for i in range(1, 14)]
  assert cli.main(["reproduce", "--list"]) == 0
  listed = capsys.readouterr().out.splitlines()
  assert [line.split()[0] for line in listed] == list(cli.FIGURES)
  for line in listed:  # ready exactly when the figure's script exists
    name, status = line.split()[:2]
    scripts = list((ROOT / "paper_figs").glob(f"{name.lower()}_*.py"))
    assert status == ("ready" if scripts else "missing")
  with pytest.raises(SystemExit) as error:
    cli.main(["reproduce", "--only", "F99"])
  assert error.value.code == 2
  assert "argument --only" in capsys.readouterr().err
  with pytest.raises(SystemExit):
    cli.main(["reproduce", "--quick", "--full"])


EXTRA_FIGURE = '''"""An extra figure: the number 14, drawn.

Found by its file name alone; vanish.cli has no entry for it.
"""
from pathlib import Path


def draw(*, quick, out_dir, store_root, force=False):
  target = Path(out_dir) / "F14_extra.txt"
  target.parent.mkdir(parents=True, exist_ok=True)
  target.write_text("14")
  return [target]
'''


def test_figures_are_discovered_by_their_file_name(tmp_path, monkeypatch, capsys):
  """A new fN_ script is a figure (titled by its docstring) with no list to edit; F1–F13 keep
  their titles and order and are reported missing without a script."""
  folder = tmp_path / "morefigs"
  folder.mkdir()
  (folder / "__init__.py").write_text("")
  (folder / "f14_extra.py").write_text(EXTRA_FIGURE)
  (folder / "f2_sigmoid.py").write_text('"""Not the catalogue\'s title."""\n')
  (folder / "fig_helpers.py").write_text("")  # not fN_<topic>: not a figure
  monkeypatch.syspath_prepend(str(tmp_path))
  monkeypatch.setattr(cli, "figure_folder", lambda: ("morefigs", folder))
  monkeypatch.chdir(tmp_path)
  found = cli.figures()
  assert list(found) == [f"F{i}" for i in range(1, 15)]
  assert found["F14"].title == "An extra figure: the number 14, drawn."
  assert found["F2"] == cli.FIGURES["F2"]
  assert found["F14"].module == "morefigs.f14_extra" and found["F2"].module == "morefigs.f2_sigmoid"
  assert found["F1"].module is None

  assert cli.main(["reproduce", "--list"]) == 0
  listed = capsys.readouterr().out.splitlines()
  assert [line.split()[:2] for line in listed[:3]] == [
    ["F1", "missing"],
    ["F2", "ready"],
    ["F3", "missing"],
  ]
  assert listed[-1].split()[:2] == ["F14", "ready"] and listed[-1].endswith("number 14, drawn.")
  assert cli.main(["reproduce", "--only", "f14", "F1", "--out", "figs"]) == 2  # F1 is missing
  out = capsys.readouterr().out
  assert "[1/2] F14: An extra figure" in out and "missing: no paper_figs/f1_*.py" in out
  assert (tmp_path / "figs" / "F14_extra.txt").read_text() == "14"
  with pytest.raises(SystemExit):
    cli.main(["reproduce", "--only", "F15"])
  assert "unknown figure 'F15'" in capsys.readouterr().err


def test_run_and_list_experiments(tmp_path, capsys):
  assert cli.main(["list"]) == 0
  listed = capsys.readouterr().out
  for script in (ROOT / "experiments").glob("[!_]*.py"):
    about = cli.first_docstring_line(script)
    assert re.search(rf"^  {script.stem} +{re.escape(about)}$", listed, re.MULTILINE)
  assert "  phase_map " in listed and "The (σ_w², σ_b²) phase map" in listed
  argv = ["run", "probabilistic_model", "--quick", "--depth", "3", "--activations", "relu"]
  assert cli.main([*argv, "--out", str(tmp_path)]) == 0
  assert "P(|g| < 0.001) at depth 3" in capsys.readouterr().out
  assert (tmp_path / "probabilistic_model").is_dir()
  assert cli.main(["run", "no_such_experiment"]) == 2
  assert "unknown experiment 'no_such_experiment'" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [[], ["info"], ["demo"], ["reproduce"], ["list"], ["run"]])
def test_help_everywhere(argv, capsys):
  with pytest.raises(SystemExit) as error:
    cli.main([*argv, "--help"])
  assert error.value.code == 0
  assert capsys.readouterr().out.startswith("usage: vanish")


def test_experiment_help_names_the_command_and_every_option(capsys, monkeypatch):
  with pytest.raises(SystemExit) as error:
    cli.main(["run", "phase_map", "--help"])
  assert error.value.code == 0
  printed = capsys.readouterr().out
  assert printed.startswith("usage: vanish run phase_map [-h]")
  assert "seed of jax.random.key" in printed
  flat = " ".join(printed.split())  # the help wraps at the terminal's width
  assert (
    "--sigma-w2-points SIGMA_W2_POINTS σ_w² grid points (from max/points to max) (default: 24 "
    "with --quick, 200 with --full)" in flat
  )
  assert "cells per vmapped batch" in flat and "rows per saved chunk" in flat
  from experiments import phase_map, rnn_through_time

  for module, flag in ((phase_map, "--width"), (rnn_through_time, "--settings")):
    with pytest.raises(SystemExit):
      module.parse_args(["--help"])
    text = capsys.readouterr().out
    assert text.startswith("usage: ")  # not the caller's name when not run as a script
    assert re.search(rf"{flag} \S+.*\n?\s+\S", text)
  # run as `python -m experiments.phase_map` the usage says so, not "__main__.py"
  spec = type("Spec", (), {"name": "experiments.phase_map"})()
  monkeypatch.setitem(sys.modules, "__main__", type("Main", (), {"__spec__": spec})())
  with pytest.raises(SystemExit):
    phase_map.parse_args(["--help"])
  assert capsys.readouterr().out.startswith("usage: python -m experiments.phase_map [-h]")
  with pytest.raises(SystemExit) as error:  # no NAME: options are optional, NAME is not
    cli.main(["run"])
  assert error.value.code == 2
  assert capsys.readouterr().err.strip().endswith("the following arguments are required: NAME")


def test_every_experiment_option_has_help(monkeypatch):
  import argparse
  import importlib

  made = []

  def keep(self, *args, **kwargs):
    made.append(self)
    raise SystemExit(0)

  monkeypatch.setattr(argparse.ArgumentParser, "parse_args", keep)
  for script in sorted((ROOT / "experiments").glob("[!_]*.py")):
    with pytest.raises(SystemExit):
      importlib.import_module(f"experiments.{script.stem}").parse_args([])
    for action in made[-1]._actions:
      assert action.help and "override the size's value" not in action.help, (script, action)
  assert len(made) == len(list((ROOT / "experiments").glob("[!_]*.py")))


def test_no_command_is_an_error(capsys):
  with pytest.raises(SystemExit) as error:
    cli.main([])
  assert error.value.code == 2
  assert "COMMAND" in capsys.readouterr().err


def test_python_dash_m_vanish():
  done = subprocess.run(
    [sys.executable, "-m", "vanish", "--version"],
    capture_output=True,
    text=True,
    check=True,
    cwd=ROOT,
  )
  assert done.stdout.strip() == f"vanish {vn.__version__}"


# --------------------------------------------------------------------------- metadata


def test_run_metadata_records_config_and_rejects_bad_input():
  meta = run_metadata("default", members=np.int64(8), shape=(3, 4))
  assert meta["precision"] == "default"
  assert meta["config"] == {"members": 8, "shape": [3, 4]}
  assert meta["devices"] == [d.device_kind for d in jax.devices()]
  assert json.loads(json.dumps(meta, allow_nan=False)) == meta
  with pytest.raises(ValueError, match="precision"):
    run_metadata("very-high")
  with pytest.raises(TypeError, match=r"config\['fn'\]"):
    run_metadata("highest", fn=print)
  with jax.enable_x64(True):
    assert run_metadata("highest")["x64"] is True
  assert to_json({"a": [np.inf, 1]}) == {"a": [None, 1]}


# --------------------------------------------------------------------------- README


def _readme() -> str:
  return (ROOT / "README.md").read_text(encoding="utf-8")


def test_readme_starts_with_the_two_commands():
  first_block = re.search(r"```\w*\n(.*?)```", _readme(), re.DOTALL).group(1)
  assert first_block.splitlines() == [
    "pip install -e . && vanish reproduce --quick",
    'pip install -e ".[test]" && pytest',
  ]


@pytest.mark.parametrize("page", sorted(p.name for p in (ROOT / "docs").glob("*.md")))
def test_docs_examples_run(page):
  flags = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
  result = doctest.testfile(str(ROOT / "docs" / page), module_relative=False, optionflags=flags)
  assert result.attempted > 0 and result.failed == 0


def test_readme_python_example_runs_and_prints_what_the_readme_says(capsys):
  readme = _readme()
  blocks = re.findall(r"```python\n(.*?)```", readme, re.DOTALL)
  assert blocks, "the README shows a Python example"
  namespace: dict = {}
  exec(compile(blocks[0], "README.md", "exec"), namespace)  # noqa: S102
  printed = capsys.readouterr().out.strip()
  assert f"It prints `{printed}`" in readme
  for name, line in (("log_speed", "log_gradient_norms"), ("spectrum", "lyapunov_spectrum")):
    (comment,) = re.findall(rf"{line}\(.*# \[([0-9, ]+)\]", blocks[0])
    assert namespace[name].shape == tuple(int(n) for n in comment.split(",")), name


def test_missing_experiments_are_found_through_the_experiments_a_script_imports(
  tmp_path, monkeypatch
):
  """A script is missing an experiment when it imports one that does not exist, directly or
  through an experiment module it imports; ``from experiments import *`` names none."""
  folder = tmp_path / "experiments"
  folder.mkdir()
  (folder / "present.py").write_text("from experiments import absent_inner\n")
  (folder / "plain.py").write_text("import numpy\n")
  monkeypatch.setattr(_common, "_EXPERIMENTS", folder)
  script = tmp_path / "f0_demo.py"
  script.write_text("from experiments import present, plain\nimport experiments.absent_outer\n")
  assert _common.missing_experiments(script) == [
    "experiments.absent_inner",
    "experiments.absent_outer",
  ]
  script.write_text("from experiments import *\nfrom experiments.plain import numpy\n")
  assert _common.missing_experiments(script) == []
  assert _common.experiment_modules(script) == {"plain"}
