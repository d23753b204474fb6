"""Training loop for :class:`~edgemer.export.physio.pinn.PhysioPINN` (Adam, mini-batches, CPU).

Deterministic for a given seed: the weights, the shuffling and the result depend only
on ``TrainConfig.seed`` and the data (on one machine and thread count).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from edgemer.errors import ConfigError
from edgemer.export.core.allocator import keep_freed_buffers
from edgemer.export.core.config import check_counts
from edgemer.export.physio.windows import PhysioDataset
from edgemer.export.physio.pinn import LossWeights, PhysioPINN, PhysioPINNConfig, pinn_loss
from edgemer.export.core.progress import progress_bar


@dataclass(frozen=True)
class TrainConfig:
    """epochs: passes over the training windows. batch_size: windows per step.
    lr: Adam learning rate of the network. physics_lr: learning rate of the three
    physical parameters and the drive levels (Adam with a short second-moment memory,
    beta2 = 0.9: the time constant lies along a flat valley of the loss, where Adam's
    default memory of the large early gradients would keep its steps tiny). seed: weights and
    shuffling. balance_classes: weight the cross-entropy by inverse class frequency.
    weights: loss term weights. Both learning rates follow a cosine decay to 5 %.
    The cross-entropy trains the class encoder and head, the other terms the regression
    encoder and the EDA, drive and tonic heads (two encoders, see :mod:`~edgemer.export.physio.pinn`).
    """

    epochs: int = 30
    batch_size: int = 64
    lr: float = 3e-3
    physics_lr: float = 5e-2
    seed: int = 0
    balance_classes: bool = True
    weights: LossWeights = field(default_factory=LossWeights)

    def __post_init__(self) -> None:
        check_counts(self, ("epochs", "batch_size"))
        for name in ("lr", "physics_lr"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"TrainConfig.{name} must be > 0, got {getattr(self, name)}")


def class_weights(y: np.ndarray, n_classes: int) -> np.ndarray:
    """Inverse-frequency class weights with mean 1 (a class absent from ``y`` gets weight 0)."""
    counts = np.bincount(y, minlength=n_classes).astype(np.float64)
    w = np.where(counts > 0, counts.sum() / np.maximum(counts, 1) / n_classes, 0.0)
    return (w / w[counts > 0].mean()).astype(np.float32)


def train_pinn(data: PhysioDataset, config: TrainConfig = TrainConfig(), model_config: PhysioPINNConfig | None = None,
               progress: bool = True, context_train: np.ndarray | None = None,
               on_epoch: Callable[[int, PhysioPINN], None] | None = None,
               physics: Any = None) -> tuple[PhysioPINN, dict[str, Any]]:
    """Train a PhysioPINN on ``data.x_train`` and return it (in eval mode) with a history dict.

    ``context_train`` [n_train, k] float32: optional per-window context (e.g. standardised
    self-report features); the model then takes it as its second input (``n_context = k``).

    The history holds per-epoch mean losses (``loss``, ``eda``, ``ce``, ``phys``) and
    training accuracy under ``epochs``, the physical parameters after each epoch under
    ``physics``, and the wall time in ``seconds``.

    ``on_epoch(epoch, model)``: called after each epoch (0-based) with the model, e.g. to
    score it on validation windows (``edgemer study tune``); it may switch the model to eval
    mode (the next epoch switches it back) but must not change its weights.

    ``physics``: a :class:`~edgemer.export.physio.tonic.TonicPhasicFit` of the training
    subjects; the model's physical parameters are fixed to it (see
    :meth:`PhysioPINN.set_physics`) and, with ``data.phasic_train`` / ``drive_train``, the
    physics term acts on the tonic component. None: the parameters are learned by the
    residual on the whole EDA (the single-ODE model).
    """
    import torch

    keep_freed_buffers()
    torch.manual_seed(config.seed)
    gen = torch.Generator().manual_seed(config.seed)
    n_classes = 3
    model_config = model_config or PhysioPINNConfig(n_samples=data.x_train.shape[2],
                                                     n_forecast=data.eda_train.shape[1] - data.x_train.shape[2],
                                                     n_classes=n_classes,
                                                     n_context=0 if context_train is None else context_train.shape[1])
    model = PhysioPINN(model_config)
    if physics is not None:
        model.set_physics(physics.tau_s, physics.gain_uS, physics.levels)
    phasic = None if data.phasic_train is None else torch.from_numpy(data.phasic_train)
    drive = None if data.drive_train is None else torch.from_numpy(data.drive_train)
    ctx = None if context_train is None else torch.from_numpy(np.ascontiguousarray(context_train, np.float32))
    x = torch.from_numpy(data.x_train)
    eda = torch.from_numpy(data.eda_train)
    y = torch.from_numpy(data.y_train)
    codes = torch.from_numpy(data.codes_train.astype(np.int64))
    tonic = torch.from_numpy(data.tonic_train)
    cw = torch.from_numpy(class_weights(data.y_train, n_classes)) if config.balance_classes else None
    physical = [p for p in (model.raw_alpha_0, model.raw_beta, model.raw_gamma, model.raw_levels) if p.requires_grad]
    network = [p for name, p in model.named_parameters() if p.requires_grad and not name.startswith("raw_")]
    groups = [{"params": network, "lr": config.lr}]
    if physical:
        groups.append({"params": physical, "lr": config.physics_lr, "betas": (0.9, 0.9)})
    opt = torch.optim.Adam(groups)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda epoch: 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * epoch / config.epochs)))
    history: dict[str, Any] = {"epochs": [], "physics": []}
    started = time.perf_counter()
    bar = progress_bar(range(config.epochs), enabled=progress, desc="train", unit="epoch")
    for _ in bar:
        model.train()
        order = torch.randperm(x.shape[0], generator=gen)
        sums: dict[str, float] = {}
        correct = 0
        for i in range(0, x.shape[0], config.batch_size):
            idx = order[i:i + config.batch_size]
            outputs = model(x[idx], None if ctx is None else ctx[idx])
            loss, parts = pinn_loss(model, outputs, eda[idx], y[idx], codes[idx], tonic[idx], data.eda_mean_uS,
                                    data.eda_std_uS, config.weights, cw, None if phasic is None else phasic[idx],
                                    None if drive is None else drive[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            for k, v in parts.items():
                sums[k] = sums.get(k, 0.0) + v * idx.numel()
            correct += int((outputs[0].argmax(1) == y[idx]).sum())
        sched.step()
        row = {k: v / x.shape[0] for k, v in sums.items()}
        row["train_accuracy"] = correct / x.shape[0]
        history["epochs"].append(row)
        history["physics"].append(model.physical_parameters())
        bar.set_postfix(loss=f"{row['loss']:.3f}", ce=f"{row['ce']:.3f}", eda=f"{row['eda']:.4f}",
                        phys=f"{row['phys']:.4f}", acc=f"{row['train_accuracy']:.2f}",
                        tau=f"{history['physics'][-1]['tau_s']:.1f}")
        if on_epoch is not None:
            on_epoch(len(history["epochs"]) - 1, model)
    bar.close()
    history["seconds"] = time.perf_counter() - started
    model.eval()
    return model, history


def fine_tune_pinn(model: PhysioPINN, x: np.ndarray, eda: np.ndarray, y: np.ndarray, codes: np.ndarray,
                   tonic: np.ndarray, eda_mean_uS: float, eda_std_uS: float, epochs: int = 30, lr: float = 1e-3,
                   physics_weight: float = 1.0, seed: int = 0) -> PhysioPINN:
    """A copy of ``model`` personalised on a new wearer's calibration windows.

    x [n, 4, N], eda [n, N+F] and tonic [n] are standardised like the training data; y [n]
    their classes (only for the loss's bookkeeping: the classification weight is 0);
    codes [n, N+F] their condition codes. Both encoders, the class and drive heads and the
    drive levels stay fixed; the EDA and tonic heads and alpha_0, beta, gamma are trained on the
    EDA + physics loss for ``epochs`` full-batch Adam steps at ``lr``. ``model`` itself is
    not changed.
    """
    import copy

    import torch

    torch.manual_seed(seed)
    tuned = copy.deepcopy(model)
    for p in tuned.parameters():
        p.requires_grad_(False)
    params = [*tuned.eda_head.parameters(), *tuned.tonic_head.parameters(), tuned.raw_alpha_0, tuned.raw_beta,
              tuned.raw_gamma]
    for p in params:
        p.requires_grad_(True)
    opt = torch.optim.Adam(params, lr=lr)
    weights = LossWeights(eda=1.0, classification=0.0, physics=physics_weight)
    batch = [torch.from_numpy(a) for a in (x, eda, y, codes.astype(np.int64), tonic)]
    tuned.train()
    for _ in range(epochs):
        loss, _ = pinn_loss(tuned, tuned(batch[0]), *batch[1:], eda_mean_uS, eda_std_uS, weights)
        opt.zero_grad()
        loss.backward()
        opt.step()
    tuned.eval()
    return tuned
