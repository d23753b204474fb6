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

import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from edgemer._extras import require
from edgemer.errors import ConfigError
from edgemer.export.audio.data import AudioDataset
from edgemer.export.core.config import check_counts
from edgemer.export.core.training import adamw_one_cycle, balanced_cross_entropy
from edgemer.export.core.progress import progress_bar

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
    """Train the CNN on ``data`` (windows standardised with its training mean/std).

    Returns ``(model in eval mode, history)``; history holds per epoch the loss, train and
    held-out accuracy and held-out arousal/valence correlation, and ``seconds``.
    """
    torch = require("torch", "export", "Training the speech emotion CNN")
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    n_classes = len(data.labels)
    model = build_speech_cnn(n_classes, data.x_train.shape[2:], 3, config.width, config.dropout)
    trainable = [p for p in model.parameters() if p.requires_grad]  # not the fixed pooling kernel
    opt, sched = adamw_one_cycle(torch, trainable, config.lr, config.weight_decay, len(data.y_train),
                                 config.batch_size, config.epochs)
    ce = balanced_cross_entropy(torch, data.y_train, n_classes)
    x_train = data.normalised(data.x_train)
    x_held = torch.from_numpy(data.normalised(data.x_heldout))
    history: dict[str, Any] = {"epochs": []}
    t0 = time.perf_counter()
    bar = progress_bar(range(config.epochs), enabled=progress, desc="train speech CNN", unit="epoch")
    for epoch in bar:
        model.train()
        order = rng.permutation(len(data.y_train))
        total, correct, loss_sum = 0, 0, 0.0
        for start in range(0, len(order), config.batch_size):
            idx = order[start:start + config.batch_size]
            xb = torch.from_numpy(spec_augment(x_train[idx], rng, config.spec_augment))
            yb = torch.from_numpy(data.y_train[idx])
            ab = torch.from_numpy(data.avd_train[idx])
            mb = torch.from_numpy(data.m_train[idx].astype(np.float32))[:, None]
            logits, avd = model(xb)
            loss = ce(logits, yb)
            if config.dims_weight > 0 and float(mb.sum()) > 0:
                loss = loss + config.dims_weight * (((avd - ab) ** 2) * mb).sum() / (mb.sum() * 3)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            loss_sum += float(loss.detach()) * len(idx)
            correct += int((logits.argmax(1) == yb).sum())
            total += len(idx)
        model.eval()
        with torch.no_grad():
            outs = [model(x_held[i:i + 256]) for i in range(0, len(x_held), 256)]
        pred = torch.cat([o[0] for o in outs]).argmax(1).numpy()
        avd_pred = torch.cat([o[1] for o in outs]).numpy()
        row = {"epoch": epoch + 1, "loss": loss_sum / total, "train_accuracy": correct / total,
               "heldout_accuracy": float(np.mean(pred == data.y_heldout)),
               **{f"heldout_r_{name}": _pearson(avd_pred[data.m_heldout, i], data.avd_heldout[data.m_heldout, i])
                  for i, name in enumerate(("arousal", "valence"))}}
        history["epochs"].append(row)
        bar.set_postfix(loss=f"{row['loss']:.3f}", held=f"{row['heldout_accuracy']:.3f}")
    history["seconds"] = time.perf_counter() - t0
    model.eval()
    return model, history


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    if a.size < 2 or np.std(a) == 0 or np.std(b) == 0:
        return float("nan")
    return float(np.corrcoef(a, b)[0, 1])
