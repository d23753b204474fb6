"""Options of ``edgemer export physio`` (standard library only, so that building the command
line parser never imports numpy, scipy or torch).

- :class:`PhysioExportConfig`: everything ``edgemer export physio`` can be told.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from edgemer.errors import ConfigError
from edgemer.export.core.config import OnnxQuantOptions, VerificationTargets, check_trained_export, command_line

if TYPE_CHECKING:
    from edgemer.export.physio.windows import WindowOptions

REAL_DATA_COMMAND = "edgemer export physio --wesad /path/to/WESAD --out my-physio-bundle"
"""How to train on the real WESAD data set (shown wherever a synthetic bundle is described)."""
PHYSICS_MODELS = ("tonic-phasic", "single-ode")
"""The PINN's physics: ``tonic-phasic`` (the tonic ODE + Bateman SCR fit of the training subjects, the
residual on the tonic component) or ``single-ode`` (one ODE residual on the whole EDA, learned by the PINN)."""


@dataclass(frozen=True)
class PhysioExportConfig:
    """Options of :func:`edgemer.export.physio.export.export_physio` (times in seconds).

    epochs, batch_size, lr, seed: training. window_s: model window (multiple of 2 s).
    hop_s: runtime hop between windows (stored in the manifest). train_hop_s: hop between
    training windows. forecast_s: EDA forecast horizon. heldout_fraction: share of
    subjects held out for verification (at least one). calibration_windows: training
    windows used to calibrate INT8 ranges. physics_weight: weight of the ODE residual in
    the loss. physics: the physics model, one of :data:`PHYSICS_MODELS` (``tonic-phasic``: the
    tonic ODE + Bateman SCR model is fitted on the training subjects first, its parameters are
    fixed in the PINN and the residual acts on the tonic component; ``single-ode``: the PINN
    learns one ODE on the whole EDA). physics_steps: Adam steps of the tonic/phasic fit.
    name: bundle name. tflite: also write FP32 and INT8 TFLite files.
    guard_steps: re-quantisations the accuracy guard may make, keeping more nodes in FP32
    each time, while the INT8 ONNX macro-F1 drop exceeds ``targets`` (0: plain quantisation).
    """

    epochs: int = 30
    batch_size: int = 64
    lr: float = 3e-3
    seed: int = 0
    window_s: float = 60.0
    hop_s: float = 5.0
    train_hop_s: float = 2.5
    forecast_s: float = 10.0
    heldout_fraction: float = 0.2
    calibration_windows: int = 256
    physics_weight: float = 1.0
    physics: str = "tonic-phasic"
    physics_steps: int = 600
    name: str = "physio"
    tflite: bool = True
    guard_steps: int = 8
    onnx_quantisation: OnnxQuantOptions = field(default_factory=OnnxQuantOptions)
    targets: VerificationTargets = field(default_factory=VerificationTargets)

    def __post_init__(self) -> None:
        check_trained_export(self, ("calibration_windows", "physics_steps"))
        if not self.hop_s > 0:
            raise ConfigError(f"PhysioExportConfig.hop_s must be > 0 s, got {self.hop_s}")
        if not self.forecast_s > 0:
            raise ConfigError(f"PhysioExportConfig.forecast_s must be > 0 s, got {self.forecast_s}")
        if not self.window_s > 0 or abs(self.window_s / 2 - round(self.window_s / 2)) > 1e-9:
            raise ConfigError(f"PhysioExportConfig.window_s must be a positive multiple of 2 s (the encoder "
                              f"halves the 4 Hz window three times), got {self.window_s}")
        if self.physics_weight < 0:
            raise ConfigError(f"PhysioExportConfig.physics_weight must be >= 0, got {self.physics_weight}")
        if self.physics not in PHYSICS_MODELS:
            raise ConfigError(f"PhysioExportConfig.physics must be one of {', '.join(PHYSICS_MODELS)}, "
                              f"got {self.physics!r}")

    def window_options(self) -> "WindowOptions":
        """The windowing options (validated there: train_hop_s and forecast_s on the 0.25 s grid)."""
        from edgemer.export.physio.windows import WindowOptions

        return WindowOptions(window_s=self.window_s, train_hop_s=self.train_hop_s, forecast_s=self.forecast_s,
                             heldout_fraction=self.heldout_fraction)

    def as_command(self, wesad_dir: Path, out_dir: Path) -> str:
        """The ``edgemer export physio`` command line for this config (options that differ from the defaults)."""
        return command_line(("edgemer", "export", "physio", "--wesad", wesad_dir, "--out", out_dir), self,
                            COMMAND_FLAGS)


COMMAND_FLAGS = {
    "name": "--name", "epochs": "--epochs", "batch_size": "--batch-size", "lr": "--lr", "seed": "--seed",
    "window_s": "--window", "hop_s": "--hop", "train_hop_s": "--train-hop", "forecast_s": "--forecast",
    "heldout_fraction": "--heldout-fraction", "calibration_windows": "--calibration-windows",
    "physics_weight": "--physics-weight", "physics": "--physics", "physics_steps": "--physics-steps",
    "tflite": "--no-tflite", "guard_steps": "--guard-steps",
}
"""PhysioExportConfig field -> ``edgemer export physio`` option (``tflite`` is switched off by its flag)."""
