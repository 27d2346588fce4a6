"""The models the deploy tests cover, with a small input shape each."""

# (model, small input shape): VGG-19 on 16x16 images keeps the tests fast.
MODEL_INPUTS = {
    "mlpnet": (1, 28, 28),
    "lenet_300_100": (1, 28, 28),
    "lenet5_caffe": (1, 28, 28),
    "vgg19": (3, 16, 16),
    "resnet20": (3, 32, 32),
}
