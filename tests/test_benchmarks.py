"""The benchmark suite runs at tiny size on the CPU and its report is complete and correct.

This proves the benchmarks work (every entry ran, every implementation agrees with
its baseline on the same data); it is not a timing.
"""

import argparse
import json
import math
import os
import subprocess
import tarfile
from pathlib import Path

import numpy as np
import pytest

from benchmarks import bench_chains, common
from experiments._common import positive_int


@pytest.fixture(scope="module")
def report(tmp_path_factory):
  out = tmp_path_factory.mktemp("bench") / "chains.json"
  returned = bench_chains.main(["--size", "tiny", "--out", str(out), "--repeats", "1"])
  with open(out) as f:
    written = json.load(f)
  assert [n for n in os.listdir(out.parent) if n.startswith(".tmp-")] == []  # atomic write
  assert written["shapes"][0]["entries"][0]["name"] == returned["shapes"][0]["entries"][0]["name"]
  return written


def _entries(report):
  return {(e["name"], e["precision"]): e for e in report["shapes"][0]["entries"]}


def test_report_metadata(report):
  assert report["schema"] == bench_chains.SCHEMA_VERSION
  assert report["size"] == "tiny"
  assert report["device"]["platform"] == "cpu"
  assert report["device"]["peaks"] is None  # no peak table row for a CPU
  for name in ("jax", "jaxlib", "numpy", "vanish", "python"):
    assert report["versions"][name]
  assert set(report["precisions"]) >= {"highest", "default"}
  shape = report["shapes"][0]
  assert (shape["members"], shape["width"], shape["depth"]) == (4, 16, 5)
  assert shape["chain_flops"] == 2 * 4 * 5 * 16**3


def test_every_entry_ran(report):
  entries = _entries(report)
  expected = {
    ("jax.chain", "highest"),
    ("roofline.batched_matmul", "highest"),
    ("jax.vmap_jacfwd", "highest"),
    ("jax.vmap_grad_norms", "highest"),
    ("jax.qr_benettin", "highest"),
    ("jax.qr_one_layer_x_L", "highest"),
    ("vn.jacobian", "highest"),
    ("vn.log_gradient_norms", "highest"),
    ("vn.lyapunov_spectrum(refine=False)", "highest"),
    ("vn.lyapunov_spectrum(refine=True)", "highest"),
  }
  assert expected <= set(entries)
  # tiny: one precision, and one multi-pass preset for vn.jacobian (issue 6.5)
  assert {p for _, p in entries} <= {"highest", "torch_fp32", "BF16_BF16_F32_X3"}
  assert ("vn.jacobian", "BF16_BF16_F32_X3") in entries
  if common.optional_torch() is None:
    assert not any(name.startswith("torch.") for name, _ in entries)
  # tiny skips the sampled Monte Carlo (slow to compile on a CPU).
  assert [e["name"] for e in report["scalar"]["entries"]] == ["jax.scalar_chain", "vn.scalar_chain"]
  for entry in list(entries.values()) + report["scalar"]["entries"]:
    assert "error" not in entry and "skipped" not in entry, entry
    assert entry["repeats"] == 1 and entry["median_s"] > 0 and math.isfinite(entry["seconds"])
  # refine=True ran on 2 of 4 members and was scaled to 4.
  refined = entries[("vn.lyapunov_spectrum(refine=True)", "highest")]
  assert refined["extrapolated"] and refined["seconds"] == pytest.approx(2 * refined["median_s"])


def test_ratios_and_rates(report):
  entries = _entries(report)
  spectrum = entries[("vn.lyapunov_spectrum(refine=False)", "highest")]
  assert set(spectrum["ratios"]) == {"jax.chain[highest]", "jax.qr_benettin[highest]"}
  chain = entries[("jax.chain", "highest")]
  assert spectrum["ratios"]["jax.chain[highest]"] == pytest.approx(
    spectrum["seconds"] / chain["seconds"]
  )
  jac = entries[("vn.jacobian", "highest")]
  assert jac["tflops"] == pytest.approx(2 * 4 * 5 * 16**3 / jac["seconds"] / 1e12)
  assert jac["pct_peak"] is None  # unknown peak on a CPU
  assert entries[("vn.log_gradient_norms", "highest")]["gbs"] > 0
  scalar = {e["name"]: e for e in report["scalar"]["entries"]}
  assert scalar["vn.scalar_chain"]["factors_per_s"] == pytest.approx(
    1024 * 5 / scalar["vn.scalar_chain"]["seconds"]
  )
  assert {t["met"] for t in report["targets"]} <= {True, False, None}
  assert any("stable spectrum" in t["target"] for t in report["targets"])


def test_results_agree_with_baselines(report):
  entries = _entries(report)

  def check(name, precision="highest"):
    return entries[(name, precision)]["check"]

  for name, precision in [("vn.jacobian", "highest"), ("jax.vmap_jacfwd", "highest")]:
    assert check(name, precision)["against"] == "jax.chain[highest]"
    assert check(name, precision)["rel_diff"] < 1e-5
  # Against a float64 chain: float32 rounding for the chains; a bf16×3 product is ~fp32 too
  # (and XLA:CPU computes it in float32).
  for key in [
    ("jax.chain", "highest"),
    ("vn.jacobian", "highest"),
    ("vn.jacobian", "BF16_BF16_F32_X3"),
  ]:
    assert entries[key]["check_float64"]["rel_diff"] < 1e-5, key
  assert check("vn.log_gradient_norms")["max_abs_diff"] < 1e-4
  # Same algorithm as the per-layer QR baseline: the same numbers.
  assert check("vn.lyapunov_spectrum(refine=False)")["max_abs_diff"] < 1e-4
  # refine=True is exact at finite depth; Benettin's sum is off by O(1) nats.
  refined = check("vn.lyapunov_spectrum(refine=True)")
  assert refined["values_compared"] > 0 and refined["max_abs_diff"] < 1e-3
  assert check("jax.qr_benettin")["max_abs_diff"] > 10 * refined["max_abs_diff"]
  scalar = {e["name"]: e for e in report["scalar"]["entries"]}
  assert scalar["vn.scalar_chain"]["check"]["max_abs_diff_log_abs"] < 1e-4
  assert scalar["vn.scalar_chain"]["check"]["sign_mismatches"] == 0


def test_sample_statistics():
  rng = np.random.default_rng(0)
  a, b = rng.normal(-3.0, 2.0, 100_000), rng.normal(-3.0, 2.0, 100_000)
  same = bench_chains.sample_statistics(a, b)
  assert same["z_score_of_mean_difference"] < 5
  assert same["std_log_abs_g_L"] == pytest.approx(2.0, rel=0.02)
  shifted = bench_chains.sample_statistics(a + 0.1, b)
  assert shifted["z_score_of_mean_difference"] > 5


def test_peak_table():
  assert common.peak_key("NVIDIA H100 80GB HBM3") == "H100 SXM"
  assert common.peak_key("NVIDIA H100 PCIe") == "H100 PCIe"
  assert common.peak_key("NVIDIA H200") == "H200"
  assert common.peak_key("cpu") is None
  assert common.precision_class("highest") == "fp32"
  assert common.precision_class("default") == "tf32"
  device = {"peaks": common.PEAKS["H100 SXM"]}
  assert common.peak_tflops(device, "default") == pytest.approx(494.7)
  assert common.peak_tflops(device, "bfloat16") == pytest.approx(989.4)


def test_time_fn_caps_slow_calls():
  calls = []

  def fn():
    calls.append(1)
    return None

  timing, _ = common.time_fn(fn, repeats=5, sync=lambda out: out)
  assert len(calls) == 6 and len(timing.times) == 5  # one warm-up, then the repeats
  calls.clear()
  timing, _ = common.time_fn(fn, repeats=5, sync=lambda out: out, slow_s=-1.0)
  assert len(timing.times) == 3  # slow calls are capped at max_slow_repeats


def test_positive_int_refuses_what_is_not_a_count():
  for text in ("0", "-2", "1.5", "x"):
    with pytest.raises(argparse.ArgumentTypeError, match=">= 1"):
      positive_int(text)


FAKE_PYTHON = """#!/bin/bash
# Stands in for python: the device tag, then each benchmark writes '{}' to its --out.
if [[ "$1" == "-c" ]]; then echo h100; exit 0; fi
echo "ran $*"
for arg in "$@"; do [[ "${prev:-}" == "--out" ]] && echo '{}' > "$arg"; prev="$arg"; done
[[ "$*" == *bench_ensemble_training* ]] && exit 3  # a failing command must not stop the stage
exit 0
"""


def test_gpu_session_script_packs_every_result_into_one_archive(tmp_path):
  root = Path(__file__).resolve().parents[1]
  fake = tmp_path / "python"
  fake.write_text(FAKE_PYTHON)
  fake.chmod(0o755)
  out = tmp_path / "out"
  out.mkdir()
  env = {**os.environ, "OUT": str(out), "PYTHON": str(fake)}
  script = str(root / "benchmarks" / "gpu_session.sh")
  bad = subprocess.run(["bash", script, "scale", "fast"], env=env, capture_output=True, text=True)
  assert bad.returncode == 2 and "unknown stage 'fast'" in bad.stderr
  assert not list(out.iterdir())  # refused before running anything
  run = subprocess.run(
    ["bash", script, "scale", "chains", "spectrum"], env=env, cwd=root, check=True
  )
  assert run.returncode == 0
  assert [p.name for p in out.iterdir()] == ["gpu_session.tgz"]  # one file, however many results
  with tarfile.open(out / "gpu_session.tgz") as archive:
    names = {Path(n).name for n in archive.getnames()}
    stages = archive.extractfile("gpu_session/stages.txt").read().decode()
  assert {"chunking_h100.json", "ensemble_training_h100.json", "chains_engine_h100.json"} <= names
  assert "spectrum_kernel_h100.json" in names
  assert {"bench_chunking.log", "vanish-info.txt", "nvidia-smi.txt"} <= names
  assert "bench_ensemble_training: exit 3" in stages and "bench_chains: exit 0" in stages


def test_fast_precision_target_picks_the_fastest_mode_accurate_to_float32():
  def jac(precision, seconds, error):
    return {
      "name": "vn.jacobian",
      "precision": precision,
      "seconds": seconds,
      "check_float64": {"rel_diff": error},
    }

  shape = {
    "entries": [
      jac("highest", 1.0, 2e-7),
      jac("TF32_TF32_F32_X3", 0.5, 1e-6),  # within 10× float32's error: accurate enough
      jac("BF16_BF16_F32_X3", 0.25, 3e-3),  # faster, but bf16-level error
      {"name": "jax.chain", "precision": "highest", "seconds": 0.1},
    ]
  }
  target = bench_chains._fast_precision_target(shape, "(64, 512, 50)")
  assert target["best"]["precision"] == "TF32_TF32_F32_X3" and target["met"] is True
  assert target["measured"] == pytest.approx(2.0) and len(target["modes"]) == 3
  shape["entries"][1]["check_float64"]["rel_diff"] = 1e-5
  assert bench_chains._fast_precision_target(shape, "")["best"]["precision"] == "highest"
  assert bench_chains._fast_precision_target({"entries": []}, "")["met"] is None


def test_small_width_target_counts_only_entries_that_match_the_plain_chain():
  from benchmarks import bench_kernels

  def entry(name, speedup, rel_diff=None):
    e = {"name": name, "impl": "vanish-sweep", "precision": "highest"}
    e["speedup_vs_baseline"] = speedup
    if rel_diff is not None:
      e["check"] = {"against": "jax.chain[highest]", "rel_diff": rel_diff}
    return e

  small = {"members": 16384, "width": 32, "depth": 50, "entries": []}
  report = {"path": "pallas_triton", "scalar": [], "spectrum": [], "small": [small]}
  small["entries"] = [
    entry("checked", 4.0, rel_diff=2e-6),
    entry("unchecked", 20.0),  # no check: never counts
    entry("wrong", 30.0, rel_diff=0.5),  # fast but not the chain's Jacobian
  ]
  [target] = bench_kernels.targets(report)
  assert target["entry"] == "checked" and target["measured"] == 4.0 and target["met"] is False
  small["entries"][0]["check"]["rel_diff"] = 1e-3  # beyond float32's 1e-4 at "highest"
  assert bench_kernels.targets(report) == []
