"""Semantic segmentation with an SCLC student: generated scenes and real-set loaders, models, pixel-wise KD."""

from lab4f.segmentation.data import (
    FOLDER_DATASETS,
    IGNORE_INDEX,
    FolderSplits,
    SegmentationSet,
    folder_splits,
    generate_scenes,
    generated_splits,
    load_carvana,
    load_voc2012,
)
from lab4f.segmentation.models import SegConfig, SegSCLC, SegTeacher, build_seg_model
from lab4f.segmentation.reproduce import SegReproduceConfig, reproduce
from lab4f.segmentation.train import (
    SegTrainConfig,
    evaluate_segmentation,
    load_seg_checkpoint,
    pixel_kd_loss,
    train_segmentation,
)

__all__ = [
    "FOLDER_DATASETS",
    "FolderSplits",
    "IGNORE_INDEX",
    "SegConfig",
    "SegReproduceConfig",
    "SegSCLC",
    "SegTeacher",
    "SegTrainConfig",
    "SegmentationSet",
    "build_seg_model",
    "evaluate_segmentation",
    "folder_splits",
    "generate_scenes",
    "generated_splits",
    "load_carvana",
    "load_seg_checkpoint",
    "load_voc2012",
    "pixel_kd_loss",
    "reproduce",
    "train_segmentation",
]
