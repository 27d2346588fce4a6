"""Settings of the pipelines, one flat dataclass per command.

Every field is both a ``--flag`` and a key of a YAML ``--config`` file; its help text
is in the field's metadata. Sparsity is always the fraction of prunable weights removed.
"""

from __future__ import annotations

from dataclasses import dataclass, field


def opt(default, help: str, **extra):  # noqa: A002 - "help" reads best here
    if isinstance(default, list | dict):
        return field(
            default_factory=lambda: type(default)(default), metadata={"help": help, **extra}
        )
    return field(default=default, metadata={"help": help, **extra})


@dataclass
class CommonConfig:
    model: str = opt("lenet_300_100", "model name (see `prunekit models`)")
    model_kwargs: dict = opt({}, "extra model options as YAML, e.g. '{width: 2}'")
    dataset: str = opt("mnist", "dataset name (mnist, cifar10, cifar100, digits, ...)")
    data_dir: str | None = opt(None, "data folder (default: $PRUNEKIT_DATA, else ./data)")
    download: bool = opt(False, "download missing data files (needs internet)")
    batch_size: int = opt(128, "training batch size")
    test_batch_size: int = opt(1000, "evaluation batch size")
    train_subset: int | None = opt(None, "use only this many training samples (quick runs)")
    device: str = opt("auto", "cpu, cuda, cuda:N or auto")
    run_dir: str | None = opt(None, "output folder (default: runs/<command>/<model>-<dataset>)")
    progress: bool = opt(True, "show progress bars")
    threads: int | None = opt(None, "torch CPU threads (default: torch's choice)")


@dataclass
class TrainingFields:
    epochs: int = opt(10, "training epochs")
    optimizer: str = opt("sgd", "sgd or adam", choices=["sgd", "adam", "adamw"])
    lr: float = opt(0.1, "learning rate")
    momentum: float = opt(0.9, "SGD momentum")
    nesterov: bool = opt(False, "Nesterov momentum")
    weight_decay: float = opt(0.0, "weight decay (L2)")
    scheduler: str = opt(
        "multistep", "learning-rate schedule", choices=["constant", "step", "multistep", "cosine"]
    )
    milestones: list[float] = opt([0.5, 0.75], "multistep: fractions of training where lr /= 10")
    augment: bool | None = opt(None, "data augmentation (default: on for CIFAR training)")


@dataclass
class TrainCommandConfig(TrainingFields, CommonConfig):
    seed: int = opt(0, "seed for initialisation, data order and sampling")
    mask: str | None = opt(None, "a saved mask (.pt) to hold during training")
    init_checkpoint: str | None = opt(None, "start from these weights instead of a fresh init")
    resume: bool = opt(False, "continue the run in run_dir from its last checkpoint")


@dataclass
class EvalCommandConfig(CommonConfig):
    checkpoint: str | None = opt(None, "weights to evaluate (prunekit, plain or WoodFisher format)")
    mask: str | None = opt(None, "apply this mask before evaluating")
    seed: int = opt(0, "seed")


@dataclass
class PruneInitConfig(TrainingFields, CommonConfig):
    methods: list[str] = opt(
        ["snip", "grasp", "random"], "scoring methods: random, magnitude, snip, grasp, synflow"
    )
    sparsities: list[float] = opt(
        [0.9], "target sparsities (fractions of prunable weights removed)"
    )
    seeds: list[int] = opt([0], "seeds (each: initialisation, scoring sample, data order)")
    scope: str = opt("global", "ranking scope", choices=["global", "layerwise"])
    rounds: int | None = opt(
        None, "pruning rounds, exponential schedule (default: 100 for synflow, else 1)"
    )
    samples_per_class: int = opt(10, "class-balanced scoring sample: images per class")
    num_iters: int = opt(1, "number of class-balanced chunks scored (GraSP num_iters)")
    grasp_temperature: float = opt(200.0, "GraSP: logits divided by this temperature")
    grasp_reinit_xavier: bool = opt(
        False, "GraSP: re-initialise Linear weights with Xavier in the scoring copy only"
    )
    keep_classifier_dense: bool = opt(False, "never prune the final classifier")
    on_collapse: str = opt(
        "warn", "what to do when a layer keeps no weight", choices=["warn", "fail"]
    )
