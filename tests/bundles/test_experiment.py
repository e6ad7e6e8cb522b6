"""``attnseg experiment`` end to end on copies of mcsa_unet (both tables), focal_attn_unet, danie and hannet: two rows,
one epoch, tiny networks (``tests/bundles/cases``); the rows' models carry their rows' networks (MONAI's and UNet 3+
in mcsa_unet's comparison table), every row is scored on the same validation cases, a rerun trains and evaluates
nothing again, a row can evaluate another row's model with a CRF, and danie's rows are scored on its embedded raw-BTCV
phantoms (labels mapped to the 8 Synapse classes). attention_unet's experiment is tested with its bundle."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from attnseg_monai.bundle import read_record
from attnseg_monai.cli import main
from attnseg_monai.inference.experiment import run_experiment
from tests.bundles.helpers import copy_bundle, overrides


def _tiny_run(name: str, tmp_path: Path, rows: str, table: str | None = None):
    """``attnseg experiment`` of a copy of bundle ``name`` on its tiny case: 1 epoch, the two rows at once (one thread
    each: a tiny network gains nothing from a second), on the CPU; returns (bundle copy, result) after checking that
    every row ran (with the rows' training logs if not)."""
    root = copy_bundle(name, tmp_path)
    extra = {"table": table} if table else {}
    result = run_experiment(
        root,
        rows=rows,
        epochs=1,
        out=tmp_path / "table",
        overrides=overrides(name, "train"),
        eval_overrides=overrides(name, "infer", net=False),
        parallel=2,
        device="cpu",
        trust_bundle=True,
        progress=False,
        **extra,
    )
    logs = [p.read_text()[-2000:] for p in (tmp_path / "table").glob("rows/*/train.log")]
    assert result.ok, ([(r.id, r.reason) for r in result.rows], logs)
    return root, result


pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_thread")]


def test_mcsa_unet_two_rows_through_the_command_line(tmp_path: Path, capsys):
    root = copy_bundle("mcsa_unet", tmp_path)
    out = tmp_path / "table"
    args = ["experiment", str(root), "--rows", "unet,all", "--epochs", "1", "--out", str(out), "--trust_bundle"]
    args += ["--overrides", json.dumps(overrides("mcsa_unet", "train"))]
    args += ["--eval_overrides", json.dumps(overrides("mcsa_unet", "infer", net=False))]
    args += ["--device", "cpu", "--noprogress", "--parallel", "2"]
    assert main(args) == 0, [p.read_text()[-2000:] for p in out.glob("rows/*/train.log")]
    printed = capsys.readouterr().out
    assert "| U-Net |" in printed and "| MCSA-UNet |" in printed

    switches = ("use_channel_attention", "use_spatial_attention", "use_residual")
    for row, on in (("unet", False), ("all", True)):
        network = read_record(out / "rows" / row / "models" / "model.pt", "mcsa_unet", root).record.network
        assert [network[s] for s in switches] == [on] * 3 and network["features"] == [4, 8, 16, 32, 64]
        train = json.loads((out / "rows" / row / "train" / "datalist.json").read_text())
        assert train["validation"] == json.loads((out / "validation" / "datalist.json").read_text())["validation"]
    rows = list(csv.DictReader((out / "table.csv").open()))
    cases = {(r["row"], r["case"]) for r in rows if r["kind"] == "case"}
    assert cases == {("unet", "slide_003"), ("all", "slide_003")}  # the embedded sample's validation slide
    for r in rows:
        if r["kind"] == "case":
            assert 0.0 <= float(r["mean_dice"]) <= 1.0 and float(r["time_ms"]) > 0
    text = (out / "table.md").read_text()
    assert "| row | Mean_Dice | MPA | MIoU | n |" in text and "1 epoch(s)" in text
    assert (out / "table.png").is_file()
    assert (out / "command.txt").read_text().startswith(f"attnseg experiment {root} --rows unet,all --epochs 1")

    # a rerun trains nothing and reuses the evaluations
    before = {p: p.stat().st_mtime_ns for p in out.glob("rows/*/row_evaluation.json")}
    assert main([*args, "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert [(r["id"], r["status"]) for r in result["rows"]] == [("unet", "done"), ("all", "done")]
    assert {p: p.stat().st_mtime_ns for p in out.glob("rows/*/row_evaluation.json")} == before


def test_focal_attn_unet_rows_in_parallel_and_a_crf_row_on_another_rows_model(tmp_path: Path):
    root = copy_bundle("focal_attn_unet", tmp_path)
    result = run_experiment(
        root,
        rows="unet_ce,crf",
        epochs=1,
        out=tmp_path / "table",
        overrides=overrides("focal_attn_unet", "train"),
        parallel=2,
        device="cpu",
        trust_bundle=True,
        progress=False,
    )
    logs = [p.read_text()[-2000:] for p in (tmp_path / "table").glob("rows/*/train.log")]
    assert result.ok, ([(r.id, r.reason) for r in result.rows], logs)
    assert [(r.id, r.status) for r in result.rows] == [("unet_ce", "trained"), ("crf", "model of dilation")]
    rows = tmp_path / "table" / "rows"
    # the crf row trained nothing: it evaluated the dilation row's model (trained for it, not shown) with crf.json
    assert (rows / "dilation" / "models" / "model.pt").is_file() and not (rows / "crf" / "models").exists()
    assert read_record(rows / "dilation" / "models" / "model.pt", "focal_attn_unet", root).record.network[
        "dilations"
    ] == [1, 1, 1, 2, 4]
    assert (
        read_record(rows / "unet_ce" / "models" / "model.pt", "focal_attn_unet", root).record.network[
            "attention_levels"
        ]
        == []
    )
    crf = json.loads((rows / "crf" / "row_evaluation.json").read_text())
    assert [Path(e["file"]).name for e in crf["settings"]["evaluation"]] == ["crf.json"]
    by_row = {r.id: r for r in result.rows}
    assert [c["case"] for c in by_row["unet_ce"].cases] == [c["case"] for c in by_row["crf"].cases]
    assert len(by_row["crf"].cases) == 2  # the embedded sample's two validation radiographs
    for row in result.rows:
        assert {"acc", "miou", "time_ms"} <= set(row.cases[0]) and set(row.pooled) >= {"acc", "miou"}
    text = result.table_md.read_text()
    assert "| row | acc | mIoU | inference time (ms) | n |" in text
    assert "| Baseline U-Net (cross-entropy) |" in text and "| U-Net enhanced by CRF |" in text


def test_mcsa_unet_comparison_rows_build_monai_and_unet3plus_networks(tmp_path: Path):
    root, result = _tiny_run("mcsa_unet", tmp_path, "res_unet,unet3plus", table="table_comparison")
    rows = tmp_path / "table" / "rows"
    res_unet = read_record(rows / "res_unet" / "models" / "model.pt", "mcsa_unet", root).record.network
    assert res_unet["_target_"].endswith("MonaiNetwork") and res_unet["architecture"] == "UNet"
    assert res_unet["num_res_units"] == 2 and res_unet["channels"] == [4, 8, 16, 32, 64]
    unet3plus = read_record(rows / "unet3plus" / "models" / "model.pt", "mcsa_unet", root).record.network
    assert unet3plus["_target_"].endswith("UNet3Plus") and unet3plus["features"] == [4, 8, 16, 32, 64]
    for row in result.rows:
        assert {"mean_dice", "mpa", "miou", "time_ms"} <= set(row.cases[0])
    assert "| Res-UNet (MONAI UNet, 2 residual units) |" in result.table_md.read_text()


def test_danie_two_rows_on_the_embedded_phantoms(tmp_path: Path):
    root, result = _tiny_run("danie", tmp_path, "danie,sap_only")
    network = read_record(
        tmp_path / "table" / "rows" / "sap_only" / "models" / "model.pt", "danie", root
    ).record.network
    assert network["streams"] == "sap"
    for row in result.rows:
        assert [c["case"] for c in row.cases] == ["img0003", "img0004"]  # the tiny sample's validation phantoms
        assert all(0.0 <= c["dice_mean"] <= 1.0 for c in row.cases)
    text = result.table_md.read_text()
    assert "| row | DSC | HD95 (mm) | mIoU | ASD (mm) | n |" in text and "SAP only" in text


def test_hannet_two_rows(tmp_path: Path):
    root, result = _tiny_run("hannet", tmp_path, "hannet,seed_skips")
    network = read_record(tmp_path / "table" / "rows" / "seed_skips" / "models" / "model.pt", "hannet", root)
    assert network.record.network["skips"] == "seed"
    for row in result.rows:
        assert {"dice_mean", "aji", "pq"} <= set(row.cases[0])
    assert "| Han-Net, seed-literal skips |" in result.table_md.read_text()
