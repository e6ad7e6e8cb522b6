"""mcsa_unet bundle: ablation overrides, EMA weights (updated, saved with their record, validated), seed metrics,
patch sampling, the quick and paper recipes as config files, and the record bringing a recipe's widths and an
ablation row's switches to inference.

The generic workflows are in ``test_bundles.py``; these tests check what is particular to this bundle, with the tiny
settings of ``tests/bundles/cases/mcsa_unet.py``.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from monai.bundle import ConfigParser, ConfigWorkflow
from monai.utils import set_determinism
from PIL import Image

from attnseg_monai.bundle import BUNDLES_DIR, read_record, record_path
from attnseg_monai.bundle.record import WeightsMismatchError
from attnseg_monai.metrics import SurfaceDistancePolicyMetric
from attnseg_monai.networks import network_config
from attnseg_monai.networks.nets import MCSAUNet
from tests.bundles.cases import BUNDLE_CASES
from tests.bundles.helpers import config_strings

NAME = "mcsa_unet"
ROOT = BUNDLES_DIR / NAME
CASE = BUNDLE_CASES[NAME]
NO_MODELS = str(Path("/nonexistent") / "attnseg-test-models")
SWITCHES = ("use_channel_attention", "use_spatial_attention", "use_residual")
# Tab. 1 of the seed: (CA, SA, Res) per row
ROWS = {
    "unet": (False, False, False),
    "ca": (True, False, False),
    "sa": (False, True, False),
    "res": (False, False, True),
    "all": (True, True, True),
}
# what configs/paper.json changes: (quick value in train.json, paper value)
PAPER = {
    "features": ([16, 32, 64, 128, 256], [64, 128, 256, 512, 1024]),
    "max_epochs": (50, 200),
    "train_patch_size": ([128, 128], [256, 256]),
    "val_interval": (50, 5),
    "ema_momentum": (0.02, 0.001),
    "ema_warmup_iters": (50, 1000),
}


def _config(root: Path, *names: str) -> list[str]:
    return [str(root / "configs" / n) for n in names]


def _parser(*names: str, **overrides) -> ConfigParser:
    """The checkout's configs as a bundle without a trained model (a model trained in the checkout would decide the
    network through its record)."""
    parser = ConfigParser()
    parser.read_config(_config(ROOT, *names))
    parser["bundle_root"] = str(ROOT)
    parser["ckpt_dir"] = NO_MODELS
    for key, value in overrides.items():
        parser[key] = value
    return parser


def _n_params(net: torch.nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


def _switches_of(net: MCSAUNet) -> tuple[bool, bool, bool]:
    """(CA, SA, Res) read from the modules the network holds, the same at every encoder level."""
    found = set()
    for stage in net.encoder:
        csa = stage.csa
        found.add(
            (
                csa is not None and csa.channel_attention is not None,
                csa is not None and csa.spatial_attention is not None,
                (csa is not None and csa.use_residual) or stage.shortcut is not None,
            )
        )
    assert len(found) == 1, f"encoder levels disagree: {found}"
    return found.pop()


@pytest.mark.parametrize("row", sorted(ROWS))
def test_ablation_override_sets_the_switches(row: str):
    override = json.loads((ROOT / "configs" / "experiments" / f"{row}.json").read_text())
    assert set(override) == {f"network_def#{s}" for s in SWITCHES}, "override files set exactly the three switches"
    for name in ("train.json", "inference.json"):
        parser = _parser(name, f"experiments/{row}.json", **CASE["net"])
        net = parser.get_parsed_content("network_def")
        assert isinstance(net, MCSAUNet)
        assert _switches_of(net) == ROWS[row]
        expected = MCSAUNet(2, 3, 2, features=CASE["net"]["features"], **dict(zip(SWITCHES, ROWS[row])))
        assert _n_params(net) == _n_params(expected)


def test_ablation_rows_at_the_paper_widths():
    """With paper.json layered the rows are the paper's U-Net widths; the parameter counts differ as the modules do."""
    counts = {}
    for row in ROWS:
        parser = _parser("train.json", "paper.json", f"experiments/{row}.json")
        assert parser.get_parsed_content("features") == [64, 128, 256, 512, 1024]
        with torch.device("meta"):  # counts only: no memory, no initialisation cost
            net = parser.get_parsed_content("network_def")
        counts[row] = _n_params(net)
    assert len(set(counts.values())) == len(ROWS)
    # spatial attention adds the same 7x7 convolutions with or without channel attention
    assert counts["all"] - counts["ca"] == counts["sa"] - counts["unet"] > 0
    # the default network (no override) is the full MCSA-UNet
    with torch.device("meta"):
        default = _parser("train.json", "paper.json").get_parsed_content("network_def")
    assert _n_params(default) == counts["all"] and _switches_of(default) == ROWS["all"]
    assert counts["res"] > counts["unet"] and counts["ca"] > counts["unet"]


def test_quick_and_paper_recipes_are_config_files():
    quick, paper = _parser("train.json", dataset_dir="/data/mitosis"), _parser("train.json", "paper.json")
    assert quick.get_parsed_content("recipe") == "quick" and paper.get_parsed_content("recipe") == "paper"
    for parser in (quick, paper):
        assert parser["network_def"]["features"] == "@features"
    assert quick.get_parsed_content("features") == quick.get_parsed_content("quick_features") == [16, 32, 64, 128, 256]
    assert paper.get_parsed_content("features") == [64, 128, 256, 512, 1024]
    for key, (q, p) in PAPER.items():
        assert (quick.get_parsed_content(key), paper.get_parsed_content(key)) == (q, p), key
    # what both recipes share: learning rate, sampling, batch, the sliding window of validation
    for key in ("learning_rate", "pos_patches", "neg_patches", "patches_per_slide", "batch_size", "roi_size"):
        assert quick.get_parsed_content(key) == paper.get_parsed_content(key), key
    # paper.json holds exactly what the paper recipe changes
    assert set(json.loads((ROOT / "configs" / "paper.json").read_text())) == {"recipe", *PAPER}
    # what inference must repeat is recorded, with the recipe's name
    for parser, recipe in ((quick, "quick"), (paper, "paper")):
        spec = parser.get_parsed_content("record")
        assert spec.bundle == NAME and spec.recipe == recipe
        assert spec.preprocessing == {"intensity_range": [0.0, 255.0]}
    # an ablation row keeps the recipe's name (the record holds the row's switches in the network's arguments)
    spec = _parser("train.json", "paper.json", "experiments/ca.json").get_parsed_content("record")
    assert spec.recipe == "paper"
    # use_embedded_data only chooses the data (the datalists), never a setting
    configs = ["train.json", "inference.json", "evaluate.json", "paper.json", *(f"experiments/{r}.json" for r in ROWS)]
    for name in configs:
        for path, text in config_strings(json.loads((ROOT / "configs" / name).read_text())):
            if "@use_embedded_data" in text:
                assert "datalist" in path.split("#"), f"{name}: {path} switches on use_embedded_data"
    # inference builds the quick width for a bundle without a trained model; a record decides otherwise
    infer = _parser("inference.json")
    assert infer.get_parsed_content("network_def").features == (16, 32, 64, 128, 256)
    assert infer.get_parsed_content("intensity_range") == [0.0, 255.0]


def test_ablation_row_of_the_paper_recipe_is_inferred_as_recorded(tmp_path: Path):
    """A checkpoint of an ablation row trained with paper.json is inferred by plain inference.json: the record brings
    the switches and the widths (here a tiny width, standing in for the paper's), every tensor fits; without its
    record the same weights do not fit the default network and are refused."""
    widths = [8, 16, 32, 64, 128]
    trained = _parser("train.json", "paper.json", "experiments/sa.json", features=widths)
    net = trained.get_parsed_content("network_def")
    assert _switches_of(net) == ROWS["sa"] and list(net.features) == widths
    checkpoint = tmp_path / "models" / "model.pt"
    checkpoint.parent.mkdir()
    torch.save(net.state_dict(), checkpoint)
    trained.get_parsed_content("record").record_for(net).write(record_path(checkpoint))

    record = read_record(checkpoint, NAME, ROOT).record
    assert record.recipe == "paper" and record.network == network_config(net)
    assert record.preprocessing == {"intensity_range": [0.0, 255.0]}
    infer = _parser("inference.json", ckpt_path=str(checkpoint))  # no paper.json, no ablation file, no width
    built = infer.get_parsed_content("network_def")
    assert network_config(built) == network_config(net) and _switches_of(built) == ROWS["sa"]
    assert infer.get_parsed_content("intensity_range") == [0.0, 255.0]
    # evaluate.json layered on inference.json builds the same network
    evaluate = _parser("inference.json", "evaluate.json", ckpt_path=str(checkpoint))
    assert network_config(evaluate.get_parsed_content("network_def")) == network_config(net)

    record_path(checkpoint).unlink()
    with pytest.raises(RuntimeError) as info:  # MONAI wraps the error in its instantiation error
        _parser("inference.json", ckpt_path=str(checkpoint)).get_parsed_content("network_def")
    causes = []
    error: BaseException | None = info.value
    while error is not None:
        causes.append(error)
        error = error.__cause__ or error.__context__
    mismatch = [e for e in causes if isinstance(e, WeightsMismatchError)]
    assert mismatch and str(checkpoint) in str(mismatch[0]), causes


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> dict:
    """One training iteration (tiny network), then the end-of-training validation; the first weights are kept."""
    root = tmp_path_factory.mktemp(NAME) / NAME
    shutil.copytree(ROOT, root, ignore=shutil.ignore_patterns("models", "eval", "data"))
    overrides = {"bundle_root": str(root), **CASE["net"], **CASE["train"], "train#trainer#epoch_length": 1}
    wf = ConfigWorkflow(
        config_file=_config(root, "train.json"),
        meta_file=str(root / "configs" / "metadata.json"),
        logging_file=False,
        workflow_type="train",
        run_id="training",
        **overrides,
    )
    wf.initialize()
    network = wf.parser.get_parsed_content("network")
    first = {k: v.detach().clone() for k, v in network.state_dict().items()}
    wf.run()
    wf.finalize()
    return {"root": root, "parser": wf.parser, "first": first}


def test_ema_is_the_running_average_and_differs_from_the_online_weights(trained):
    parser = trained["parser"]
    network, ema = parser.get_parsed_content("network"), parser.get_parsed_content("ema_network")
    trainer = parser.get_parsed_content("train#trainer")
    assert trainer.state.iteration == 1
    momentum = trainer.state.ema_momentum
    assert momentum == pytest.approx(parser.get_parsed_content("ema_momentum_warmup"))
    online, averaged, first = network.state_dict(), ema.state_dict(), trained["first"]
    changed = 0
    for key, value in online.items():
        if not value.is_floating_point():
            continue
        expected = (1.0 - momentum) * first[key] + momentum * value
        torch.testing.assert_close(averaged[key], expected, rtol=1e-5, atol=1e-6)
        changed += int(not torch.allclose(averaged[key], value))
    assert changed > 0, "after a step the EMA weights must differ from the online weights"


def test_ema_weights_are_validated_and_saved(trained):
    parser, root = trained["parser"], trained["root"]
    ema, network = parser.get_parsed_content("ema_network"), parser.get_parsed_content("network")
    assert parser.get_parsed_content("validate#evaluator").network is ema
    ema_state, online_state = ema.state_dict(), network.state_dict()

    def same(a: dict, b: dict) -> bool:
        return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)

    best = torch.load(root / "models" / "model.pt", weights_only=True)
    assert same(best, ema_state) and not same(best, online_state)
    final = torch.load(root / "models" / "model_final.pt", weights_only=True)
    assert same(final["model"], ema_state) and same(final["online_model"], online_state)
    assert {"optimizer", "lr_scheduler"} <= set(final)
    # every checkpoint (the EMA weights of model.pt and model_final.pt, the resumable ones) has its record beside it,
    # describing the EMA network with the quick recipe's settings
    checkpoints = sorted((root / "models").glob("*.pt"))
    assert sorted((root / "models").glob("*.record.json")) == [record_path(p) for p in checkpoints]
    for name in ("model.pt", "model_final.pt"):
        record = read_record(root / "models" / name, NAME, root).record
        assert record is not None, name
        assert record.network == network_config(ema) and record.network["features"] == CASE["net"]["features"]
        assert record.recipe == "quick" and record.preprocessing == {"intensity_range": [0.0, 255.0]}


def _read_metrics(path: Path) -> dict[str, float]:
    rows = [line.split(",") for line in path.read_text().splitlines() if line.strip()]
    return {name: float(value) for name, value in rows}


def test_seed_metrics_in_evaluate_match_the_written_masks_and_the_validation(trained):
    root = trained["root"]
    wf = ConfigWorkflow(
        config_file=_config(root, "inference.json", "evaluate.json"),
        meta_file=str(root / "configs" / "metadata.json"),
        logging_file=False,
        workflow_type="infer",
        run_id="evaluating",
        bundle_root=str(root),
        **CASE["net"],
        **CASE["infer"],
    )
    wf.initialize()
    wf.run()
    wf.finalize()
    evaluated = _read_metrics(root / "eval" / "evaluation" / "metrics.csv")
    assert set(evaluated) == {"mean_dice", "mpa", "miou", "hd95", "asd"}
    assert all(math.isfinite(v) for v in evaluated.values()), evaluated

    # the same numbers from the written class masks and the label files, counted here (C = 2, background included,
    # counts pooled over the data set; distances on the mitosis class only)
    items = json.loads((root / "eval" / "evaluation_datalist.json").read_text())["validation"]
    counts = np.zeros((2, 3))  # per class: tp, fp, fn
    hd95 = SurfaceDistancePolicyMetric(kind="hd95", include_background=False)
    for item in items:
        label = np.asarray(Image.open(item["label"])) > 0
        pred_file = root / "eval" / "evaluation" / f"{Path(item['image']).stem}_classes.png"
        pred = np.asarray(Image.open(pred_file))
        assert pred.shape == label.shape and set(np.unique(pred)) <= {0, 1}
        for c in (0, 1):
            p, g = pred == c, label == (c == 1)
            counts[c] += [np.sum(p & g), np.sum(p & ~g), np.sum(~p & g)]
        onehot = [torch.from_numpy(np.stack([~m, m]))[None].float() for m in (pred == 1, label)]
        hd95(onehot[0], onehot[1])
    tp, fp, fn = counts.T
    assert evaluated["mpa"] == pytest.approx(np.mean(tp / np.maximum(tp + fp, 1)), abs=1e-4)
    assert evaluated["miou"] == pytest.approx(np.mean(tp / (tp + fp + fn)), abs=1e-4)
    assert evaluated["mean_dice"] == pytest.approx(np.mean(2 * tp / (2 * tp + fp + fn)), abs=1e-4)
    assert evaluated["hd95"] == pytest.approx(float(hd95.aggregate()), rel=1e-4)

    # evaluate.json with model.pt reproduces the end-of-training validation, which ran on the EMA weights
    validated = _read_metrics(root / "eval" / "metrics.csv")
    for name in evaluated:
        assert validated[f"val_{name}"] == pytest.approx(evaluated[name], rel=1e-4, abs=1e-4), name


def test_training_patches_balance_mitoses_and_background(tmp_path):
    """RandCropByPosNegLabeld centres pos/(pos+neg) of the patches on a mitosis; patches leave as plain tensors."""
    parser = _parser(
        "train.json",
        **CASE["train"],
        bundle_root=str(tmp_path),
        embedded_dataset_dir=str(tmp_path / "sample"),
        output_dir=str(tmp_path / "eval"),
    )
    pos, neg = parser.get_parsed_content("pos_patches"), parser.get_parsed_content("neg_patches")
    item = parser.get_parsed_content("train#datalist")[0]
    transform = parser.get_parsed_content("train#preprocessing")
    set_determinism(seed=0)
    transform.set_random_state(seed=0)
    size = CASE["train"]["train_patch_size"]
    centred = []
    for _ in range(16):
        for patch in transform(item):
            image, label = patch["image"], patch["label"]
            assert type(image) is torch.Tensor and type(label) is torch.Tensor, "MetaTensors slow training down"
            assert image.shape == (3, *size) and image.dtype == torch.float32
            assert label.shape == tuple(size) and label.dtype == torch.long
            assert set(label.unique().tolist()) <= {0, 1}
            h, w = size[0] // 2, size[1] // 2  # the centre pixel lands in this 2x2 block under rotations and flips
            centred.append(bool(label[h - 1 : h + 1, w - 1 : w + 1].any()))
    set_determinism(seed=None)
    share = sum(centred) / len(centred)
    assert abs(share - pos / (pos + neg)) < 0.2, share


def _write_slides(root: Path) -> None:
    """Six small slides in the mitosis layout: PNG, TIFF and JPEG images; 0/255 (and one 0/1) PNG labels."""
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    rng = np.random.default_rng(0)
    for k, ext in enumerate((".png", ".tif", ".jpg", ".png", ".png", ".tif")):
        Image.fromarray(rng.integers(0, 255, (72, 96, 3), dtype=np.uint8)).save(root / "images" / f"s{k}{ext}")
        label = np.zeros((72, 96), np.uint8)
        label[10 + k : 20 + k, 30:40] = 1 if k == 3 else 255
        Image.fromarray(label).save(root / "labels" / f"s{k}.png")


def test_paper_recipe_on_real_data(tmp_path):
    _write_slides(tmp_path / "slides")
    parser = _parser(
        "train.json",
        "paper.json",
        dataset_dir=str(tmp_path / "slides"),
        output_dir=str(tmp_path / "eval"),
        ckpt_dir=str(tmp_path / "models"),
    )
    assert parser.get_parsed_content("use_embedded_data") is False
    assert parser.get_parsed_content("recipe") == "paper"
    assert parser.get_parsed_content("features") == parser["paper_features"]
    assert parser.get_parsed_content("max_epochs") == parser["paper_epochs"]
    assert parser.get_parsed_content("train_patch_size") == [256, 256]
    items = parser.get_parsed_content("train#datalist") + parser.get_parsed_content("validate#datalist")
    assert sorted(Path(i["image"]).stem for i in items) == [f"s{k}" for k in range(6)]
    # slides smaller than a training patch are padded; 0/1 and 0/255 labels both become {0, 1}
    transform = parser.get_parsed_content("train#preprocessing")
    for item in items:
        for patch in transform(item):
            assert patch["image"].shape == (3, 256, 256) and patch["label"].shape == (256, 256)
            assert set(patch["label"].unique().tolist()) == {0, 1}


def test_the_seeds_resize_is_a_random_rescaling_of_the_patches_and_a_row_switches_it_off():
    """Seed 001, Sec. 2.1: resizing, rotations by multiples of 90 degrees and flips; the resize is RandZoomd on the
    training patches (bilinear image, nearest label, patch size kept); no_resize.json is MCSA-UNet without it."""
    from monai.transforms import RandZoomd

    def zoom(parser: ConfigParser) -> RandZoomd:
        found = [t for t in parser.get_parsed_content("train#random_transforms") if isinstance(t, RandZoomd)]
        assert len(found) == 1
        return found[0]

    on = zoom(_parser("train.json"))
    assert on.prob == 0.5 and (on.rand_zoom.min_zoom, on.rand_zoom.max_zoom) == ((0.8,), (1.25,))
    assert list(on.mode) == ["bilinear", "nearest"] and on.rand_zoom.keep_size
    assert zoom(_parser("train.json", "paper.json")).prob == 0.5, "both recipes"
    off = _parser("train.json", "experiments/no_resize.json")
    assert zoom(off).prob == 0.0
    assert _switches_of(off.get_parsed_content("network_def")) == ROWS["all"]
    # a rescaled patch keeps its size and its 0/1 label
    on.set_random_state(seed=1)
    on.prob = 1.0
    label = torch.zeros(1, 64, 64)
    label[0, 24:40, 24:40] = 1
    out = on({"image": torch.rand(3, 64, 64), "label": label})
    assert out["image"].shape == (3, 64, 64) and out["label"].shape == (1, 64, 64)
    assert set(torch.as_tensor(out["label"]).unique().tolist()) == {0.0, 1.0}
    assert int(torch.as_tensor(out["label"]).sum()) != 256, "rescaled"


# the comparison models of Tab. 2 (table_comparison.json): (network class, architecture or None)
COMPARISON = {
    "res_unet": ("MonaiNetwork", "UNet"),
    "unetplusplus": ("MonaiNetwork", "BasicUNetPlusPlus"),
    "unet3plus": ("UNet3Plus", None),
}


def test_the_comparison_table_names_its_rows_and_evaluation_overrides():
    from attnseg_monai.inference.experiment_spec import check_metrics, load_table

    table = load_table(ROOT, "table_comparison")
    assert [r.id for r in table.rows] == ["unet", "res_unet", "unetplusplus", "unet3plus", "all"]
    assert table.metrics == ["mean_dice", "mpa", "miou", "time_ms"]
    check_metrics(table, ROOT)
    ablation = {r.id: r for r in load_table(ROOT).rows}
    for row in table.rows:
        if row.id in ablation:  # the same files as Tab. 1's rows, so one --out trains them once
            assert row.overrides == ablation[row.id].overrides and not row.evaluation
        else:
            expected = "unet3plus_inference.json" if row.id == "unet3plus" else "monai_inference.json"
            assert [p.name for p in row.evaluation] == [expected]


@pytest.mark.parametrize("row", list(COMPARISON))
@pytest.mark.parametrize("recipe", ["quick", "paper"])
def test_a_comparison_row_builds_its_network_at_the_recipes_widths(row: str, recipe: str):
    from attnseg_monai.bundle.record import BundleRecord

    files = ["train.json", *(["paper.json"] if recipe == "paper" else []), f"experiments/{row}.json"]
    parser = _parser(*files)
    widths = parser.get_parsed_content("features")
    cls, architecture = COMPARISON[row]
    if recipe == "paper":
        with torch.device("meta"):
            net = parser.get_parsed_content("network_def")
        assert type(net).__name__ == cls
        config = network_config(net)
        assert config.get("channels", config.get("features"))[:5] == widths == [64, 128, 256, 512, 1024]
        return
    torch.manual_seed(0)
    net = parser.get_parsed_content("network_def")
    assert type(net).__name__ == cls and getattr(net, "architecture", None) == architecture
    config = network_config(net)
    assert config.get("channels", config.get("features"))[:5] == widths == [16, 32, 64, 128, 256]
    assert config["norm"] == "batch" and config["act"] == "relu", "the bundle's units: only the architecture differs"
    x, label = torch.rand(2, 3, 64, 64), torch.randint(0, 2, (2, 64, 64))
    out = net.train()(x)
    assert isinstance(out, torch.Tensor), "one map for the bundle's cross-entropy"
    loss = parser.get_parsed_content("loss")(out, label)
    loss.backward()
    with torch.no_grad():
        assert net.eval()(x).shape == (2, 2, 64, 64)
    record = parser.get_parsed_content("record").record_for(net)
    rebuilt = BundleRecord.from_dict(json.loads(record.to_json())).build_network()
    assert network_config(rebuilt) == config
    rebuilt.load_state_dict(net.state_dict(), strict=True)
