"""A compact speech emotion CNN over log-mel frames, with class and dimensional heads.

Model: a stride-2 3x3 conv stem (``width`` channels), three blocks of (3x3 conv, BN,
ReLU, 2x2 max-pool) with ``1.5``, ``2`` and ``3 x width`` channels and a last 3x3 conv
with ``4 x width``, over the ``[1, n_mels, n_frames]`` log-mel image; global average
pooling over frequency and time (so the utterance may sit anywhere in the window),
dropout, then two heads: ``emotion_logits`` (one per class) and ``avd`` (arousal,
valence, dominance through tanh, in [-1, 1]) — the dimensional outputs of
wav2vec2-style speech emotion models, from a model a Raspberry Pi runs in about a
millisecond. Width 32 on 64 x 301 is ~210 k parameters (~0.8 MB FP32, ~0.25 MB INT8),
~40 M multiply-adds per 3 s window; the stem's stride and the wide later layers keep
most of the work in convolutions with many channels, where INT8 kernels pay off
(about 3x faster than FP32 at one thread on AVX-512 VNNI).

The global average pool is a depthwise convolution whose kernel covers the whole last
feature map, with fixed weights ``1 / (rows x columns)`` (not trained): the same
arithmetic as a mean, but INT8 converters give its output its own calibrated scale. A
plain ``mean`` is quantised by PT2E/TFLite with the scale of the conv output it averages
(a MEAN shares its input's int8 parameters), which is several times coarser than the
pooled values need; on the audio demo that put the INT8 TFLite logits 0.12 away from
FP32 on average (97.5 % argmax agreement) against 0.03 (100 %) with this layout.
The pooling kernel therefore depends on the input size: pass ``input_hw``.

Loss: cross-entropy (class-balanced, label smoothing 0.05) + ``dims_weight`` x MSE of
the dimensional head on the windows whose targets are known.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from edgemer._extras import require
from edgemer.errors import ConfigError
from edgemer.export.audio.data import AudioDataset
from edgemer.export.core.config import check_counts
from edgemer.export.core.training import fit_classifier

CLASS_OUTPUT = "emotion_logits"
DIMS_OUTPUT = "avd"
INPUT_NAME = "log_mel"


@dataclass(frozen=True)
class SpeechTrainConfig:
    """Training options: epochs, batch_size, lr (AdamW, one-cycle), weight_decay, seed,
    width (channels of the first block), dropout, dims_weight (regression loss weight),
    spec_augment (probability of one time and one frequency mask per training window)."""

    epochs: int = 30
    batch_size: int = 32
    lr: float = 3e-3
    weight_decay: float = 1e-4
    seed: int = 0
    width: int = 32
    dropout: float = 0.2
    dims_weight: float = 1.0
    spec_augment: float = 0.5

    def __post_init__(self) -> None:
        check_counts(self, ("epochs", "batch_size", "width"))
        if not self.lr > 0 or self.weight_decay < 0 or self.dims_weight < 0:
            raise ConfigError("SpeechTrainConfig.lr must be > 0, weight_decay and dims_weight >= 0")
        for name in ("dropout", "spec_augment"):
            if not 0 <= getattr(self, name) < 1:
                raise ConfigError(f"SpeechTrainConfig.{name} must be in [0, 1), got {getattr(self, name)}")


def build_speech_cnn(n_classes: int, input_hw: tuple[int, int], n_dims: int = 3, width: int = 32,
                     dropout: float = 0.2):
    """The compact speech emotion CNN (a ``torch.nn.Module``); forward returns ``(logits, avd)``.

    input_hw: ``(n_mels, n_frames)`` of the log-mel input ``[batch, 1, n_mels, n_frames]``
    (it sizes the global-average-pool kernel, see the module docstring).
    """
    torch = require("torch", "export", "The speech emotion CNN")
    nn = torch.nn
    if len(input_hw) != 2 or min(input_hw) < 16:
        raise ConfigError(f"build_speech_cnn: input_hw must be (n_mels, n_frames), each >= 16, got {input_hw}")

    def conv(cin: int, cout: int, stride: int = 1) -> list:
        return [nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(cout),
                nn.ReLU(inplace=True)]

    class SpeechEmotionCNN(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            c = [width, width * 3 // 2, width * 2, width * 3, width * 4]
            self.features = nn.Sequential(*conv(1, c[0], stride=2), *conv(c[0], c[1]), nn.MaxPool2d(2),
                                          *conv(c[1], c[2]), nn.MaxPool2d(2), *conv(c[2], c[3]), nn.MaxPool2d(2),
                                          *conv(c[3], c[4]))
            # Feature map size: the stride-2 stem and the three max-pools (floor division).
            rows, cols = ((n + 1) // 2 // 8 for n in input_hw)
            self.pool = nn.Conv2d(c[4], c[4], (rows, cols), groups=c[4], bias=False)
            nn.init.constant_(self.pool.weight, 1.0 / (rows * cols))
            self.pool.weight.requires_grad_(False)
            self.dropout = nn.Dropout(dropout)
            self.classes = nn.Linear(c[4], n_classes)
            self.dims = nn.Linear(c[4], n_dims)

        def forward(self, x):
            h = self.dropout(self.pool(self.features(x)).flatten(1))
            return self.classes(h), torch.tanh(self.dims(h))

    return SpeechEmotionCNN()


def spec_augment(x: np.ndarray, rng: np.random.Generator, p: float) -> np.ndarray:
    """Copy of normalised log-mel windows ``[n, 1, M, T]`` with, per window and probability ``p``,
    one band of up to M/8 mel bins and one span of up to T/10 frames set to 0 (the training mean)."""
    out = x.copy()
    n, _, m, t = x.shape
    for i in np.flatnonzero(rng.random(n) < p):
        f = int(rng.integers(1, max(2, m // 8)))
        f0 = int(rng.integers(0, m - f + 1))
        w = int(rng.integers(1, max(2, t // 10)))
        t0 = int(rng.integers(0, t - w + 1))
        out[i, :, f0:f0 + f, :] = 0.0
        out[i, :, :, t0:t0 + w] = 0.0
    return out


def train_speech_cnn(data: AudioDataset, config: SpeechTrainConfig = SpeechTrainConfig(), progress: bool = True
                     ) -> tuple[Any, dict[str, Any]]:
    """Train the CNN on ``data`` (windows standardised with its training mean/std) with the shared
    loop (:func:`~edgemer.export.core.training.fit_classifier`): SpecAugment on each batch, and
    the arousal/valence/dominance head's masked MSE added to the loss.

    Returns ``(model in eval mode, history)``; history holds per epoch the loss, train and
    held-out accuracy and held-out arousal/valence correlation, and ``seconds``.
    """
    torch = require("torch", "export", "Training the speech emotion CNN")
    x_train = data.normalised(data.x_train)

    def batch_inputs(idx: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return spec_augment(x_train[idx], rng, config.spec_augment)

    def dims_loss(out: Any, idx: np.ndarray) -> Any:
        ab = torch.from_numpy(data.avd_train[idx])
        mb = torch.from_numpy(data.m_train[idx].astype(np.float32))[:, None]
        if config.dims_weight > 0 and float(mb.sum()) > 0:
            return config.dims_weight * (((out[1] - ab) ** 2) * mb).sum() / (mb.sum() * 3)
        return None

    def dims_r(held: list[np.ndarray]) -> dict[str, float]:
        m = data.m_heldout
        return {f"heldout_r_{name}": _pearson(held[1][m, i], data.avd_heldout[m, i])
                for i, name in enumerate(("arousal", "valence"))}

    return fit_classifier(torch, lambda: build_speech_cnn(len(data.labels), data.x_train.shape[2:], 3, config.width,
                                                          config.dropout),
                          config, len(data.labels), data.y_train, data.normalised(data.x_heldout), data.y_heldout,
                          batch_inputs, extra_loss=dims_loss,
                          heldout_metrics=dims_r, desc="train speech CNN", progress=progress)


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    if a.size < 2 or np.std(a) == 0 or np.std(b) == 0:
        return float("nan")
    return float(np.corrcoef(a, b)[0, 1])
