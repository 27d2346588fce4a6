"""Settings of the pipelines, one dataclass per command.

Every field is both a ``--flag`` and a key of a YAML ``--config`` file; its help text
is in the field's metadata. A method's own settings are nested as one group (``cbs``,
``update``, ``fisher``) whose defaults are written once, in the method's file.
Sparsity is always the fraction of prunable weights removed.
"""

from __future__ import annotations

from dataclasses import dataclass

from prunekit.methods.oneshot import (
    CBSSettings,
    FisherSettings,
    L0Settings,
    LayerwiseSettings,
    UpdateSettings,
)
from prunekit.methods.oneshot.multistage import StageSettings
from prunekit.utils.settings import setting as opt

# The sparsities a command runs when none are given (and no N:M pattern).
INIT_SPARSITIES = [0.9]
ONESHOT_SPARSITIES = [0.5, 0.7, 0.8, 0.9, 0.95, 0.98]


@dataclass
class CommonConfig:
    model: str = opt("lenet_300_100", "model name (see `prunekit models`)")
    model_kwargs: dict = opt({}, "extra model options as YAML, e.g. '{width: 2}'")
    dataset: str = opt("mnist", "dataset name (mnist, cifar10, cifar100, digits, ...)")
    dataset_kwargs: dict = opt({}, "extra dataset options as YAML, e.g. '{num_samples: 256}'")
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
    step_size: int | None = opt(None, "step: epochs between two lr decays")
    gamma: float = opt(0.1, "step and multistep: factor of each lr decay")
    augment: bool | None = opt(None, "data augmentation (default: on for CIFAR training)")
    validation_size: int = opt(
        0,
        "hold out this many training samples (seeded) as a validation set and report "
        "val_top1, to choose settings without the test set (0: none)",
    )
    tensorboard: bool = opt(
        False,
        "also write TensorBoard events (each epoch's loss and accuracy, each stage of "
        "multi-stage pruning, the result tables) in tensorboard/ folders of the run "
        "folder and its cells; needs pip install 'prunekit[tensorboard]'",
    )


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
    sparse: bool = opt(
        False,
        "CPU only: compute sparse enough Linear/Conv2d layers with sparse kernels "
        "(prunekit.deploy.sparsify_for_inference)",
    )


@dataclass
class PruneInitConfig(TrainingFields, CommonConfig):
    methods: list[str] = opt(
        ["snip", "grasp", "random"], "scoring methods: random, magnitude, snip, grasp, synflow"
    )
    sparsities: list[float] | None = opt(
        None,
        "target sparsities (fractions of prunable weights removed); none given: "
        f"{' '.join(map(str, INIT_SPARSITIES))}, or the pattern's with --pattern",
    )
    seeds: list[int] = opt([0], "seeds (each: initialisation, scoring sample, data order)")
    scope: str = opt("global", "ranking scope", choices=["global", "layerwise"])
    rounds: int | None = opt(
        None, "pruning rounds, exponential schedule (default: 100 for synflow, else 1)"
    )
    pattern: str | None = opt(
        None,
        "N:M semi-structured mask, e.g. 2:4 (keep N of every M weights along each row's "
        "inputs; one round of scoring); replaces --sparsities by 1-N/M",
    )
    samples_per_class: int = opt(10, "class-balanced scoring sample: images per class")
    num_iters: int = opt(1, "number of class-balanced chunks scored (GraSP num_iters)")
    grasp_temperature: float = opt(200.0, "GraSP: logits divided by this temperature")
    grasp_reinit_xavier: bool = opt(
        False, "GraSP: re-initialise Linear weights with Xavier in the scoring copy only"
    )
    keep_classifier_dense: bool = opt(False, "never prune the final classifier")
    reference: dict = opt(
        {}, "published figures shown beside the results: label → {sparsity: value}"
    )
    on_collapse: str = opt(
        "warn", "what to do when a layer keeps no weight", choices=["warn", "fail"]
    )


@dataclass
class OneShotConfig(TrainingFields, CommonConfig):
    model: str = opt("mlpnet", "model name (see `prunekit models`)")
    checkpoint: str | None = opt(None, "trained weights to prune (prunekit, plain or WoodFisher)")
    methods: list[str] = opt(
        ["magnitude", "woodfisher", "cbs"],
        "presets magnitude, layerwise_magnitude, woodfisher, cbs, l0, or selection+update "
        "pairs (selections: magnitude, layerwise_magnitude, obs, cbs_s, l0, random, snip, "
        "grasp, synflow; updates: none, woodfisher, cbs_u), or the layer-wise methods "
        "sparsegpt, obc, lw_l0, lw_magnitude (no Fisher: calibration inputs, layer by layer)",
    )
    sparsities: list[float] | None = opt(
        None,
        "target sparsities (fractions of prunable weights removed); none given: "
        f"{' '.join(map(str, ONESHOT_SPARSITIES))}, or the pattern's with --pattern",
    )
    seeds: list[int] = opt([0], "seeds (each: gradient sample, RMP trials)")
    fisher: FisherSettings = opt(FisherSettings(), "the empirical Fisher")
    loss_samples: int | None = opt(
        None,
        "training samples for the real loss (CBS outer loop, RMP, scale choice); default: "
        "all of them up to 10,000; more than there are is an error",
    )
    cbs: CBSSettings = opt(CBSSettings(), "CBS-S search")
    update: UpdateSettings = opt(UpdateSettings(), "how the update is applied")
    l0: L0Settings = opt(L0Settings(), "the joint L0 solver")
    layerwise: LayerwiseSettings = opt(
        LayerwiseSettings(), "layer-wise methods (sparsegpt, obc, lw_l0, lw_magnitude)"
    )
    pattern: str | None = opt(
        None,
        "N:M semi-structured pattern (e.g. 2:4) instead of --sparsities: N kept in every M "
        "consecutive inputs of each row; layers it does not fit stay dense",
    )
    stages: StageSettings = opt(StageSettings(), "multi-stage pruning")
    reference: dict = opt(
        {}, "published figures shown beside the results: label → {sparsity: value}"
    )
    on_collapse: str = opt(
        "warn", "what to do when a layer keeps no weight", choices=["warn", "fail"]
    )
    keep_first_layer_dense: bool = opt(False, "never prune the first prunable layer")
    keep_classifier_dense: bool = opt(False, "never prune the final classifier")
    reclaim_dead_weights: bool = opt(
        True,
        "exchange kept weights on no input-to-output path for removed ones on a path "
        "(same count; result.json reports dead_weights_selected / dead_weights_kept)",
    )
    samples_per_class: int = opt(10, "class-balanced sample for snip/grasp selections")
    epochs: int = opt(0, "fine-tuning epochs with the mask held (0: none)")
    lr: float = opt(0.01, "fine-tuning learning rate")
    scheduler: str = opt(
        "cosine", "fine-tuning schedule", choices=["constant", "step", "multistep", "cosine"]
    )


@dataclass
class ExportConfig:
    source: str | None = opt(
        None,
        "a run cell folder (mask.pt + checkpoint.pt, finetune/checkpoint.pt or "
        "pruned_model.pt) or a checkpoint file",
        positional=True,
    )
    out: str | None = opt(None, "the .safetensors file to write", positional=True)
    model: str | None = opt(
        None, "model name (default: from the nearest config.json at or above the source)"
    )
    model_kwargs: dict = opt({}, "model options as YAML (default: from that config.json)")
    mask: str | None = opt(
        None,
        "mask file (default: the cell's mask.pt, else the checkpoint's own mask, else the "
        "exact zeros of the prunable weights)",
    )
    overwrite: bool = opt(
        False, "replace OUT when it exists (never the source, the mask or a run cell's file)"
    )


@dataclass
class BenchConfig:
    models: list[str] = opt(
        ["mlpnet", "lenet_300_100", "lenet5_caffe", "vgg19", "resnet20"], "models to time"
    )
    sparsities: list[float] = opt([0.5, 0.7, 0.9, 0.95, 0.98, 0.99], "sparsities to time")
    batch_sizes: list[int] = opt([1, 256], "batch sizes: latency at 1, throughput at 256")
    repeats: int = opt(5, "timed repeats per measurement (the median is reported)")
    warmup: int = opt(2, "untimed calls before each measurement")
    threads: list[int] = opt(
        [], "torch CPU thread counts, each measured in turn (default: torch's choice)"
    )
    out_dir: str = opt("benchmarks/results", "where deploy_cpu.{md,json,png} are written")
    seed: int = opt(0, "seed of the random initialisations")
