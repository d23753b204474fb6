"""A compact expression CNN, its augmentation (with face occlusion) and its training loop.

Model: four blocks of (3x3 conv, BN, ReLU) x 2 + 2x2 max-pool with ``width``,
``2 width``, ``4 width``, ``8 width`` channels, global average pooling, dropout, one
linear layer to seven logits. Input ``[1, C, H, W]`` float32 = crop pixels * scale +
offset (see :class:`~edgemer.frontends.face.CropConfig`), H and W multiples of 16.
Width 12 on 48x48 grey is ~165 k parameters (~0.7 MB FP32, ~0.2 MB INT8).

Augmentation per training crop (numpy/OpenCV, uint8): random flip, small affine jitter
(scale, shift, rotation), brightness/contrast, and with probability ``occlusion_p`` an
upper- or lower-face patch (:func:`edgemer.export.face.data.occlude`), so the model
learns to read the visible half of the face.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from edgemer._extras import require
from edgemer.errors import ConfigError
from edgemer.export.core.config import check_counts
from edgemer.export.core.training import fit_classifier
from edgemer.export.face.data import FaceDataset, occlude
from edgemer.frontends.face import CropConfig
from edgemer.frontends.face_detector import load_cv2


@dataclass(frozen=True)
class FaceTrainConfig:
    """Training options.

    epochs, batch_size, lr (AdamW), weight_decay, seed: optimisation. width: channels of
    the first block. occlusion_p: probability that a training crop gets an upper- or
    lower-face patch (0..1). balance_classes: weight the loss by inverse class frequency.
    dropout: before the classifier.
    """

    epochs: int = 15
    batch_size: int = 64
    lr: float = 3e-3
    weight_decay: float = 1e-4
    seed: int = 0
    width: int = 12
    occlusion_p: float = 0.3
    balance_classes: bool = True
    dropout: float = 0.2

    def __post_init__(self) -> None:
        check_counts(self, ("epochs", "batch_size", "width"))
        if not self.lr > 0 or self.weight_decay < 0:
            raise ConfigError(f"FaceTrainConfig.lr must be > 0 and weight_decay >= 0, got {self.lr}, {self.weight_decay}")
        for name in ("occlusion_p", "dropout"):
            if not 0 <= getattr(self, name) < 1:
                raise ConfigError(f"FaceTrainConfig.{name} must be in [0, 1), got {getattr(self, name)}")


def build_expression_cnn(in_channels: int = 1, n_classes: int = 7, width: int = 12, dropout: float = 0.2):
    """The compact expression CNN (a ``torch.nn.Module``); see the module docstring."""
    torch = require("torch", "export", "The face expression CNN")
    nn = torch.nn

    def block(cin: int, cout: int) -> list:
        return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
                nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
                nn.MaxPool2d(2)]

    class ExpressionCNN(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            w = width
            self.features = nn.Sequential(*block(in_channels, w), *block(w, 2 * w), *block(2 * w, 4 * w),
                                          *block(4 * w, 8 * w))
            self.dropout = nn.Dropout(dropout)
            self.classifier = nn.Linear(8 * w, n_classes)

        def forward(self, x):
            h = self.features(x).mean(dim=(2, 3))
            return self.classifier(self.dropout(h))

    return ExpressionCNN()


def to_model_input(crops: np.ndarray, crop: CropConfig) -> np.ndarray:
    """uint8 crops ``[n, H, W]`` / ``[n, H, W, 3]`` -> float32 ``[n, C, H, W]`` (pixel * scale + offset)."""
    x = crops.astype(np.float32) * np.float32(crop.scale) + np.float32(crop.offset)
    return np.ascontiguousarray(x[:, None] if x.ndim == 3 else x.transpose(0, 3, 1, 2), dtype=np.float32)


def augment(crops: np.ndarray, rng: np.random.Generator, occlusion_p: float = 0.3) -> np.ndarray:
    """A randomly flipped, jittered, relit and (with ``occlusion_p``) half-covered copy of uint8 crops."""
    cv2 = load_cv2()
    out = np.empty_like(crops)
    n, h, w = crops.shape[:3]
    for i in range(n):
        img = crops[i]
        if rng.random() < 0.5:
            img = img[:, ::-1]
        scale = rng.uniform(0.9, 1.1)
        angle = rng.uniform(-10, 10)
        m = cv2.getRotationMatrix2D((w / 2, h / 2), angle, scale)
        m[:, 2] += rng.uniform(-0.07, 0.07, size=2) * (w, h)
        img = cv2.warpAffine(np.ascontiguousarray(img), m, (w, h), flags=cv2.INTER_LINEAR,
                             borderMode=cv2.BORDER_REPLICATE)
        gain, bias = rng.uniform(0.75, 1.25), rng.uniform(-25, 25)
        out[i] = np.clip(img.astype(np.float32) * gain + bias, 0, 255).astype(np.uint8)
    if occlusion_p > 0:
        hit = rng.random(n) < occlusion_p
        upper = hit & (rng.random(n) < 0.5)
        lower = hit & ~upper
        fill = rng.uniform(0, 255, size=n)
        for mask, region in ((upper, "upper"), (lower, "lower")):
            if mask.any():
                jitter = rng.uniform(-0.04, 0.04, size=2)
                rows = (0.12 + jitter[0], 0.52 + jitter[1]) if region == "upper" else (0.55 + jitter[0], 1.0)
                out[mask] = occlude(out[mask], region, fill=fill[mask], rows=rows)
    return out


def train_expression_cnn(data: FaceDataset, crop: CropConfig, config: FaceTrainConfig = FaceTrainConfig(),
                         progress: bool = True) -> tuple[Any, dict[str, Any]]:
    """Train the CNN on ``data`` with the shared loop (:func:`~edgemer.export.core.training.fit_classifier`),
    each batch augmented by :func:`augment`; returns ``(model in eval mode, history)``.

    history: ``epochs`` (per epoch: loss, train accuracy, held-out accuracy), ``seconds``.
    Deterministic for a seed on one machine and thread count.
    """
    torch = require("torch", "export", "Training the face expression CNN")

    def batch_inputs(idx: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return to_model_input(augment(data.x_train[idx], rng, config.occlusion_p), crop)

    n_classes = len(data.labels)
    return fit_classifier(torch, lambda: build_expression_cnn(crop.channels, n_classes, config.width, config.dropout),
                          config, n_classes, data.y_train, to_model_input(data.x_heldout, crop), data.y_heldout,
                          batch_inputs, balance=config.balance_classes, desc="train face CNN", progress=progress)
