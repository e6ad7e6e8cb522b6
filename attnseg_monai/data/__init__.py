"""Data sets: data-set layouts read into MONAI datalists, splits, pair validation, label maps, embedded samples.

"Reader" here means a data-set layout reader (:class:`DatasetReader`: a folder layout -> datalist items); file
formats are read by MONAI's image readers (and :mod:`attnseg_monai.io.transunet` for TransUNet's files), and the
batch app's checked file readers are :class:`attnseg_monai.inference.readers.CaseReader`. 2D layouts:
``folders.py``, ``monuseg.py``, ``chest_xray.py``, ``drishti.py`` (fundus photographs, optic disc and cup); CT
layouts: ``ct_layouts.py``; pair checks: ``validation.py`` (2D images) and ``volumes.py`` (volume headers).

Typical use in a bundle (2D data)::

    from attnseg_monai.data import make_datalist, read_dataset, validate_pairs, write_datalist

    items = read_dataset("/data/MoNuSeg 2018 Training Data")      # layout detected: monuseg
    validate_pairs(items, expected_channels=3)                     # raises one DatasetError listing all problems
    datalist = make_datalist(items, val_fraction=0.2, num_folds=5, seed=0)
    write_datalist(datalist, "datalist.json")

and without a data set, the embedded defaults::

    from attnseg_monai.data import make_nuclei_sample
    items = make_nuclei_sample("bundles/hannet/data/generated/nuclei")

3D CT (layouts ``msd``, ``btcv``, ``transunet``; generated phantoms as embedded defaults)::

    from attnseg_monai.data import make_pancreas_sample, read_dataset, validate_volume_pairs

    items = read_dataset("/data/Task07_Pancreas")                  # layout detected: msd
    validate_volume_pairs(items, label_values={0, 1, 2})           # shapes, geometry, label values
    items = make_pancreas_sample("bundles/attention_unet/data/generated/pancreas")
"""

from __future__ import annotations

from ..io.atomic import atomic_write_bytes, atomic_write_json
from ..io.images import read_header
from .base import DatasetReader, get_reader_class, list_readers, register_reader
from .chest_xray import MontgomeryReader, ShenzhenReader, merge_lung_masks
from .ct_inputs import volume_inputs
from .ct_labels import (
    BTCV_LABELS,
    BTCV_TO_SYNAPSE8,
    MSD_PANCREAS_LABELS,
    SYNAPSE_CLASSES,
    BTCVToSynapse8d,
    btcv_to_synapse8,
)
from .ct_layouts import (
    BTCVReader,
    MSDReader,
    TransUNetSynapseReader,
    pair_volumes,
    volume_case_key,
)
from .ct_phantom import STRUCTURE_HU, CTPhantom, encode_nifti, phantom_affine, render_ct_phantom
from .ct_samples import (
    TRANSUNET_TEST_CASES,
    TRANSUNET_TRAIN_CASES,
    make_pancreas_sample,
    make_synapse_sample,
    make_synapse_transunet_sample,
    transunet_preprocess,
)
from .datalist import load_datalist, make_datalist, select_fold, write_datalist
from .discovery import find_reader, read_dataset
from .drishti import (
    DRISHTI_CLASSES,
    DRISHTI_REGIONS,
    DrishtiGSReader,
    drishti_inference_items,
    make_drishti_sample,
    prepare_drishti_datalist,
    softmaps_to_label,
)
from .errors import DatasetError
from .folders import ImageMaskFolderReader, MitosisReader
from .monuseg import MoNuSegReader, parse_aperio_xml, rasterize_polygons
from .pairing import pair_by_stem
from .pancreas import pancreas_inference_items, prepare_pancreas_datalist
from .samples import (
    MANIFEST_NAME,
    load_nuclei_asset,
    make_chest_xray_sample,
    make_mitosis_sample,
    make_nuclei_sample,
    verify_sample,
)
from .synapse import (
    SYNAPSE_ORGANS,
    is_transunet_file,
    prepare_synapse_datalist,
    require_volumes,
    synapse_inference_items,
    synapse_output_name,
)
from .validation import PairInfo, validate_pairs
from .volumes import VolumeHeader, VolumeInfo, read_volume, read_volume_header, validate_volume_pairs

__all__ = [
    "MANIFEST_NAME",
    "DRISHTI_CLASSES",
    "DRISHTI_REGIONS",
    "DatasetError",
    "DatasetReader",
    "DrishtiGSReader",
    "ImageMaskFolderReader",
    "MitosisReader",
    "MoNuSegReader",
    "MontgomeryReader",
    "PairInfo",
    "ShenzhenReader",
    "atomic_write_bytes",
    "atomic_write_json",
    "drishti_inference_items",
    "find_reader",
    "get_reader_class",
    "list_readers",
    "load_datalist",
    "load_nuclei_asset",
    "make_chest_xray_sample",
    "make_datalist",
    "make_drishti_sample",
    "make_mitosis_sample",
    "make_nuclei_sample",
    "merge_lung_masks",
    "pair_by_stem",
    "pancreas_inference_items",
    "prepare_drishti_datalist",
    "prepare_pancreas_datalist",
    "parse_aperio_xml",
    "rasterize_polygons",
    "read_dataset",
    "read_header",
    "register_reader",
    "select_fold",
    "softmaps_to_label",
    "validate_pairs",
    "verify_sample",
    "write_datalist",
    "BTCV_LABELS",
    "BTCV_TO_SYNAPSE8",
    "MSD_PANCREAS_LABELS",
    "SYNAPSE_CLASSES",
    "STRUCTURE_HU",
    "TRANSUNET_TEST_CASES",
    "TRANSUNET_TRAIN_CASES",
    "BTCVReader",
    "BTCVToSynapse8d",
    "CTPhantom",
    "MSDReader",
    "TransUNetSynapseReader",
    "VolumeHeader",
    "VolumeInfo",
    "btcv_to_synapse8",
    "encode_nifti",
    "make_pancreas_sample",
    "make_synapse_sample",
    "make_synapse_transunet_sample",
    "SYNAPSE_ORGANS",
    "is_transunet_file",
    "prepare_synapse_datalist",
    "require_volumes",
    "synapse_inference_items",
    "synapse_output_name",
    "pair_volumes",
    "phantom_affine",
    "read_volume",
    "read_volume_header",
    "render_ct_phantom",
    "transunet_preprocess",
    "validate_volume_pairs",
    "volume_inputs",
    "volume_case_key",
]
