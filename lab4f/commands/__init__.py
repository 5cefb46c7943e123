"""CLI subcommands: one module each, discovered by :mod:`lab4f.cli`.

A module defines ``register(subparsers, common)`` which adds its parser with
``parents=[common]`` (gives ``--json``) and ``set_defaults(func=...)``; ``func(args)`` returns
the dict printed by ``--json``.

Building the parser must stay light (``lab4f --help`` and usage errors import neither torch nor the bench):
a command module imports its implementation inside its handlers, and the choices and defaults its parser
shows are spelled out here rather than imported from the torch-importing modules that own them
(tests/test_cli_imports.py checks that they agree).
"""

from types import SimpleNamespace

DETECTION_MODELS = ("ideal", "incoherent", "coherent")  # lab4f.detection.DETECTION_MODELS
KINDS = ("teacher", "linear", "student")  # lab4f.models.KINDS
SCENE_KINDS = ("shapes", "digits")  # lab4f.segmentation.data.SCENE_KINDS
SEG_DATASETS = ("generated", "carvana", "voc2012")  # lab4f.segmentation.data.SEG_DATASETS
REPRODUCE_EPOCHS = 10  # lab4f.reproduce.DEFAULT_EPOCHS
# the fields of these configs that the parsers use as defaults
TRAIN_DEFAULTS = SimpleNamespace(
    epochs=10, batch_size=64, lr=0.02, T=10.0, alpha=0.5
)  # lab4f.training.TrainConfig
SEG_DATA_DEFAULTS = SimpleNamespace(  # lab4f.segmentation.reproduce.SegReproduceConfig
    dataset="generated",
    canvas_size=48,
    n_train=1000,
    n_val=200,
    n_test=400,
    data_seed=0,
    widths=(8, 8),
    decoder_width=12,
    detection="ideal",
)
SEG_TRAIN_DEFAULTS = SimpleNamespace(
    epochs=6, batch_size=32, lr=3e-3, T=10.0, alpha=0.5
)  # ...segmentation.train

#: lab4f.bench.sync's policies offered on the command line (spelled out: building the parser imports no bench)
SYNC_CHOICES = ("settle", "trigger", "marker", "none")
