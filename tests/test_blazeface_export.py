"""Host side of keypoint alignment: measuring the crop parameters that reproduce a model's training framing."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("cv2", reason="drawing faces and the Haar reference need opencv-python-headless")

from edgemer.errors import DatasetError  # noqa: E402
from edgemer.export.face.align import (alignment_note, fit_eye_crop, keypoint_crop, photo_fit,  # noqa: E402
                                       synthetic_fit)
from edgemer.frontends.face import CropConfig  # noqa: E402


def test_drawn_faces_give_the_keypoint_crop_of_their_drawing_boxes():
    fit = synthetic_fit(n=30)
    assert fit.faces >= 24  # BlazeFace finds most drawn faces
    assert 2.6 < fit.eye_side < 3.2 and 0.2 < fit.eye_drop < 0.45  # measured: 2.87 and 0.34 over 79 faces
    crop = keypoint_crop(CropConfig(size=(48, 48)), fit)
    assert crop.align == "keypoints" and crop.eye_side == round(fit.eye_side, 3)
    note = alignment_note(crop, fit, "box crops of drawn faces")
    assert "box crops of drawn faces" in note and f"{crop.eye_side:.3f} eye distances wide" in note


def test_real_photographs_against_the_haar_cascade():
    pytest.importorskip("skimage", reason="the reference faces are scikit-image's and matplotlib's photographs")
    fit = photo_fit()
    assert fit is not None and fit.faces >= 3
    assert 2.3 < fit.eye_side < 3.1 and 0.2 < fit.eye_drop < 0.4  # measured: 2.76 and 0.31
    assert keypoint_crop(CropConfig(), None).eye_side == CropConfig().eye_side  # no reference: the defaults


def test_no_face_found_is_a_dataset_error():
    blank = [np.full((240, 320, 3), 128, np.uint8)] * 4
    with pytest.raises(DatasetError, match="found only 0 of 4"):
        fit_eye_crop(blank, [(100, 60, 100, 100)] * 4, "blank frames")
