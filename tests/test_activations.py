"""lit_opt.activations against an independent forward pass: the net's submodules called one
by one in the test on the same preprocessed picture; labels, eval mode, hooks removed."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from lit_opt import inference
from lit_opt.activations import activations, classify_with_activations, recording
from lit_opt.module import ClassifierModule, default_data_info


def seven() -> Image.Image:
    im = Image.new("L", (120, 140), 255)
    ImageDraw.Draw(im).line([(20, 20), (95, 20), (50, 125)], fill=0, width=12, joint="curve")
    return im


def module(net: str, dataset: str = "mnist", **net_args) -> ClassifierModule:
    torch.manual_seed(0)
    return ClassifierModule(net=net, optimizer="adam", data_info=default_data_info(dataset),
                            net_args=net_args)


def by_hand_lenet5(net, x: torch.Tensor) -> list[torch.Tensor]:
    """LeNet-5's forward written out: conv, relu, pool, conv, relu, pool, flatten, dense..."""
    f, c = net.features, net.classifier
    a1 = torch.relu(f[0](x))
    a2 = torch.relu(f[3](f[2](a1)))
    flat = f[6](f[5](a2))
    # classifier: [Dropout,] Linear, ReLU, [Dropout,] Linear, ReLU, [Dropout,] Linear
    dense = [m for m in c if isinstance(m, torch.nn.Linear)]
    h1 = torch.relu(dense[0](flat))
    h2 = torch.relu(dense[1](h1))
    return [a1, a2, h1, h2, dense[2](h2)]


def by_hand_mlp(net, x: torch.Tensor) -> list[torch.Tensor]:
    h = x.flatten(1)
    dense = [m for m in net if isinstance(m, torch.nn.Linear)]
    out = []
    for i, layer in enumerate(dense):
        h = layer(h) if i == len(dense) - 1 else torch.relu(layer(h))
        out.append(h)
    return out


@pytest.mark.parametrize("net, net_args, by_hand, labels", [
    ("lenet5", {"dropout": 0.5}, by_hand_lenet5,
     ["conv 6@5x5 (after relu)", "conv 16@5x5 (after relu)", "dense 400->120 (after relu)",
      "dense 120->84 (after relu)", "dense 84->10 (logits)"]),
    ("mlp", {"hidden": "deep", "dropout": 0.5}, by_hand_mlp,
     ["dense 784->100 (after relu)", "dense 100->100 (after relu)", "dense 100->100 #2 (after relu)",
      "dense 100->10 (logits)"]),
])
def test_activations_equal_the_nets_forward_pass_step_by_step(net, net_args, by_hand, labels):
    model = module(net, **net_args)
    model.train()  # dropout on: activations must still be the eval-mode pass, and leave the mode as it was
    pre = inference.preprocess(seven(), model)
    probs, pre_back, layers = classify_with_activations(model, pre)
    assert model.training and model.net.training
    assert pre_back is pre
    assert [layer.label for layer in layers] == labels
    model.eval()
    with torch.no_grad():
        expected = by_hand(model.net, pre.tensor)
    assert len(layers) == len(expected)
    for layer, want in zip(layers, expected):
        np.testing.assert_allclose(layer.values, want[0].numpy(), rtol=1e-5, atol=1e-6, err_msg=layer.label)
    # The probabilities come from the same pass: softmax of the last layer, as `probabilities` gives.
    assert probs == pytest.approx(inference.classify(model, pre), abs=1e-7)
    logits = torch.from_numpy(layers[-1].values)
    softmax = sorted(torch.softmax(logits, 0).tolist(), reverse=True)
    assert list(probs.values()) == pytest.approx(softmax, abs=1e-6)


def test_conv_layers_are_channels_by_height_by_width_and_dense_layers_are_units():
    layers = activations(module("lenet5"), seven())
    assert [layer.values.shape for layer in layers] == [(6, 28, 28), (16, 10, 10), (120,), (84,), (10,)]
    assert [layer.is_conv for layer in layers] == [True, True, False, False, False]
    assert [layer.module for layer in layers] == ["features.0", "features.3", "classifier.0", "classifier.2",
                                                  "classifier.4"]
    assert all(layer.values.dtype == np.float32 for layer in layers)
    assert all((layer.values >= 0).all() for layer in layers[:-1])  # after relu


def test_batchnorm_and_residual_nets_record_after_the_norm_and_in_place_relu():
    model = module("cifar_resnet", dataset="cifar10", width=4)
    x = torch.randn(1, 3, 32, 32)
    pre = inference.Preprocessed(tensor=x, picture=np.zeros((32, 32, 3), np.uint8), inverted=False)
    layers = activations(model, pre)
    model.eval()  # BatchNorm's running statistics, as activations uses
    assert layers[0].label == "conv 4@3x3 (after batchnorm, relu)"
    assert layers[-1].label == "dense 32->10 (logits)"
    first = model.net.features[0]  # conv, bn, relu(inplace): by hand
    with torch.no_grad():
        want = torch.relu(first[1](first[0](x)))[0].numpy()
    np.testing.assert_allclose(layers[0].values, want, rtol=1e-5, atol=1e-6)
    # The residual block's body: its second conv's output before the sum, unchanged by later in-place ops.
    with torch.no_grad():
        stage = model.net.features[:3](x)
        body = model.net.features[3].body
        want = body[1](body[0](stage))[0].numpy()
    got = next(layer for layer in layers if layer.module == "features.3.body.1.0")
    np.testing.assert_allclose(got.values, want, rtol=1e-5, atol=1e-6)


def test_hooks_are_removed_even_when_the_pass_fails():
    model = module("mlp", hidden=[8])
    leaves = [m for m in model.net.modules() if not list(m.children())]
    with pytest.raises(RuntimeError):
        with recording(model):
            model(torch.zeros(1, 3))  # wrong input size
    assert all(not m._forward_hooks for m in leaves) and not model.net._forward_pre_hooks
    activations(model, inference.preprocess(seven(), model))
    assert all(not m._forward_hooks for m in leaves) and not model.net._forward_pre_hooks


def test_recording_keeps_the_last_of_several_passes():
    model = module("mlp", hidden=[8]).eval()
    a, b = torch.zeros(1, 1, 28, 28), torch.ones(1, 1, 28, 28)
    with recording(model) as layers:
        model(a)
        model(b)
    assert len(layers) == 2
    with torch.no_grad():
        np.testing.assert_allclose(layers[-1].values, model(b)[0].numpy(), rtol=1e-6)


def test_a_blank_picture_raises_empty_image_error():
    with pytest.raises(inference.EmptyImageError):
        activations(module("mlp"), np.full((50, 50), 255, np.uint8))
