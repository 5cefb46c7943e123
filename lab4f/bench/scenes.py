"""A segmentation checkpoint as the bench sees it (:class:`SegBenchConfig`) and the scenes it runs: the generated
scenes it was trained on (kind, canvas, data seed read from its training source), or the same split of the folder
data set it was trained on (``lab4f segment train --dataset carvana|voc2012``; if that folder is gone, the one in
``$LAB4F_DATA``). Knows nothing of the bench's setup or runs (:mod:`lab4f.bench.segrun` runs them)."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from lab4f.data import ENV_VAR
from lab4f.errors import ConfigError, DataError, MismatchError
from lab4f.segmentation.data import (
    FOLDER_DATASETS,
    SCENE_KINDS,
    SegmentationSet,
    find_folder_dataset,
    folder_split,
    generated_splits,
    parse_folder_source,
)
from lab4f.segmentation.models import SegConfig
from lab4f.segmentation.reproduce import SegReproduceConfig
from lab4f.segmentation.train import load_seg_checkpoint

# the scene counts `lab4f segment` trains with by default: regenerating a split with them gives the very scenes
# (noise included) the checkpoint was tested on
SPLIT_SIZES = {
    "train": SegReproduceConfig.n_train,
    "val": SegReproduceConfig.n_val,
    "test": SegReproduceConfig.n_test,
}
_SOURCE = re.compile(r"generated (\w+) scenes, (\d+)x(\d+), seed (\d+)")


@dataclass(frozen=True)
class SegBenchConfig:
    """A segmentation checkpoint as the bench sees it: its SegConfig, the input size and scenes it was trained on."""

    seg: SegConfig
    image_size: int
    scenes: str | None = None  # "shapes" / "digits" for generated scenes, else None
    data_seed: int | None = (
        None  # seed of the generated scenes, or the split seed of a folder data set
    )
    dataset: str | None = (
        None  # "carvana" / "voc2012" for a folder data set, else None (generated scenes)
    )
    data_root: str | None = None  # the folder the folder data set was read from

    @property
    def kind(self) -> str:
        return self.seg.kind

    @property
    def num_classes(self) -> int:
        return self.seg.num_classes


def scene_spec(meta: dict[str, Any]) -> tuple[str, int, int] | None:
    """(scene kind, canvas size, data seed) of a checkpoint trained on generated scenes, else None.

    ``generated_splits`` seeds the train split with 3·data_seed, which the training set's source string records.
    """
    m = _SOURCE.fullmatch(str(meta.get("dataset", {}).get("source", "")))
    if m is None or m.group(2) != m.group(3):
        return None
    return m.group(1), int(m.group(2)), int(m.group(4)) // 3


def folder_spec(meta: dict[str, Any]) -> tuple[str, str, int, int] | None:
    """(data set, folder, image size, split seed) of a checkpoint trained on a folder data set, else None."""
    parsed = parse_folder_source(str(meta.get("dataset", {}).get("source", "")))
    return None if parsed is None else parsed[:4]


def load_seg_for_bench(
    path: str | os.PathLike[str],
) -> tuple[torch.nn.Module, SegBenchConfig, dict[str, Any]]:
    """Load a segmentation checkpoint with what the bench needs: (SegSCLC, SegBenchConfig, metadata)."""
    model, cfg, meta = load_seg_checkpoint(path)
    spec = scene_spec(meta)
    if spec is not None:
        return model, SegBenchConfig(cfg, spec[1], spec[0], spec[2]), meta
    folder = folder_spec(meta)
    if folder is not None:
        dataset, root, size, seed = folder
        return model, SegBenchConfig(cfg, size, None, seed, dataset, root), meta
    raise ConfigError(
        f"{path} was trained on {meta.get('dataset', {}).get('source')!r}; the bench runs "
        "segmentation students trained on generated scenes or on a folder data set "
        "(lab4f segment train [--dataset carvana|voc2012])"
    )


def _folder_root(cfg: SegBenchConfig, data_dir: str | os.PathLike[str] | None) -> Path:
    """Where to read a folder checkpoint's data: ``data_dir`` if given, else the recorded folder, else $LAB4F_DATA."""
    dataset = cfg.dataset or ""
    if data_dir is not None:
        return find_folder_dataset(dataset, data_dir)
    recorded = Path(cfg.data_root or "")
    try:
        return find_folder_dataset(dataset, recorded)
    except DataError:
        if not os.environ.get(ENV_VAR):
            raise DataError(
                f"the checkpoint was trained on {dataset} from {recorded}, which holds no "
                f"{dataset} data set now: restore it there, or set ${ENV_VAR} to the folder "
                "holding the same data set"
            ) from None
        return find_folder_dataset(dataset, None)


def _folder_scenes(
    cfg: SegBenchConfig,
    split: str,
    scenes: str | None,
    data_seed: int | None,
    limit: int | None,
    data_dir: str | os.PathLike[str] | None,
) -> SegmentationSet:
    """The checkpoint's split of its folder data set (prefix of the seeded split, as at training time)."""
    what = f"{cfg.dataset} (folder {cfg.data_root}, split seed {cfg.data_seed})"
    if scenes is not None:
        raise ConfigError(
            f"--scenes {scenes} selects generated scenes, but this checkpoint was trained on {what}; "
            "drop --scenes: the bench runs that data set's split"
        )
    if data_seed is not None and data_seed != cfg.data_seed:
        raise ConfigError(
            f"this checkpoint was trained on {what}; another --data-seed would draw a different split "
            f"whose test images it may have trained on: drop --data-seed (or pass {cfg.data_seed})"
        )
    if split not in SPLIT_SIZES:
        raise ConfigError(f"split {split!r} is unknown; choose one of {', '.join(SPLIT_SIZES)}")
    root = _folder_root(cfg, data_dir)
    # a cap is a prefix of the seeded split: only the images used are read
    data = folder_split(
        cfg.dataset or "",
        root,
        cfg.image_size,
        cfg.data_seed or 0,
        split,
        limit or SPLIT_SIZES[split],
    )
    if data.num_classes != cfg.num_classes:
        raise MismatchError(
            f"{cfg.dataset} has {data.num_classes} classes but the checkpoint predicts "
            f"{cfg.num_classes}"
        )
    return data


def bench_scenes(
    cfg: SegBenchConfig,
    split: str = "test",
    scenes: str | None = None,
    data_seed: int | None = None,
    limit: int | None = None,
    data_dir: str | os.PathLike[str] | None = None,
) -> SegmentationSet:
    """Scenes for a run: the checkpoint's generated kind, canvas and data seed unless overridden — or, for a
    checkpoint trained on a folder data set, the same split of that folder (``data_dir`` overrides the folder
    recorded in the checkpoint; ``scenes`` and another ``data_seed`` are refused)."""
    if cfg.dataset in FOLDER_DATASETS:
        return _folder_scenes(cfg, split, scenes, data_seed, limit, data_dir)
    kind = scenes or cfg.scenes
    if kind not in SCENE_KINDS:
        raise ConfigError(f"scene kind {kind!r} is unknown; choose one of {', '.join(SCENE_KINDS)}")
    if split not in SPLIT_SIZES:
        raise ConfigError(f"split {split!r} is unknown; choose one of {', '.join(SPLIT_SIZES)}")
    seed = cfg.data_seed if data_seed is None else data_seed
    sizes = {k: 1 for k in SPLIT_SIZES} | {split: max(SPLIT_SIZES[split], limit or 0)}
    data = getattr(
        generated_splits(
            kind, sizes["train"], sizes["val"], sizes["test"], cfg.image_size, seed or 0
        ),
        split,
    )
    if data.num_classes != cfg.num_classes:
        raise MismatchError(
            f"{kind} scenes have {data.num_classes} classes but the checkpoint predicts "
            f"{cfg.num_classes}; pick the scenes it was trained on (--scenes {cfg.scenes})"
        )
    return data.subset(slice(0, limit)) if limit else data
