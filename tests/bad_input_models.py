"""Model factories that the bad-input cases name as "tests.bad_input_models:NAME" in their configs:
each is wrong in one way a user's own model could be."""

from __future__ import annotations


def factory_that_raises(in_channels: int = 1, num_classes: int = 10):  # noqa: ANN201
    raise RuntimeError("this architecture needs 3 input channels")


def model_for_other_images(in_channels: int = 1, num_classes: int = 10):  # noqa: ANN201
    from torch import nn

    return nn.Sequential(nn.Flatten(), nn.Linear(32 * 32 * 3, num_classes))  # CIFAR-sized input


NOT_A_FACTORY = 3


def factory_that_exits(in_channels: int = 1, num_classes: int = 10):  # noqa: ANN201
    raise SystemExit(0)  # would end the run with exit 0 and no message if not caught


def factory_returning_a_dict(in_channels: int = 1, num_classes: int = 10):  # noqa: ANN201
    return {"conv": "weights"}


def model_with_seven_outputs(in_channels: int = 1, num_classes: int = 10):  # noqa: ANN201
    from torch import nn

    return nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(in_channels, 7))


def model_with_integer_logits(in_channels: int = 1, num_classes: int = 10):  # noqa: ANN201
    """Class scores rounded to integers: nothing to train on (no gradient) or to calibrate."""
    from torch import nn

    class Rounded(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(in_channels * 28 * 28, num_classes)

        def forward(self, x):  # noqa: ANN001, ANN202
            return (self.fc(x.flatten(1)) * 100).long()

    return Rounded()


def model_that_prints(in_channels: int = 1, num_classes: int = 10):  # noqa: ANN201
    """The tiny CNN with a debugging print() left in its forward pass."""
    from bench.zoo import tinycnn

    model = tinycnn(in_channels, num_classes)
    model.register_forward_hook(lambda *_: print("FORWARD CALLED"))
    return model


def ignores_width(in_channels: int = 1, num_classes: int = 10):  # noqa: ANN201
    """No width argument: every KD "student" it builds is the teacher's size."""
    from bench.zoo import tinycnn

    return tinycnn(in_channels, num_classes)
