"""PNG plots of a calibration record (matplotlib Agg): display and phase response, registration, residuals, channel
fits."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from lab4f.calibration.gains import fitted_features  # noqa: E402
from lab4f.calibration.record import CalibrationRecord  # noqa: E402


def write_plots(record: CalibrationRecord, out_dir: str | Path) -> list[Path]:
    """One PNG per available step; returns the paths written."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths: list[Path] = []

    def save(fig: plt.Figure, name: str) -> None:
        fig.tight_layout()
        fig.savefig(out / name, dpi=100)
        plt.close(fig)
        paths.append(out / name)

    lin = record.display_linearizer
    if lin is not None:
        step = record.steps["display"]
        fig, ax = plt.subplots(figsize=(5, 4))
        d = np.linspace(0, 1, 201)
        ax.plot(lin.drive, lin.response, "o", label="measured (uncorrected)")
        ax.plot(d, lin.forward(d), "-", lw=0.8, color="C0")
        ax.plot(d, d, "k--", lw=0.8, label="linear target")
        ax.plot(
            step.arrays["check_intensity"],
            step.arrays["check_response"],
            "s",
            label="linearised ramp",
        )
        ax.set_xlabel("image intensity / drive value")
        ax.set_ylabel("light above gray 0 / white")
        q = step.quality
        ax.set_title(
            f"display: γ ≈ {q['gamma_fit']:.2f}, error {q['linearity_error_before']:.3f} → "
            f"{q['linearity_error_after']:.4f}"
        )
        ax.legend()
        save(fig, "display_response.png")
    if record.phase_response is not None:
        lv, g = record.phase_response
        fig, ax = plt.subplots(figsize=(5, 4))
        ax.plot(lv, g, "o-", label="measured")
        ax.set_xlabel("gray level")
        ax.set_ylabel("phase / 2π")
        ax.set_title(
            f"SLM phase response (fit R² {record.steps['phase'].quality.get('fit_r2', np.nan):.4f})"
        )
        ax.legend()
        save(fig, "phase_response.png")
    reg = record.steps.get("registration")
    if reg is not None:
        plane, cam = reg.arrays["fiducial_plane_xy"], reg.arrays["fiducial_camera_xy"]
        fit = record.registration.apply(plane)
        fig, axs = plt.subplots(1, 2, figsize=(10, 4.5))
        if record.dark is not None:
            axs[0].imshow(record.dark, cmap="gray")
        axs[0].plot(cam[:, 0], cam[:, 1], "r+", label="measured")
        axs[0].plot(fit[:, 0], fit[:, 1], "bx", label="affine fit")
        axs[0].set_title("display fiducials on the camera")
        axs[0].legend()
        resid = cam - fit
        axs[1].quiver(fit[:, 0], fit[:, 1], resid[:, 0], resid[:, 1], angles="xy")
        axs[1].invert_yaxis()
        axs[1].set_title(f"residuals ({reg.quality['rms_residual_px']:.3f} px RMS)")
        save(fig, "registration.png")
    gains = record.steps.get("gains")
    if gains is not None:
        cap, dig = gains.arrays["captured_sample"], gains.arrays["digital_sample"]
        chans = cap.shape[1]
        fitted = fitted_features(record, cap)
        fig, axs = plt.subplots(1, chans, figsize=(3 * chans, 3), squeeze=False)
        for c in range(chans):
            pred = fitted[:, c].ravel()
            axs[0, c].plot(dig[:, c].ravel(), pred, ",", alpha=0.5)
            axs[0, c].set_title(f"ch {c}: R² {record.channel_r2[c]:.3f}")
            axs[0, c].set_xlabel("digital")
        axs[0, 0].set_ylabel("captured (fitted)")
        save(fig, "channel_fits.png")
        fig, axs = plt.subplots(1, chans, figsize=(3 * chans, 3), squeeze=False)
        for c in range(chans):
            res = fitted[0, c] - dig[0, c]
            im = axs[0, c].imshow(res, cmap="RdBu")
            fig.colorbar(im, ax=axs[0, c])
            axs[0, c].set_title(f"ch {c} residual")
        save(fig, "residual_maps.png")
    return paths
