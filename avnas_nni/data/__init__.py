"""Feature data: the paper's HDF5 layout (reader and validator), the embedded synthetic set, triplets.

* :mod:`avnas_nni.data.layout` — ``load_dataset(config)``, ``check_dataset(config)``: a JSON config naming
  two HDF5 files (one group per video holding float ``vectors`` (m, d)) and four split lists.
* :mod:`avnas_nni.data.synth` — ``write_synthetic(out_dir)``, ``make_synthetic()``: the default dataset.
* :mod:`avnas_nni.data.triplets` — ``TripletSampler``, ``TripletDataset``, ``FeatureSet``.
"""

from avnas_nni.data.layout import (
    EMBEDDED,
    EMBEDDED_SETS,
    LIST_FORMATS,
    SPLITS,
    DatasetConfig,
    FeatureDataset,
    SplitList,
    cache_root,
    check_dataset,
    embedded_config,
    load_dataset,
    read_config,
    read_split_list,
)
from avnas_nni.data.synth import (
    SYNTH_VERSION,
    ClassStructure,
    SyntheticData,
    SyntheticSplit,
    make_synthetic,
    write_synthetic,
)
from avnas_nni.data.triplets import FeatureSet, TripletDataset, TripletSampler
from avnas_nni.errors import DataError

__all__ = [
    "EMBEDDED",
    "EMBEDDED_SETS",
    "LIST_FORMATS",
    "SPLITS",
    "SYNTH_VERSION",
    "ClassStructure",
    "DataError",
    "DatasetConfig",
    "FeatureDataset",
    "FeatureSet",
    "SplitList",
    "SyntheticData",
    "SyntheticSplit",
    "TripletDataset",
    "TripletSampler",
    "cache_root",
    "check_dataset",
    "embedded_config",
    "load_dataset",
    "make_synthetic",
    "read_config",
    "read_split_list",
    "write_synthetic",
]
