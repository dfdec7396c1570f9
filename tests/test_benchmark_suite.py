"""Every benchmark in ``benchmarks/`` runs at its tiny size on CPU and writes a sound report.

Not timings (issue 6.1: "in CI the suite runs at tiny size on CPU to prove it works"): each
test runs one benchmark's ``main`` in process, reads back the JSON it wrote and checks the
metadata every report must carry (device, versions), that every entry ran, and the
correctness checks the benchmark itself makes against its baseline or reference.
``tests/test_benchmarks.py`` does the same, in more detail, for ``bench_chains``.
"""

from __future__ import annotations

import json
import math

import jax
import pytest

from benchmarks import (
  bench_chunking,
  bench_compile,
  bench_ensemble_training,
  bench_init_compile,
  bench_kernels,
  bench_qr,
)


def _run(main, argv, out):
  returned = main([*argv, "--out", str(out)])
  report = json.loads(out.read_text())
  assert report["device"]["platform"] == "cpu"
  assert report["versions"]["jax"] == jax.__version__
  return returned, report


def _timed(entry):
  return entry["median_s"] > 0 and all(t > 0 for t in entry["times_s"])


def test_bench_kernels_tiny(tmp_path):
  _, report = _run(bench_kernels.main, ["--size", "tiny", "--repeats", "1"], tmp_path / "k.json")
  assert report["path"] == "pallas_interpret"  # the kernels' own code, interpreted on CPU
  assert all(t["measured"] is None and "NOT A TIMING" in t["note"] for t in report["targets"])
  (scalar,) = report["scalar"]
  assert all(_timed(e) for e in scalar["entries"])
  same = scalar["checks"]["final_vs_reference_same_draws"]
  assert same["sign_mismatches"] == 0 and same["max_abs_diff_log_abs_g"] < 1e-4
  # kernel and plain-JAX baseline draw different numbers: their means agree to Monte Carlo error
  assert abs(scalar["checks"]["final_vs_baseline_statistics"]["z_score_of_mean_difference"]) < 5
  assert [e["name"] for e in scalar["entries"] if e["impl"] == "vanish-sweep"] == [
    "kernels.scalar_chain[final, fast_math]",  # the fast formulas (accurate jnp when interpreted)
    "kernels.scalar_chain[moments, fast_math]",
    "kernels.scalar_chain[final, block=256, warps=2]",  # launch configurations: one at tiny size
  ]
  fast = scalar["checks"]["fast_math[final]"]
  assert fast["passed"] and abs(fast["mean_diff_over_monte_carlo_error"]) < 0.01
  assert scalar["checks"]["fast_math[moments]"]["passed"]
  assert all(e["checked"] for e in scalar["entries"][1:])  # only checked entries meet targets
  (small,) = report["small"]
  assert {e["impl"] for e in small["entries"]} == {"baseline", "vanish", "vanish-sweep"}
  assert all(_timed(e) for e in small["entries"])
  (spectrum,) = report["spectrum"]
  assert [e["impl"] for e in spectrum["entries"]] == [
    *("baseline", "baseline", "vanish-jnp", "vanish", "vanish-sweep")
  ]
  assert all(_timed(e) and "error" not in e for e in spectrum["entries"])
  for e in spectrum["entries"][1:]:  # every spectrum against float64: float32 rounding
    assert e["check"]["max_abs_per_layer"] < 1e-4 and e["ratio_to_plain_chain"] > 0, e["name"]
  assert [e["path"] for e in spectrum["entries"][3:]] == ["pallas_interpret"] * 2


def test_bench_kernels_budget_skips_what_is_left(tmp_path):
  argv = ["--size", "tiny", "--sections", "small,spectrum", "--budget-s", "0"]
  _, report = _run(bench_kernels.main, argv, tmp_path / "k.json")
  assert report["scalar"] == []  # not a section of this run
  entries = [e for kind in ("small", "spectrum") for s in report[kind] for e in s["entries"]]
  assert entries and all(e.get("skipped") == "time budget exhausted" for e in entries)


def test_bench_chunking_tiny(tmp_path):
  argv = ["--size", "tiny", "--repeats", "2"]
  _, report = _run(bench_chunking.main, argv, tmp_path / "c.json")
  result = report["result"]
  assert result["bitwise_identical_across_chunks"] is True
  assert len(result["entries"]) >= 2 and all(_timed(e) for e in result["entries"])
  assert any(e["chunk"] == "auto" for e in result["entries"])
  assert all(math.isfinite(v) for v in result["statistics"].values())


def test_bench_ensemble_training_tiny(tmp_path):
  argv = ["--tiny", "--repeats", "1"]
  _, report = _run(bench_ensemble_training.main, argv, tmp_path / "e.json")
  assert all(_timed(e) for e in report["entries"])
  assert all(math.isfinite(r) for r in report["ratios"].values())
  checks = report["checks"]
  # vanish's logged training and the plain optax loop are the same arithmetic
  assert checks["max_abs_diff_plain_vs_vanish_params"] == 0
  # the epoch's mean speeds: vanish sums the T steps' logs in the scan's carry, the plain
  # loop takes jnp.mean of the stacked rows; the orders differ by at most T·u relative
  # (T ≤ 100 steps here, u = 2⁻²⁴, speeds < 1 at initialization)
  assert checks["max_abs_diff_plain_vs_vanish_bias_speed"] < 100 * 2.0**-24
  # an ensemble member equals its run alone to float rounding (docs/reliability.md)
  assert checks["max_abs_diff_ensemble_member_vs_alone"] < 1e-5


def test_bench_qr_tiny(tmp_path):
  argv = ["--size", "tiny", "--repeats", "1"]
  _, report = _run(bench_qr.main, argv, tmp_path / "q.json")
  (shape,) = report["shapes"]
  assert all(_timed(e) for e in shape["entries"])
  for case in report["accuracy"]:  # every QR method against a float64 Householder reference
    methods = {k: v for k, v in case.items() if isinstance(v, dict) and "max_per_layer" in v}
    assert "auto" in methods and "householder" in methods
    for name, m in methods.items():
      assert m["finite"] and m["max_per_layer"] < 1e-3, name  # issue 6.2's accuracy bar
  for case in report["robustness"]:
    assert case["auto"]["finite"] and case["auto"]["max_abs_nats_vs_householder_resolved"] < 1e-3


def test_bench_init_compile_tiny(tmp_path):
  argv = ["--size", "tiny", "--repeats", "1"]
  _, report = _run(bench_init_compile.main, argv, tmp_path / "i.json")
  (entry,) = report["entries"]
  assert entry["bitwise_equal"] is True  # the straight-line sampler draws jax.random's bits
  assert all(t > 0 for impl in ("baseline", "vanish") for t in entry["compile_s"][impl])
  assert all(entry["run"][impl]["min_s"] > 0 for impl in ("baseline", "vanish"))


def test_bench_compile_tiny(tmp_path):
  argv = ["--size", "tiny", "--repeats", "1"]
  _, report = _run(bench_compile.main, argv, tmp_path / "compile.json")
  if not report["options_supported"]:
    assert report["entries"] == []
    pytest.skip(f"jaxlib {jax.__version__} has no {sorted(bench_compile.OPTIONS)}")
  assert report["entries"]
  for e in report["entries"]:
    assert all(t > 0 for impl in ("default", "elemental") for t in e["compile_cpu_s"][impl])
    assert e["max_abs_diff"] < 1e-5  # the two emitters compute the same program


@pytest.mark.parametrize(
  "module", [bench_kernels, bench_chunking, bench_qr, bench_init_compile, bench_compile]
)
def test_benchmark_help(module, capsys):
  with pytest.raises(SystemExit) as exit_:
    module.main(["--help"])
  assert exit_.value.code == 0 and "--size" in capsys.readouterr().out
