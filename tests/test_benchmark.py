"""benchmarks/bench_speed.py end to end on tiny sizes: every section measures, reports and re-renders from its JSON."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch

from tests.inference.helpers import HANNET_OVERRIDES, save_tiny_hannet_checkpoint

ROOT = Path(__file__).resolve().parents[1]


def _bench_module():
    spec = importlib.util.spec_from_file_location("bench_speed", ROOT / "benchmarks" / "bench_speed.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_quick_run_measures_every_section_and_re_renders(tmp_path, one_thread):
    bench = _bench_module()
    torch.manual_seed(0)
    ckpt = save_tiny_hannet_checkpoint(tmp_path / "hannet_tiny.pt")
    out = tmp_path / "results"
    argv = [
        "--quick",
        "--networks", "danie",
        "--ablation-networks",
        "--networks3d", "focalattentionunet", "danie",
        "--bundles", "focal_attn_unet",
        "--checkpoint", str(ckpt),
        "--accuracy-overrides", json.dumps({"network_def#features": HANNET_OVERRIDES["network_def#features"]}),
        "--engine", "torch",  # the shipped row on torch here: OpenVINO conversions (~30 s) are tested elsewhere
        "--out", str(out),
    ]  # fmt: skip
    assert bench.main(argv) == 0
    results = json.loads((out / "bench_speed_quick.json").read_text())
    machine = results["machine"]
    # the peak: medians at the start and the end, the best single product beside them
    assert machine["peak_statistic"] == "median" and machine["peak_best_bf16"] >= machine["peak_bf16"] > 0
    assert machine["peak_bf16_end"] > 0 and machine["peak_fp32_end"] > 0
    # 2D: the fast path against MONAI's float32 sliding window, same network, same slide
    (row2d,) = [r for r in results["2d"] if r["network"] == "danie"]
    assert row2d["monai-fp32"]["seconds"] > 0 and row2d["fast"]["seconds"] > 0
    assert row2d["speedup"] == pytest.approx(row2d["monai-fp32"]["seconds"] / row2d["fast"]["seconds"])
    assert 0.0 <= row2d["fast"]["agreement_with_fp32"] <= 1.0
    # engines through the same fitted grid: the fast path as shipped, on torch, OpenVINO and onnxruntime directly
    assert row2d["fast"]["engine"] == "torch" and row2d["fast-torch"]["engine"] == "torch"
    for key in ("fast-torch", "openvino", "onnxruntime"):
        assert row2d[key]["windows"] == row2d["fast"]["windows"], key
        assert 0.0 <= row2d[key]["agreement_with_fp32"] <= 1.0 and row2d[key]["peak_fraction"] > 0
    # 3D: a slab case and the slice-wise case, labels out, memory before and peak
    rows3d = {r["network"]: r for r in results["3d"]}
    assert set(rows3d) == {"focalattentionunet", "danie"}
    assert rows3d["focalattentionunet"]["inferer"] == "slab" and rows3d["danie"]["inferer"] == "slicewise"
    for r in rows3d.values():
        assert set(r["engines"]) == {"fast-torch", "openvino", "onnxruntime"}
        assert all("seconds" in v or "error" in v for v in r["engines"].values())
        assert r["labels_dtype"] == "torch.uint8" and r["kflop_per_voxel"] > 0 and r["seconds"] > 0
        assert r["peak_rss_gb"] is None or r["peak_rss_gb"] >= r["rss_before_gb"] > 0
    # accuracy on the real BBBC038 image and a generated tile, also scored against the hand annotation
    acc = results["accuracy"]
    assert [i["image"] for i in acc["images"]] == ["bbbc038_img2d.png", "he_tile_000.png"]
    for image in acc["images"]:
        for key in ("dice", "dice_same_grid", "truth_dice_fp32", "truth_dice_fast"):
            assert 0.0 <= image[key] <= 1.0
    assert acc["real_truth_dice_fp32"] == acc["images"][0]["truth_dice_fp32"]
    # training: one step of the bundle's recipe in fp32 and under bf16 autocast from the same weights
    (train,) = results["training"]
    assert train["bundle"] == "focal_attn_unet" and train["fp32"]["step_seconds"] > 0
    assert train["first_loss_rel_diff"] < 0.05  # same weights and batch: bf16 rounding only
    text = (out / "bench_speed_quick.md").read_text()
    assert "median of 3" in text and "Dice fast vs fp32, same grid" in text and "added GB" in text
    assert "**Engines, 2D slide**" in text and "**Engines, 3D volume**" in text and "do not help training" in text
    assert "forward_share" in train
    # the saved run renders again without measuring (what --write-docs does with --from-json)
    rendered = tmp_path / "rendered"
    rendered.mkdir()
    assert bench.main(["--from-json", str(out / "bench_speed_quick.json"), "--out", str(rendered)]) == 0


def test_a_failing_3d_case_is_recorded_and_the_run_goes_on(tmp_path, one_thread, monkeypatch):
    bench = _bench_module()
    cases = bench.networks_3d(True)

    def broken():
        raise RuntimeError("network could not be built")

    monkeypatch.setattr(
        bench, "networks_3d", lambda quick, window3d=None: {**cases, "hannet": (broken, "slab", [32, 32, 32], 3)}
    )
    args = bench.parse_args(["--quick", "--networks3d", "hannet", "mcsaunet", "--out", str(tmp_path)])
    rows = bench.bench_3d(args, {"fp32": 100.0, "bf16": 200.0}, lambda text: None)
    assert rows[0] == {"network": "hannet", "error": "RuntimeError: network could not be built"}
    assert rows[1]["network"] == "mcsaunet" and rows[1]["seconds"] > 0
    assert "failed: RuntimeError" in bench.markdown({**_minimal_results(), "3d": rows})


def test_gpu_section_skips_without_cuda_and_its_code_runs_on_the_cpu(tmp_path, one_thread):
    bench = _bench_module()
    args = bench.parse_args(["--quick", "--networks", "hannet", "--out", str(tmp_path)])
    if not torch.cuda.is_available():
        skipped = bench.bench_gpu(args, bench.networks_2d(3, 2), lambda text: None)
        assert set(skipped) == {"skipped"} and "no CUDA device" in skipped["skipped"]
        assert "no CUDA device" in bench.markdown({**_minimal_results(), "gpu": skipped})
    # the same code with the CPU standing in for the GPU: rows, labels compared, a missing TensorRT recorded
    args = bench.parse_args(
        ["--quick", "--networks", "hannet", "--gpu-device", "cpu", "--gpu-variants", "monai-fp32", "fast", "tensorrt"]
    )
    gpu = bench.bench_gpu(args, bench.networks_2d(3, 2), lambda text: None)
    (row,) = gpu["rows"]
    assert row["monai-fp32"]["seconds"] > 0 and 0.0 <= row["fast"]["agreement_with_fp32"] <= 1.0
    trt = row["tensorrt"]
    assert "seconds" in trt or "error" in trt  # ImportError without torch_tensorrt: recorded, not fatal
    assert "| `hannet` |" in "\n".join(bench.gpu_markdown(gpu))


def _minimal_results() -> dict:
    return {
        "machine": {
            **dict.fromkeys(("cpu", "torch", "monai", "policy", "policy_reason"), "x"),
            "threads": 1,
            "load_before": [0.0],
            "load_after": [0.0],
            "peak_fp32": 1.0,
            "peak_bf16": 1.0,
            "peak_n": 1,
            "peak_repeats": 1,
        },
        "date": "d",
        "command": "c",
        "args": {"volume": [64, 64, 32]},
    }


def test_saved_runs_merge_section_by_section_and_row_by_row():
    bench = _bench_module()
    first = {**_minimal_results(), "2d": [{"network": "hannet", "fast": {"seconds": 2.0}}, {"network": "danie"}]}
    first["accuracy"] = {"skipped": "no checkpoint"}
    second = {**_minimal_results(), "command": "c2", "date": "e", "accuracy_ct": [{"bundle": "danie"}]}
    second["2d"] = [{"network": "hannet", "fast": {"seconds": 1.0, "runs": [1.1, 1.0, 0.9]}}]
    merged = bench.merge_results([first, second])
    assert [r["network"] for r in merged["2d"]] == ["danie", "hannet"]  # the later run's hannet row replaces
    assert merged["2d"][1]["fast"]["runs"] == [1.1, 1.0, 0.9] and merged["accuracy"] == first["accuracy"]
    assert merged["accuracy_ct"] == [{"bundle": "danie"}] and merged["command"] == "c; c2" and merged["date"] == "e"
    assert first["2d"][1] == {"network": "danie"}  # the inputs are not changed
    third = {**_minimal_results(), "args": {"volume": [32, 32, 16]}, "3d": [{"network": "danie"}]}
    assert bench.merge_results([first, third])["args"]["volume"] == [32, 32, 16]  # the size the 3D rows come from
    with pytest.raises(ValueError, match="cannot merge 3d rows measured at volume"):
        bench.merge_results([{**third, "args": {"volume": [64, 64, 32]}}, third])


def test_median_of_repeated_runs_keeps_every_run():
    bench = _bench_module()
    seconds = iter([3.0, 1.0, 2.0])
    m = bench.measure_median(lambda: next(seconds), 3)
    assert len(m["runs"]) == 3 and m["seconds"] == sorted(m["runs"])[1] and m["result"] == 2.0


@pytest.mark.slow
def test_ct_accuracy_compares_the_default_path_with_fp32_on_the_phantoms(tmp_path, one_thread):
    bench = _bench_module()
    from bench_ct_accuracy import bench_ct_accuracy, ct_markdown

    from attnseg_monai.inference import load_bundle
    from tests.inference.helpers import UNTRAINED

    torch.manual_seed(0)
    parts = load_bundle("attention_unet", load_weights=False, checkpoint=UNTRAINED)
    torch.save(parts.network.state_dict(), tmp_path / "au.pt")
    lines: list[str] = []
    rows = bench_ct_accuracy(["attention_unet", "danie"], lines.append, {"attention_unet": str(tmp_path / "au.pt"),
                             "danie": str(tmp_path / "missing.pt")})  # fmt: skip
    au, danie = rows
    assert danie["skipped"].startswith("no checkpoint at") and "missing.pt" in danie["skipped"]
    assert (
        len(au["cases"]) == 2
        and au["fp32"]["engine"] == ["torch"]
        and au["default"]["engine"]
        in (
            ["openvino"],
            ["torch"],
        )
    )
    for case in au["cases"]:
        assert case["case"].endswith("_seg.nii.gz") and 0.0 <= case["agreement"] <= 1.0 and 0.0 <= case["dice"] <= 1
        assert len(case["shape"]) == 3
    assert au["min_agreement"] == min(c["agreement"] for c in au["cases"])
    text = "\n".join(ct_markdown(rows))
    assert "**Accuracy on CT**" in text and "no checkpoint at" in text and au["cases"][0]["case"] in text
    assert bench.markdown({**_minimal_results(), "accuracy_ct": rows}).count("**Accuracy on CT**") == 1


@pytest.mark.slow
def test_engine_parity_times_the_three_variants_round_by_round(tmp_path, one_thread, monkeypatch, capsys):
    _bench_module()  # puts benchmarks/ on the import path
    import engine_parity

    monkeypatch.setenv("ATTNSEG_OPENVINO_CACHE", str(tmp_path / "cache"))
    seconds = engine_parity.parity("gridattentionunet", 2, [96, 80], rounds=2)
    assert set(seconds) == {"shipped", "direct", "engine"} and all(len(v) == 2 for v in seconds.values())
    assert all(t > 0 for v in seconds.values() for t in v)
    assert engine_parity.main(["gridattentionunet", "--dims", "2", "--slide", "64", "64", "--rounds", "1"]) == 0
    assert capsys.readouterr().out.count("gridattentionunet 2D 64x64") == 3
