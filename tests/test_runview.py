"""Tests for foodcnn.figures.runview: a finished run's test images, model, labels and Grad-CAM layer, from real (tiny) runs."""

from __future__ import annotations

import torch

from foodcnn.figures import probing, plots as viz
from foodcnn.figures import runview


def test_test_images_follow_predictions(tiny_runs):
    for run in tiny_runs.values():
        pred = run.predictions
        size = run.params.resolved_image_size
        images, labels = runview.test_images(run)
        assert images.dtype == torch.uint8 and tuple(images.shape) == (len(pred["keys"]), 3, size, size)
        assert labels.tolist() == pred["y_true"].tolist()
        model = runview.load_model(run)
        with torch.no_grad():  # the stored predictions come back from these images in this order
            again = model(runview.model_input(model, images)).argmax(1)
        assert again.tolist() == pred["y_pred"].tolist()
        some, some_labels = runview.test_images(run, [3, 0])
        assert torch.equal(some, images[[3, 0]]) and some_labels.tolist() == labels[[3, 0]].tolist()


def test_cam_layer_and_first_conv_of_a_run(tiny_runs):
    # the last conv is 1x1 at 20 px (baseline) and 32 px (ResNet18): Grad-CAM moves to the last map of >= 4x4
    assert runview.cam_layer(tiny_runs["t_base"]) == "features.conv3.conv"
    assert runview.cam_layer(tiny_runs["t_resnet"]) == "layer2.1.conv2"
    for run in tiny_runs.values():
        assert torch.equal(runview.first_conv_weight(run), probing.first_conv(run.model()).weight)


def test_labels_for_reading(tiny_runs):
    run = tiny_runs["t_base"]
    names = runview.class_names(run)
    assert names[0] == viz.pretty_class(run.result["data"]["classes"][0])
    assert not any(c.startswith("synthetic") or "_" in c for c in names)
    assert runview.run_label(run) == "t_base (baseline, 20 px)"
    assert "**t_base**" in runview.describe(run) and str(run.path) in runview.describe(run)
