"""The training loop the face and speech CNNs share, and its pieces (torch is imported lazily).

:func:`fit_classifier` trains a classifier with AdamW and a one-cycle schedule on a
class-balanced, label-smoothed cross-entropy and records, per epoch, the loss and the
train and held-out accuracy. What differs between modalities comes in as hooks: how a
training batch is made (augmentation), an extra loss term (e.g. a regression head) and
more held-out metrics.
"""
from __future__ import annotations

import time
from typing import Any, Callable, Iterable, Protocol

import numpy as np

from edgemer.export.core.allocator import keep_freed_buffers
from edgemer.export.core.progress import progress_bar


class LoopOptions(Protocol):
    """The training options :func:`fit_classifier` reads (a modality's frozen train config)."""

    epochs: int
    batch_size: int
    lr: float
    weight_decay: float
    seed: int


def adamw_one_cycle(torch: Any, params: Iterable[Any], lr: float, weight_decay: float, n_train: int,
                    batch_size: int, epochs: int) -> tuple[Any, Any]:
    """AdamW with a one-cycle schedule (20 % warm-up, peak ``lr``) over ``epochs`` passes of ``n_train`` items;
    call ``scheduler.step()`` after every ``optimizer.step()``."""
    opt = torch.optim.AdamW(list(params), lr=lr, weight_decay=weight_decay)
    steps = max(1, int(np.ceil(n_train / batch_size))) * epochs
    return opt, torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.2)


def balanced_cross_entropy(torch: Any, y_train: np.ndarray, n_classes: int, balance: bool = True,
                           label_smoothing: float = 0.05) -> Any:
    """Cross-entropy with label smoothing, weighted by inverse class frequency of ``y_train`` when ``balance``
    (a class absent from the training labels gets weight 0)."""
    weights = None
    if balance:
        counts = np.bincount(y_train, minlength=n_classes).astype(np.float64)
        w = np.where(counts > 0, counts.sum() / np.maximum(counts, 1) / n_classes, 0.0)
        weights = torch.tensor(w, dtype=torch.float32)
    return torch.nn.CrossEntropyLoss(weight=weights, label_smoothing=label_smoothing)


def pick(n_total: int, k: int, seed: int) -> np.ndarray:
    """``k`` sorted indices drawn without replacement from ``n_total`` (all when fewer), seeded."""
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(n_total, size=min(k, n_total), replace=False))


def fit_classifier(torch: Any, build_model: Callable[[], Any], config: LoopOptions, n_classes: int, y_train: np.ndarray,
                   x_heldout: np.ndarray, y_heldout: np.ndarray,
                   batch_inputs: Callable[[np.ndarray, np.random.Generator], np.ndarray], *,
                   extra_loss: Callable[[Any, np.ndarray], Any] | None = None,
                   heldout_metrics: Callable[[list[np.ndarray]], dict[str, float]] | None = None,
                   balance: bool = True, desc: str = "train", progress: bool = True) -> tuple[Any, dict[str, Any]]:
    """Train the classifier ``build_model()`` makes; return ``(model in eval mode, history)``.

    Parameters
    ----------
    torch
        The ``torch`` module (imported by the caller, see :func:`edgemer._extras.require`).
    build_model
        Makes the ``torch.nn.Module`` (called after ``torch.manual_seed(config.seed)``);
        its forward returns the class logits ``[batch, n_classes]``, or a tuple whose first
        element they are (further elements: extra heads).
    config
        epochs, batch_size, lr (peak), weight_decay and seed (:class:`LoopOptions`).
    y_train
        ``[n_train]`` int class index of the training items.
    x_heldout, y_heldout
        Held-out model inputs ``[n, ...]`` float32 and their ``[n]`` class index.
    batch_inputs
        Hook ``(indices, rng) -> [batch, ...]`` float32 model inputs of those training
        items; augmentation belongs here (draw from ``rng`` only, for determinism).
    extra_loss
        Hook ``(model output, indices) -> tensor or None`` added to the cross-entropy
        (e.g. a regression head's loss).
    heldout_metrics
        Hook: the model's held-out outputs (one ``[n, ...]`` array per output) -> more
        entries of the epoch's history row.
    balance
        Weight the cross-entropy by inverse class frequency.

    Notes
    -----
    History: ``epochs`` (per epoch: ``epoch``, ``loss``, ``train_accuracy``,
    ``heldout_accuracy`` and the ``heldout_metrics`` entries) and ``seconds``.
    Deterministic for a seed on one machine and thread count: a
    ``numpy.random.default_rng(config.seed)`` draws the batch order and the augmentation.
    """
    keep_freed_buffers()
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    model = build_model()
    trainable = [p for p in model.parameters() if p.requires_grad]  # e.g. not a fixed pooling kernel
    opt, sched = adamw_one_cycle(torch, trainable, config.lr, config.weight_decay, len(y_train), config.batch_size,
                                 config.epochs)
    loss_fn = balanced_cross_entropy(torch, y_train, n_classes, balance)
    x_held = torch.from_numpy(x_heldout)
    history: dict[str, Any] = {"epochs": []}
    t0 = time.perf_counter()
    bar = progress_bar(range(config.epochs), enabled=progress, desc=desc, unit="epoch")
    for epoch in bar:
        model.train()
        order = rng.permutation(len(y_train))
        total, correct, loss_sum = 0, 0, 0.0
        for start in range(0, len(order), config.batch_size):
            idx = order[start:start + config.batch_size]
            xb = torch.from_numpy(batch_inputs(idx, rng))
            yb = torch.from_numpy(y_train[idx])
            out = model(xb)
            logits = out[0] if isinstance(out, tuple) else out
            loss = loss_fn(logits, yb)
            extra = extra_loss(out, idx) if extra_loss is not None else None
            if extra is not None:
                loss = loss + extra
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            loss_sum += float(loss.detach()) * len(idx)
            correct += int((logits.argmax(1) == yb).sum())
            total += len(idx)
        model.eval()
        with torch.no_grad():
            chunks = [model(x_held[i:i + 256]) for i in range(0, len(x_held), 256)]
        chunks = [c if isinstance(c, tuple) else (c,) for c in chunks]
        held = [torch.cat([c[k] for c in chunks]).numpy() for k in range(len(chunks[0]))] if chunks else []
        pred = held[0].argmax(1) if held else np.zeros(0, np.int64)
        row = {"epoch": epoch + 1, "loss": loss_sum / total, "train_accuracy": correct / total,
               "heldout_accuracy": float(np.mean(pred == y_heldout)) if len(pred) else float("nan"),
               **(heldout_metrics(held) if heldout_metrics is not None else {})}
        history["epochs"].append(row)
        bar.set_postfix(loss=f"{row['loss']:.3f}", held=f"{row['heldout_accuracy']:.3f}")
    history["seconds"] = time.perf_counter() - t0
    model.eval()
    return model, history
