"""The Drishti-GS1 reader on tiny files written in the real layout (RGB photographs, 8-bit grey soft maps in
``GT/<stem>/SoftMap/``), its conversion to nested labels, the split, the embedded sample and the images to segment."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from attnseg_monai.data import (
    DRISHTI_REGIONS,
    DatasetError,
    DrishtiGSReader,
    drishti_inference_items,
    find_reader,
    make_drishti_sample,
    prepare_drishti_datalist,
    read_dataset,
    read_header,
    softmaps_to_label,
    verify_sample,
)
from attnseg_monai.io.images import read_pixels
from tests.data.conftest import rgb, write_image

H, W = 24, 36  # the photographs' 3:2 aspect, tiny


def _soft(*boxes: tuple[int, int, int, int, int]) -> np.ndarray:
    """uint8 soft map with ``value`` on rows ``r0:r1`` and columns ``c0:c1`` for each ``(r0, r1, c0, c1, value)``."""
    soft = np.zeros((H, W), dtype=np.uint8)
    for r0, r1, c0, c1, value in boxes:
        soft[r0:r1, c0:c1] = value
    return soft


# disc: all four annotators on rows 6..18, three of them on two more rows, one of them on two more again;
# cup: all on rows 10..14, two of four (128) on row 9
DISC = _soft((4, 20, 10, 26, 64), (5, 19, 11, 25, 191), (6, 18, 12, 24, 255))
CUP = _soft((9, 15, 15, 21, 128), (10, 15, 15, 21, 255))


def _case(section_dir: Path, gt_name: str, stem: str, seed: int = 0, disc=DISC, cup=CUP, size=(H, W)) -> None:
    write_image(section_dir / "Images" / f"{stem}.png", rgb(*size, seed=seed))
    soft = section_dir / gt_name / stem / "SoftMap"
    if disc is not None:
        write_image(soft / f"{stem}_ODsegSoftmap.png", disc)
    if cup is not None:
        write_image(soft / f"{stem}_cupsegSoftmap.png", cup)
    (section_dir / gt_name / stem / f"{stem}_cdrValues.txt").write_text("0.5 0.5 0.5 0.5\n")


@pytest.fixture
def drishti_root(tmp_path: Path) -> Path:
    """``<tmp>/Drishti-GS1_files`` with 3 training images (002, 004, 006) and 2 test images (001, 003)."""
    base = tmp_path / "data" / "Drishti-GS1_files"
    for k in (2, 4, 6):
        _case(base / "Training", "GT", f"drishtiGS_{k:03d}", seed=k)
    for k in (1, 3):
        _case(base / "Test", "Test_GT", f"drishtiGS_{k:03d}", seed=k)
    return base


def test_softmaps_to_label_nested_regions_and_agreement():
    half = softmaps_to_label(DISC, CUP)  # default: at least half of the annotators
    assert half.dtype == np.uint8 and set(np.unique(half)) == {0, 1, 2}
    assert (half > 0).sum() == 14 * 14 and (half == 2).sum() == 6 * 6  # disc: >= 128 (191 and 255); cup: row 9 too
    every = softmaps_to_label(DISC, CUP, agreement=1.0)
    assert (every > 0).sum() == 12 * 12 and (every == 2).sum() == 5 * 6
    anyone = softmaps_to_label(DISC, CUP, agreement=1 / 255)
    assert (anyone > 0).sum() == 16 * 16 and (anyone == 2).sum() == 6 * 6
    # RGB soft maps are read from their first channel; 16-bit maps against their own full scale
    assert np.array_equal(softmaps_to_label(np.repeat(DISC[..., None], 3, 2), CUP), half)
    assert np.array_equal(softmaps_to_label(DISC.astype(np.uint16) * 257, CUP.astype(np.uint16) * 257), half)
    # a cup mark outside the disc stays cup: the disc region {1, 2} contains the whole cup
    stray = CUP.copy()
    stray[0, 0] = 255
    assert softmaps_to_label(DISC, stray)[0, 0] == 2 and DRISHTI_REGIONS == {"disc": (1, 2), "cup": (2,)}
    for bad in (0.0, 1.5, -0.1):
        with pytest.raises(ValueError, match="agreement"):
            softmaps_to_label(DISC, CUP, agreement=bad)
    with pytest.raises(ValueError, match="differ in size"):
        softmaps_to_label(DISC, CUP[:, :-1])
    with pytest.raises(ValueError, match="unsigned integer"):
        softmaps_to_label(DISC.astype(np.float32), CUP)


def test_reader_reads_both_sections_into_cached_labels(drishti_root: Path, tmp_path: Path):
    for root in (drishti_root, drishti_root.parent):  # Drishti-GS1_files itself or the folder holding it
        assert isinstance(find_reader(root), DrishtiGSReader)
    before = {p: p.stat().st_mtime_ns for p in drishti_root.rglob("*") if p.is_file()}
    items = DrishtiGSReader(cache_dir=tmp_path / "cache").read(drishti_root.parent)
    assert [(Path(i["image"]).name, i["section"]) for i in items] == [
        ("drishtiGS_002.png", "training"),
        ("drishtiGS_004.png", "training"),
        ("drishtiGS_006.png", "training"),
        ("drishtiGS_001.png", "test"),
        ("drishtiGS_003.png", "test"),
    ]
    for item in items:
        label = Path(item["label"])
        assert label.parent == tmp_path / "cache" / "drishti_gs" and label.name.startswith(Path(item["image"]).stem)
        assert read_header(label).size == (W, H) and read_header(label).channels == 1
        assert np.array_equal(read_pixels(label), softmaps_to_label(DISC, CUP))
    assert {p: p.stat().st_mtime_ns for p in drishti_root.rglob("*") if p.is_file()} == before  # data untouched
    # another agreement is another label file; the default cache is inside the data set
    strict = DrishtiGSReader(section="training", agreement=1.0).read(drishti_root)
    assert len(strict) == 3 and {i["section"] for i in strict} == {"training"}
    assert Path(strict[0]["label"]).parent == drishti_root / ".attnseg_cache" / "drishti_gs"
    assert (read_pixels(strict[0]["label"]) > 0).sum() == 12 * 12
    test = read_dataset(drishti_root, layout="drishti_gs", section="test")
    assert [Path(i["image"]).stem for i in test] == ["drishtiGS_001", "drishtiGS_003"]


def test_archive_nesting_and_a_test_gt_folder_called_gt(tmp_path: Path):
    base = tmp_path / "Drishti-GS1_files" / "Drishti-GS1_files"  # as the archive unpacks
    _case(base / "Training", "GT", "drishtiGS_002")
    _case(base / "Test", "GT", "drishtiGS_001")
    items = read_dataset(tmp_path)
    assert [(Path(i["image"]).name, i["section"]) for i in items] == [
        ("drishtiGS_002.png", "training"),
        ("drishtiGS_001.png", "test"),
    ]


def test_every_problem_is_reported_with_its_file(drishti_root: Path):
    train = drishti_root / "Training"
    (train / "GT" / "drishtiGS_002" / "SoftMap" / "drishtiGS_002_cupsegSoftmap.png").unlink()
    _case(train, "GT", "drishtiGS_008", disc=DISC[:, :-2])  # soft map of another size than its image
    _case(train, "GT", "drishtiGS_010", disc=np.zeros((H, W), np.uint8))  # nobody marked a disc
    (train / "GT" / "drishtiGS_012" / "SoftMap").mkdir(parents=True)  # ground truth without an image
    (train / "GT" / "drishtiGS_014" / "SoftMap" / "drishtiGS_014_ODsegSoftmap.png").parent.mkdir(parents=True)
    corrupt = train / "GT" / "drishtiGS_004" / "SoftMap" / "drishtiGS_004_ODsegSoftmap.png"
    corrupt.write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    with pytest.raises(DatasetError) as err:
        DrishtiGSReader(section="training").read(drishti_root)
    problems = dict(err.value.problems)
    missing_cup = str(train / "GT" / "drishtiGS_002" / "SoftMap" / "drishtiGS_002_cupsegSoftmap.png")
    assert problems[missing_cup] == "missing cup soft map for image drishtiGS_002.png"
    assert "unreadable or corrupt" in problems[str(corrupt)]
    size = str(train / "GT" / "drishtiGS_008" / "SoftMap" / "drishtiGS_008_ODsegSoftmap.png")
    assert problems[size] == "disc soft map is 34x24, its image drishtiGS_008.png is 36x24 (width x height)"
    empty = str(train / "GT" / "drishtiGS_010" / "SoftMap" / "drishtiGS_010_ODsegSoftmap.png")
    assert problems[empty].startswith("no optic disc")
    assert "ground truth without an image" in problems[str(train / "GT" / "drishtiGS_012")]
    assert "on_missing='skip'" in str(err.value)
    # skipping leaves out what has no ground truth; broken files are still errors
    corrupt.unlink()
    (train / "GT" / "drishtiGS_004" / "SoftMap" / "drishtiGS_004_cupsegSoftmap.png").unlink()
    with pytest.raises(DatasetError) as err:
        DrishtiGSReader(section="training", on_missing="skip").read(drishti_root)
    assert set(dict(err.value.problems)) == {size, empty}


def test_missing_test_ground_truth_names_where_it_belongs(drishti_root: Path):
    import shutil

    shutil.rmtree(drishti_root / "Test" / "Test_GT")  # the original 2014 release had no test ground truth
    with pytest.raises(DatasetError) as err:
        DrishtiGSReader().read(drishti_root)
    expected = drishti_root / "Test" / "Test_GT" / "drishtiGS_001" / "SoftMap" / "drishtiGS_001_ODsegSoftmap.png"
    assert dict(err.value.problems)[str(expected)] == "missing disc soft map for image drishtiGS_001.png"
    assert len(DrishtiGSReader(on_missing="skip").read(drishti_root)) == 3


def test_not_a_drishti_folder(tmp_path: Path):
    (tmp_path / "images").mkdir()
    assert not DrishtiGSReader.detect(tmp_path)
    with pytest.raises(ValueError, match="not a Drishti-GS1 folder"):
        DrishtiGSReader().read(tmp_path)
    with pytest.raises(ValueError, match="section"):
        DrishtiGSReader(section="validation")
    with pytest.raises(ValueError, match="agreement"):
        DrishtiGSReader(agreement=0)


def test_split_is_the_data_sets_own_and_folds_deal_the_training_images(drishti_root: Path, tmp_path: Path):
    datalist_file = tmp_path / "out" / "datalist.json"
    train = prepare_drishti_datalist(drishti_root, datalist_file, embedded=False, num_folds=3)
    val = prepare_drishti_datalist(drishti_root, datalist_file, embedded=False, split="validation", num_folds=3)
    assert sorted(Path(i["image"]).stem for i in train) == ["drishtiGS_002", "drishtiGS_004", "drishtiGS_006"]
    assert [Path(i["image"]).stem for i in val] == ["drishtiGS_001", "drishtiGS_003"]
    written = json.loads(datalist_file.read_text())
    assert sorted(i["fold"] for i in written["training"]) == [0, 1, 2] and len(written["validation"]) == 2
    fold_train = prepare_drishti_datalist(drishti_root, datalist_file, embedded=False, fold=1, num_folds=3)
    fold_val = prepare_drishti_datalist(
        drishti_root, datalist_file, embedded=False, fold=1, num_folds=3, split="validation"
    )
    assert len(fold_train) == 2 and len(fold_val) == 1 and fold_val[0]["image"] not in {i["image"] for i in fold_train}
    # an image that is not RGB is refused before anything trains
    write_image(drishti_root / "Training" / "Images" / "drishtiGS_004.png", np.zeros((H, W), np.uint8))
    with pytest.raises(DatasetError, match="drishtiGS_004"):
        prepare_drishti_datalist(drishti_root, datalist_file, embedded=False, num_folds=3)


def test_embedded_sample_is_the_real_layout_and_deterministic(tmp_path: Path):
    made = make_drishti_sample(tmp_path / "a", num_train=2, num_test=1, width=96, height=64)
    assert made == []  # read it with the reader
    make_drishti_sample(tmp_path / "b", num_train=2, num_test=1, width=96, height=64)
    files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*.png"))
    assert [str(p) for p in files] == [
        "Drishti-GS1_files/Test/Images/drishtiGS_001.png",
        "Drishti-GS1_files/Test/Test_GT/drishtiGS_001/SoftMap/drishtiGS_001_ODsegSoftmap.png",
        "Drishti-GS1_files/Test/Test_GT/drishtiGS_001/SoftMap/drishtiGS_001_cupsegSoftmap.png",
        "Drishti-GS1_files/Training/GT/drishtiGS_002/SoftMap/drishtiGS_002_ODsegSoftmap.png",
        "Drishti-GS1_files/Training/GT/drishtiGS_002/SoftMap/drishtiGS_002_cupsegSoftmap.png",
        "Drishti-GS1_files/Training/GT/drishtiGS_004/SoftMap/drishtiGS_004_ODsegSoftmap.png",
        "Drishti-GS1_files/Training/GT/drishtiGS_004/SoftMap/drishtiGS_004_cupsegSoftmap.png",
        "Drishti-GS1_files/Training/Images/drishtiGS_002.png",
        "Drishti-GS1_files/Training/Images/drishtiGS_004.png",
    ]
    for rel in files:
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes()
    assert "No patient data" in (tmp_path / "a" / "Drishti-GS1_files" / "README.txt").read_text()
    assert verify_sample(tmp_path / "a")
    image = read_pixels(tmp_path / "a" / files[0])
    assert image.shape == (64, 96, 3) and image.dtype == np.uint8
    assert set(np.unique(read_pixels(tmp_path / "a" / files[1]))) <= {0, 64, 128, 191, 255}
    items = prepare_drishti_datalist(tmp_path / "a", tmp_path / "dl.json", embedded=True, num_folds=2, split="all")
    for item in items:  # every generated image has a disc and a cup at the default agreement
        assert set(np.unique(read_pixels(item["label"]))) == {0, 1, 2}


def test_images_to_segment(drishti_root: Path, tmp_path: Path):
    test = drishti_inference_items(drishti_root.parent, embedded=False)
    assert [Path(i["image"]).name for i in test] == ["drishtiGS_001.png", "drishtiGS_003.png"]
    one = drishti_root / "Training" / "Images" / "drishtiGS_002.png"
    assert drishti_inference_items(one, embedded=False) == [{"image": str(one)}]
    assert len(drishti_inference_items(drishti_root / "Training" / "Images", embedded=False)) == 3
    sample = drishti_inference_items(tmp_path / "s", embedded=True, num_train=1, num_test=2, width=64, height=64)
    assert [Path(i["image"]).name for i in sample] == ["drishtiGS_001.png", "drishtiGS_003.png"]
    with pytest.raises(FileNotFoundError):
        drishti_inference_items(tmp_path / "nothing", embedded=False)
