"""Pieces shared by the face and speech CNN training loops (torch is passed in, imported lazily by the caller)."""
from __future__ import annotations

from typing import Any, Iterable

import numpy as np


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
