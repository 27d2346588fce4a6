"""The L0 solver in stages on a small data set: a regression test for a hang (IHT's step
search doubled its constant forever when the extrapolated point was already feasible and
the step was exactly zero). Real MNIST and MLPNet when present, as the user had them."""

from pathlib import Path

import pytest

from prunekit.masks import prunable_parameters
from prunekit.methods.oneshot import FisherSettings
from prunekit.methods.oneshot.multistage import StageSettings, prune_in_stages
from prunekit.models import create_model
from prunekit.pipelines.setup import build_data, load_weights

SHARED = Path(__file__).resolve().parents[2].parent / "shared"
MNIST = SHARED / "data" / "mnist"
MLPNET = SHARED / "checkpoints" / "mnist_25_epoch_93.97.ckpt"


@pytest.mark.skipif(not (MNIST.exists() and MLPNET.exists()), reason="needs ../shared")
def test_l0_in_stages_on_1000_images_finishes():
    data = build_data("mnist", str(MNIST), 128, 1000, 0, train_subset=1000)
    net = create_model("mlpnet", num_classes=10)
    load_weights(net, str(MLPNET))
    net.eval()
    names = list(prunable_parameters(net))
    d = sum(net.get_parameter(n).numel() for n in names)
    out = prune_in_stages(
        net,
        names,
        "l0",
        0.5,
        data.plain_train,
        stages=StageSettings(count=2),
        fisher=FisherSettings(samples=50, damp=1e-3, first_order=False),
        loss_samples=None,
    )
    assert out.result.record.removed == round(0.5 * d)
