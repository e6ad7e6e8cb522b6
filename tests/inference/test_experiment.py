"""``attnseg experiment`` without training anything: the tables of the collection, bad tables and rows (clear errors
naming the file), resumption row by row (a finished row is not trained again) and the files of the table. The
end-to-end runs on tiny data are in ``tests/bundles/test_experiment.py``."""

from __future__ import annotations

import csv
import json
import shutil
import sys
from pathlib import Path

import pytest

from attnseg_monai.bundle import BUNDLES_DIR, list_bundles
from attnseg_monai.cli import main
from attnseg_monai.inference import experiment as experiment_module
from attnseg_monai.inference import jobs as jobs_module
from attnseg_monai.inference.errors import ExperimentError
from attnseg_monai.inference.experiment import ROW_MARKER, run_experiment
from attnseg_monai.inference.experiment_spec import EXPERIMENTS_DIR, check_metrics, load_table, select_rows
from attnseg_monai.inference.experiment_table import PLOT_MISSING
from attnseg_monai.inference.jobs import TrainingJob, run_training_jobs

TABLES = [b for b in list_bundles() if (BUNDLES_DIR / b / EXPERIMENTS_DIR / "table.json").is_file()]


@pytest.mark.parametrize("bundle", TABLES)
def test_every_table_of_the_collection_loads_and_names_metrics_the_bundle_computes(bundle: str):
    table = load_table(BUNDLES_DIR / bundle)
    check_metrics(table, BUNDLES_DIR / bundle)
    assert table.title and table.seed and table.rows
    for row in table.rows:
        assert isinstance(json.loads(row.overrides.read_text()), dict)


def test_the_seed_tables():
    mcsa = load_table(BUNDLES_DIR / "mcsa_unet")
    assert mcsa.seed == "001" and mcsa.metrics == ["mean_dice", "mpa", "miou"]
    assert [(r.id, r.name) for r in mcsa.rows] == [
        ("unet", "U-Net"),
        ("ca", "+CA"),
        ("sa", "+SA"),
        ("res", "+Res"),
        ("all", "MCSA-UNet"),
        ("no_resize", "MCSA-UNet without resize augmentation"),
    ]
    assert all(r.overrides.name == f"{r.id}.json" and r.trains for r in mcsa.rows)
    comparison = load_table(BUNDLES_DIR / "mcsa_unet", "table_comparison")
    assert [r.id for r in comparison.rows] == ["unet", "res_unet", "unetplusplus", "unet3plus", "all"]
    focal = load_table(BUNDLES_DIR / "focal_attn_unet")
    assert focal.seed == "002" and focal.metrics == ["acc", "miou", "time_ms"]
    assert [r.id for r in focal.rows] == ["unet_ce", "focal", "attention", "dilation", "crf"]
    crf = focal.row("crf")
    assert crf.model_from == "dilation" and not crf.trains and [p.name for p in crf.evaluation] == ["crf.json"]
    losses = {r.id: json.loads(r.overrides.read_text())["loss"]["_target_"] for r in focal.rows}
    assert losses == {"unet_ce": "DiceCELoss", **{k: "FocalLoss" for k in ("focal", "attention", "dilation", "crf")}}
    assert not (BUNDLES_DIR / "mcsa_unet" / "configs" / "ablation").exists()  # the rows moved to experiments/


def _table(tmp_path: Path, content, files: dict[str, dict] | None = None) -> Path:
    folder = tmp_path / EXPERIMENTS_DIR
    folder.mkdir(parents=True)
    (folder / "table.json").write_text(content if isinstance(content, str) else json.dumps(content))
    for name, body in (files or {"a.json": {"x": 1}, "b.json": {"x": 2}}).items():
        (folder / name).write_text(json.dumps(body))
    return folder / "table.json"


ROWS = [{"id": "a", "name": "A", "overrides": "a.json"}, {"id": "b", "name": "B", "overrides": "b.json"}]


@pytest.mark.parametrize(
    "content, expected",
    [
        ("{not json", "not valid JSON"),
        ({"title": "t", "rows": ROWS}, "missing 'seed'"),
        ({"title": "t", "seed": "1", "rows": []}, "non-empty list"),
        ({"title": "t", "seed": "1", "rows": [{"id": "a", "name": "A"}]}, "needs 'overrides'"),
        ({"title": "t", "seed": "1", "rows": [ROWS[0], ROWS[0]]}, "appears twice"),
        ({"title": "t", "seed": "1", "rows": [{**ROWS[0], "overrides": "gone.json"}]}, "gone.json"),
        ({"title": "t", "seed": "1", "rows": [{**ROWS[0], "id": "../x"}]}, "plain file stem"),
        ({"title": "t", "seed": "1", "rows": [{**ROWS[0], "colour": 1}]}, "unknown field"),
        ({"title": "t", "seed": "1", "rows": [ROWS[0], {**ROWS[1], "model_from": "zz"}]}, "'model_from'"),
        ({"title": "t", "seed": "1", "rows": [ROWS[0], {**ROWS[1], "model_from": "a"}]}, "must be that row's"),
        ({"title": "t", "seed": "1", "rows": ROWS, "regions": {"disc": [0, 1]}}, "'regions'"),
        ({"title": "t", "seed": "1", "rows": ROWS, "regions": [[1, 2]]}, "'regions'"),
        ({"title": "t", "seed": "1", "rows": ROWS, "configs": ["gone.json"]}, "gone.json"),
    ],
)
def test_bad_tables_are_refused_naming_the_file(tmp_path: Path, content, expected: str):
    path = _table(tmp_path, content)
    with pytest.raises(ExperimentError) as info:
        load_table(tmp_path)
    assert expected in str(info.value) and str(path.parent) in str(info.value)


def test_missing_table_unknown_row_and_unknown_metric(tmp_path: Path, caplog):
    with pytest.raises(ExperimentError, match=r"configs/experiments/table\.json: the table of experiments .*not found"):
        load_table(tmp_path)
    path = _table(tmp_path, {"title": "t", "seed": "1", "rows": ROWS})
    table = load_table(tmp_path)
    assert [r.id for r in select_rows(table, "b, a")] == ["a", "b"] and select_rows(table, None) == table.rows
    with pytest.raises(ExperimentError) as info:
        select_rows(table, ["a", "c"])
    assert str(path) in str(info.value) and "unknown row(s) c" in str(info.value) and "a, b" in str(info.value)
    mcsa = load_table(BUNDLES_DIR / "mcsa_unet")
    mcsa.metrics = ["mean_dice", "acc"]
    with pytest.raises(ExperimentError, match=r"table\.json: metric\(s\) \['acc'\] are not computed"):
        check_metrics(mcsa, BUNDLES_DIR / "mcsa_unet")
    # the command line: exit code 2 and the message, before anything is trained
    assert main(["experiment", "mcsa_unet", "--rows", "unet,nope", "--noprogress"]) == 2
    assert "unknown row(s) nope" in caplog.text and "table.json" in caplog.text
    assert main(["experiment", "mcsa_unet", "--table", "absent", "--noprogress"]) == 2
    assert "configs/experiments/absent.json" in caplog.text


class _FakeTraining:
    """Stands in for a training process: writes model.pt (and a checkpoint) into --ckpt_dir, exits 0."""

    started: list[list[str]] = []

    def __init__(self, cmd, **_):
        self.cmd, self.returncode = cmd, 0
        _FakeTraining.started.append(cmd)
        folder = Path(cmd[cmd.index("--ckpt_dir") + 1])
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "model.pt").write_bytes(b"weights of " + folder.parent.name.encode())

    def poll(self):
        return 0

    def terminate(self):
        pass

    def wait(self):
        return 0


def _fake_evaluation(root, row, model, row_dir, items, labels, options, progress=True):
    value = {"unet": 0.5, "all": 0.8}.get(row.id, 0.1)
    cases = [
        {"case": c, "mean_dice": value + d, "mpa": value, "miou": value - d, "time_ms": 10.0 + 10 * d}
        for c, d in (("slide_a", 0.0), ("slide_b", 0.1))
    ]
    return {"cases": cases, "pooled": {"mean_dice": value, "mpa": value, "miou": value}, "failures": []}


@pytest.fixture
def fake_runs(monkeypatch, tmp_path):
    """run_experiment on the real mcsa_unet table with fake trainings, data and evaluation."""
    _FakeTraining.started = []
    monkeypatch.setattr(jobs_module.subprocess, "Popen", _FakeTraining)
    monkeypatch.setattr(jobs_module.time, "sleep", lambda _: None)
    items = [{"image": "/data/images/slide_a.png", "label": "/data/labels/slide_a.png"}]
    monkeypatch.setattr(experiment_module, "validation_items", lambda *a: items)
    monkeypatch.setattr(experiment_module, "labels_folder", lambda items, folder: folder)
    monkeypatch.setattr(experiment_module, "evaluate_row", _fake_evaluation)

    def run(**kw):
        options = {"rows": "unet,all", "epochs": 2, "out": tmp_path / "out", "progress": False}
        return run_experiment("mcsa_unet", **{**options, **kw})

    return run


def test_finished_rows_are_not_trained_again_and_the_table_is_written(fake_runs, tmp_path):
    first = fake_runs(command_line="attnseg experiment mcsa_unet --rows unet,all --epochs 2")
    assert [(r.id, r.status) for r in first.rows] == [("unet", "trained"), ("all", "trained")] and first.ok
    assert len(_FakeTraining.started) == 2
    cmd = _FakeTraining.started[0]
    assert cmd[cmd.index("--max_epochs") + 1] == "2" and "--resume" not in cmd
    assert json.loads(cmd[cmd.index("--config_file") + 1])[-1].endswith("configs/experiments/unet.json")
    out = tmp_path / "out"
    assert json.loads((out / "rows" / "unet" / "models" / ROW_MARKER).read_text())["model"] is True
    command = (out / "command.txt").read_text().splitlines()
    assert command[0] == "attnseg experiment mcsa_unet --rows unet,all --epochs 2"
    assert any(line.startswith(sys.executable) and "unet.json" in line for line in command)

    # rerun: nothing is trained; an interrupted row (a checkpoint, no marker) is resumed
    _FakeTraining.started = []
    again = fake_runs()
    assert [r.status for r in again.rows] == ["done", "done"] and not _FakeTraining.started
    (out / "rows" / "all" / "models" / ROW_MARKER).unlink()
    (out / "rows" / "all" / "models" / "checkpoint_epoch=1.pt").write_bytes(b"x")
    resumed = fake_runs()
    assert [r.status for r in resumed.rows] == ["done", "resumed"]
    assert _FakeTraining.started[0][-2:] == ["--resume", "true"]
    # other settings for finished rows: refused, naming what differs
    with pytest.raises(ExperimentError, match=r"unet \(epochs\).*trained with other settings"):
        fake_runs(epochs=3)

    # the table: mean ± std per metric over the cases, pooled values, the seed's headings, csv, plot, command
    text = (out / "table.md").read_text()
    assert "| row | Mean_Dice | MPA | MIoU | n |" in text
    assert "| U-Net | 0.5500 ± 0.0500 | 0.5000 ± 0.0000 | 0.4500 ± 0.0500 | 2 |" in text
    assert "| MCSA-UNet | 0.8000 | 0.8000 | 0.8000 |" in text and "Seed 001" in text
    rows = list(csv.DictReader((out / "table.csv").open()))
    assert [(r["row"], r["kind"], r["case"]) for r in rows[:5]] == [
        ("unet", "case", "slide_a"),
        ("unet", "case", "slide_b"),
        ("unet", "mean", ""),
        ("unet", "std", ""),
        ("unet", "count", ""),
    ]
    assert float(rows[2]["time_ms"]) == pytest.approx(10.5) and rows[5]["kind"] == "pooled"
    assert first.plot == out / "table.png" and (out / "table.png").read_bytes()[:4] == b"\x89PNG"
    # without a command line given, command.txt holds the equivalent attnseg command
    command = (out / "command.txt").read_text().splitlines()
    assert command[0].startswith("attnseg experiment mcsa_unet --table table --out ") and "--epochs 2" in command[0]
    assert json.loads((out / "experiment.json").read_text())["rows"][0]["id"] == "unet"


def test_without_matplotlib_the_table_says_so(fake_runs, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    result = fake_runs()
    assert result.plot is None and result.plot_message == PLOT_MISSING
    assert result.table_md.is_file() and result.table_csv.is_file()


def test_a_failed_training_leaves_its_row_out_with_the_reason(fake_runs, monkeypatch):
    class Fails(_FakeTraining):
        def __init__(self, cmd, **kw):
            super().__init__(cmd, **kw)
            if "unet" in Path(cmd[cmd.index("--ckpt_dir") + 1]).parent.name:
                self.returncode = 1

        def poll(self):
            return self.returncode

    monkeypatch.setattr(jobs_module.subprocess, "Popen", Fails)
    result = fake_runs()
    assert not result.ok and [r.status for r in result.rows] == ["failed", "trained"]
    assert "exited with code 1" in result.rows[0].reason
    text = result.table_md.read_text()
    assert "| MCSA-UNet |" in text and "- U-Net (`unet`): training failed" in text


def test_training_jobs_skip_finished_folders(tmp_path: Path):
    done = tmp_path / "done"
    done.mkdir()
    (done / "model.pt").write_bytes(b"w")
    (done / "m.json").write_text("{}")
    job = TrainingJob("row x", [sys.executable, "-c", "raise SystemExit(3)"], done, tmp_path / "x.log", tmp_path)
    exits_3 = [sys.executable, "-c", "raise SystemExit(3)"]
    failing = TrainingJob("row y", exits_3, tmp_path / "y", tmp_path / "y.log", tmp_path)
    results = run_training_jobs([job, failing], marker_name="m.json", progress=False)
    assert [r.status for r in results] == ["done", "failed"] and "code 3" in results[1].reason
    assert not (tmp_path / "y" / "m.json").exists()  # a failed run leaves no marker: trained afresh next time
    shutil.rmtree(done)
