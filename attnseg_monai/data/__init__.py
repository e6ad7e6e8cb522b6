"""Data layer of attnseg_monai: data set readers -> MONAI datalists, splits, validation, embedded sample data.

Typical use in a bundle (2D data)::

    from attnseg_monai.data import make_datalist, read_dataset, validate_pairs, write_datalist

    items = read_dataset("/data/MoNuSeg 2018 Training Data")      # layout detected: monuseg
    validate_pairs(items, expected_channels=3)                     # raises one DatasetError listing all problems
    datalist = make_datalist(items, val_fraction=0.2, num_folds=5, seed=0)
    write_datalist(datalist, "datalist.json")

and without a data set, the embedded defaults::

    from attnseg_monai.data import make_nuclei_sample
    items = make_nuclei_sample("bundles/hannet/data/generated/nuclei")
"""

from __future__ import annotations

from .base import DatasetReader, get_reader_class, list_readers, register_reader
from .chest_xray import MontgomeryReader, ShenzhenReader, merge_lung_masks
from .datalist import load_datalist, make_datalist, select_fold, write_datalist
from .discovery import find_reader, read_dataset
from .errors import DatasetError
from .fileio import atomic_write_bytes, atomic_write_json, read_header
from .folders import ImageMaskFolderReader, MitosisReader
from .monuseg import MoNuSegReader, parse_aperio_xml, rasterize_polygons
from .pairing import pair_by_stem
from .samples import (
    MANIFEST_NAME,
    load_nuclei_asset,
    make_chest_xray_sample,
    make_mitosis_sample,
    make_nuclei_sample,
    verify_sample,
)
from .validation import PairInfo, validate_pairs

__all__ = [
    "MANIFEST_NAME",
    "DatasetError",
    "DatasetReader",
    "ImageMaskFolderReader",
    "MitosisReader",
    "MoNuSegReader",
    "MontgomeryReader",
    "PairInfo",
    "ShenzhenReader",
    "atomic_write_bytes",
    "atomic_write_json",
    "find_reader",
    "get_reader_class",
    "list_readers",
    "load_datalist",
    "load_nuclei_asset",
    "make_chest_xray_sample",
    "make_datalist",
    "make_mitosis_sample",
    "make_nuclei_sample",
    "merge_lung_masks",
    "pair_by_stem",
    "parse_aperio_xml",
    "rasterize_polygons",
    "read_dataset",
    "read_header",
    "register_reader",
    "select_fold",
    "validate_pairs",
    "verify_sample",
    "write_datalist",
]
