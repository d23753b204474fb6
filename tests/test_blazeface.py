"""BlazeFace detectors shipped in edgemer: anchors, decoding, NMS, keypoints, parity, alignment, errors.

Real faces are the photographs scikit-image and matplotlib ship, transformed as issue 18
describes (edgemer.benchmarks.detector_bench builds the frames).
"""
from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys

import numpy as np
import pytest

cv2 = pytest.importorskip("cv2", reason="building the test frames needs opencv-python-headless (edgemer[camera])")
pytest.importorskip("skimage", reason="the test faces are scikit-image's photographs (pip install 'edgemer[dev]')")

from edgemer.benchmarks import detector_bench as bench  # noqa: E402
from edgemer.errors import ConfigError, IntegrityError, ManifestError, ModelLoadError  # noqa: E402
from edgemer.frontends import blazeface  # noqa: E402
from edgemer.frontends.face import CropConfig, crop_square, face_crop  # noqa: E402
from edgemer.frontends.face_detector import (BlazeFaceDetector, Detection, FaceDetectorOptions,  # noqa: E402
                                             create_face_detector, iou)

ASTRONAUT_BOX = bench.REFERENCE_BOXES["astronaut"]
HAS_LITERT = blazeface.default_engine() == "litert"


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    return bench._read("skimage", "data/astronaut.png")


@pytest.fixture(scope="module")
def full() -> blazeface.BlazeFaceModel:
    return blazeface.BlazeFaceModel(blazeface.FULL, "onnxruntime")


# -- anchors, decoding, NMS ---------------------------------------------------------------------------

def test_anchors_follow_mediapipes_ssd_layout():
    short = blazeface.BlazeFaceModel(blazeface.SHORT, "onnxruntime").spec
    a = blazeface.ssd_anchors(short)
    assert a.shape == (896, 2) and short.num_anchors == 896
    # stride 8: a 16x16 grid, two anchors per cell, row by row; then stride 16: 8x8, six per cell
    assert np.allclose(a[0], a[1]) and np.allclose(a[0], [0.5 / 16, 0.5 / 16]) and np.allclose(a[2], [1.5 / 16, 0.5 / 16])
    assert np.allclose(a[512:518], [0.5 / 8, 0.5 / 8]) and np.allclose(a[-1], [7.5 / 8, 7.5 / 8])
    f = blazeface.ssd_anchors(blazeface.BlazeFaceModel(blazeface.FULL, "onnxruntime").spec)
    assert f.shape == (2304, 2) and np.allclose(f[48], [0.5 / 48, 1.5 / 48])


def _reference_decode(reg, logits, anchors, side, threshold):
    """The decoding written out per anchor (the test's oracle for the vectorised decode)."""
    out = []
    for i in range(len(anchors)):
        score = 1 / (1 + math.exp(-max(-100.0, min(100.0, float(logits[i])))))
        if score < threshold:
            continue
        ax, ay = anchors[i]
        cx, cy = reg[i, 0] / side + ax, reg[i, 1] / side + ay
        w, h = reg[i, 2] / side, reg[i, 3] / side
        kps = [(reg[i, 4 + 2 * k] / side + ax, reg[i, 5 + 2 * k] / side + ay) for k in range(6)]
        out.append(((cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2), score, kps))
    return out


def test_decoding_the_tflite_models_own_outputs_finds_the_astronauts_face(astronaut):
    """Raw outputs of the shipped TFLite file (run by LiteRT itself when installed, else the ONNX
    file) decoded by edgemer and by a per-anchor loop agree, and land on the known face box."""
    model = blazeface.BlazeFaceModel(blazeface.FULL, "litert" if HAS_LITERT else "onnxruntime")
    square = blazeface.Square.whole_frame(astronaut.shape[1], astronaut.shape[0])
    if HAS_LITERT:
        from ai_edge_litert.interpreter import Interpreter

        interp = Interpreter(model_path=str(model.bundle.model_path("tflite", "fp32")))
        interp.allocate_tensors()
        interp.set_tensor(interp.get_input_details()[0]["index"], model.tensor(astronaut, square))
        interp.invoke()
        reg, logits = (interp.get_tensor(d["index"]) for d in interp.get_output_details())
        reg, logits = reg.reshape(2304, 16), logits.reshape(-1)
    else:
        reg, logits = model.run(model.tensor(astronaut, square))
    boxes, scores, kps = blazeface.decode(reg, logits, model.anchors, model.spec, 0.3)
    ref = _reference_decode(reg, logits, model.anchors, 192.0, 0.3)
    assert len(ref) == len(boxes) >= 2  # several anchors see the face before NMS
    for (rb, rs, rk), b, s, k in zip(ref, boxes, scores, kps):
        assert np.allclose(rb, b, atol=1e-5) and abs(rs - s) < 1e-5 and np.allclose(rk, k, atol=1e-5)
    xywh, faces, marks = model.search(astronaut, square, 0.5)
    assert len(faces) == 1 and faces[0] > 0.9
    assert iou(tuple(xywh[0]), ASTRONAUT_BOX) > 0.6
    # weighted NMS: the face is the score-weighted mean of the overlapping candidates, in frame pixels
    boxes, scores = boxes[scores >= 0.5], scores[scores >= 0.5]
    w = scores[:, None]
    group = blazeface.box_iou(boxes[np.argmax(scores)], boxes) > model.spec.nms_iou
    merged = (boxes[group] * w[group]).sum(0) / w[group].sum()
    assert np.allclose(square.to_frame(merged.reshape(2, 2)).reshape(-1)[:2], xywh[0, :2], atol=1e-3)


def test_weighted_nms_merges_overlapping_candidates_with_score_weights():
    boxes = np.array([[0.1, 0.1, 0.3, 0.3], [0.12, 0.1, 0.32, 0.3], [0.6, 0.6, 0.8, 0.8], [0.5, 0.1, 0.52, 0.12]],
                     np.float32)
    scores = np.array([0.9, 0.6, 0.7, 0.55], np.float32)
    kps = np.repeat(boxes[:, None, :2], 6, axis=1)
    b, s, k = blazeface.weighted_nms(boxes, scores, kps, 0.3, max_faces=10)
    assert s.tolist() == pytest.approx([0.9, 0.7, 0.55])
    assert np.allclose(b[0], (0.9 * boxes[0] + 0.6 * boxes[1]) / 1.5) and np.allclose(b[1], boxes[2])
    assert np.allclose(k[0, 0], (0.9 * boxes[0, :2] + 0.6 * boxes[1, :2]) / 1.5)
    assert len(blazeface.weighted_nms(boxes, scores, kps, 0.3, max_faces=2)[1]) == 2
    assert blazeface.weighted_nms(boxes[:0], scores[:0], kps[:0], 0.3, 5)[0].shape == (0, 4)


def test_letterbox_maps_model_coordinates_back_to_frame_pixels():
    sq = blazeface.Square.whole_frame(640, 480)
    assert (sq.x0, sq.y0, sq.side) == (0.0, -80.0, 640.0)
    assert np.allclose(sq.to_frame(np.array([[0.5, 0.5], [0.0, 0.125]])), [[320, 240], [0, 0]])
    # a bright square in a dark frame lands where it was after the round trip through the letterbox
    frame = np.zeros((480, 640, 3), np.uint8)
    frame[200:280, 400:480] = 255
    from edgemer.frontends.image_np import resample_square

    x = resample_square(frame, sq.x0, sq.y0, sq.side, 192)[0]
    ys, xs = np.nonzero(x > 128)
    corners = sq.to_frame(np.array([[xs.min() / 192, ys.min() / 192], [(xs.max() + 1) / 192, (ys.max() + 1) / 192]]))
    assert np.allclose(corners, [[400, 200], [480, 280]], atol=4)


def test_letterbox_at_scale_1_copies_the_frame_and_both_layouts_hold_the_same_values():
    from edgemer.frontends.image_np import resample_square

    frame = np.random.default_rng(0).integers(0, 256, (144, 192, 3), dtype=np.uint8)
    sq = blazeface.Square.whole_frame(192, 144)  # side 192: every sample falls on a whole pixel
    x = resample_square(frame, sq.x0, sq.y0, sq.side, 192)
    assert x.shape == (3, 192, 192) and x.dtype == np.float32
    assert np.array_equal(x[:, 24:168], frame.transpose(2, 0, 1)) and not x[:, :24].any() and not x[:, 168:].any()
    assert np.array_equal(resample_square(frame, sq.x0, sq.y0, sq.side, 192, layout="hwc"), x.transpose(1, 2, 0))
    # a fractional square is interpolated; the layouts agree there too
    y = resample_square(frame, 10.3, -5.2, 100.0, 128, fill=7.0)
    assert np.array_equal(resample_square(frame, 10.3, -5.2, 100.0, 128, fill=7.0, layout="hwc"), y.transpose(1, 2, 0))
    assert (y[:, 0] == 7.0).all() and 0 < y[:, 10:].mean() < 255


# -- ONNX vs TFLite -------------------------------------------------------------------------------------

@pytest.mark.skipif(not HAS_LITERT, reason="LiteRT is not installed (pip install 'edgemer[tflite]')")
@pytest.mark.parametrize("name", blazeface.SHIPPED)
def test_onnx_and_tflite_files_agree_through_edgemers_backends(name, astronaut):
    onnx_m, lite_m = blazeface.BlazeFaceModel(name, "onnxruntime"), blazeface.BlazeFaceModel(name, "litert")
    frames = [astronaut] + [f.image for f in bench.astronaut_frames()[::5]]
    for frame in frames:
        sq = blazeface.Square.whole_frame(frame.shape[1], frame.shape[0])
        (ra, la), (rb, lb) = onnx_m.run(onnx_m.tensor(frame, sq)), lite_m.run(lite_m.tensor(frame, sq))
        assert np.abs(ra - rb).max() < 2e-3  # model-input pixels
        sig = lambda z: 1 / (1 + np.exp(-np.clip(z.astype(np.float64), -100, 100)))  # noqa: E731
        assert np.abs(sig(la) - sig(lb)).max() < 1e-4
    check = onnx_m.bundle.manifest.provenance["parity_onnx_vs_tflite"]
    assert check["passed"] and check["max_abs_diff"]["regressors_px"] < 1e-3


# -- real faces ---------------------------------------------------------------------------------------

def test_the_18_astronaut_frames_of_the_issue():
    frames = bench.astronaut_frames()
    assert len(frames) == 18
    default = create_face_detector(FaceDetectorOptions(engine="onnxruntime"))
    full_only = BlazeFaceDetector(FaceDetectorOptions(engine="onnxruntime"), blazeface.FULL)
    haar = create_face_detector(FaceDetectorOptions(model="haar", min_face_px=64))
    found = {name: sum(bench.found(d.detect(f.image), f) for f in frames)
             for name, d in (("default", default), ("full", full_only), ("haar", haar))}
    assert found["default"] == 18 and found["full"] >= 16 and found["haar"] <= 8, found


def test_recall_on_transformed_real_faces_and_no_face_on_face_free_photographs():
    det = create_face_detector(FaceDetectorOptions(engine="onnxruntime"))
    faces = [f for f in bench.face_frames() if f.frontal]
    assert len(faces) == 48
    recall = np.mean([bench.found(det.detect(f.image), f) for f in faces])
    assert recall >= 0.9
    free = bench.face_free_frames()
    assert len(free) == len(bench.FACE_FREE)
    assert {name: len(det.detect(img)) for name, img in free if det.detect(img)} == {}


def test_short_range_first_after_a_large_face_and_full_range_after_a_miss(monkeypatch, astronaut):
    det = BlazeFaceDetector(FaceDetectorOptions(engine="onnxruntime"))
    runs = {"full": 0, "short": 0}
    for key, model in (("full", det.model), ("short", det.confirm)):
        def counted(tensor, run=model.run, key=key):
            runs[key] += 1
            return run(tensor)
        monkeypatch.setattr(model, "run", counted)
    x, y, w, h = ASTRONAUT_BOX
    cx, cy, side = x + w / 2, y + h / 2, 3 * w
    top, left = max(0, int(cy - side / 2)), max(0, int(cx - side / 2))
    close_up = np.ascontiguousarray(astronaut[top:int(cy + side / 2), left:int(cx + side / 2)])
    covered = close_up.copy()
    covered[covered.shape[0] // 2:] = 0  # mouth and chin hidden: the short range scores it 0.70

    def detect(frame):
        before = dict(runs)
        faces = det.detect(frame)
        assert len(faces) == 1 and max(faces[0].box[2:]) >= 0.3 * max(frame.shape[:2]), faces  # the large face
        return runs["full"] - before["full"], runs["short"] - before["short"]

    assert detect(close_up)[0] == 1  # the first frame: full range
    assert detect(close_up) == (0, 1)  # a large face before: the short range alone, sure of it
    assert detect(covered)[0] == 1  # the short range unsure: full range too, the face still found
    assert detect(covered)[0] == 1  # after a short-range miss the next frame starts with the full range
    assert detect(close_up) == (0, 1)
    det.reset()
    assert detect(close_up)[0] == 1  # reset: full range first again


def test_keypoints_sit_where_eyes_nose_mouth_and_ears_are():
    det = create_face_detector(FaceDetectorOptions(engine="onnxruntime"))
    checked, upright = 0, {}
    frames = [f for f in bench.face_frames() if f.frontal and "covered" not in f.variant and "gain 0.5" not in f.variant]
    for f in sorted(frames, key=lambda f: "roll +0" not in f.variant):  # upright frames first
        [face] = [d for d in det.detect(f.image) if bench.found([d], f)]
        k = np.asarray(face.landmarks)
        roll = float(f.variant.split("roll ")[1].split()[0])
        # undo the frame's roll (counter-clockwise by `roll` degrees about the face centre)
        t = math.radians(roll)
        rot = np.array([[math.cos(t), -math.sin(t)], [math.sin(t), math.cos(t)]])
        u = (k - f.centre) @ rot.T
        right_eye, left_eye, nose, mouth, right_ear, left_ear = u
        assert right_eye[0] < left_eye[0]  # the subject's right eye is on the image's left
        eyes_y = (right_eye[1] + left_eye[1]) / 2
        assert eyes_y < nose[1] < mouth[1]  # eyes above the nose tip, above the mouth
        assert right_ear[0] < right_eye[0] and left_ear[0] > left_eye[0]  # tragions outside the eyes
        assert 0.25 < (left_eye[0] - right_eye[0]) / f.side < 0.6
        angle = math.degrees(math.atan2(k[1][1] - k[0][1], k[1][0] - k[0][0]))
        key = (f.photo, f.variant.split(" roll")[0])
        upright.setdefault(key, angle)
        # the eye line turns with the roll (image y points down); BlazeFace's eye keypoints follow it within
        # about 7 degrees on these faces (eye distances 18-65 px)
        assert abs(angle - (upright[key] - roll)) < 8
        checked += 1
    assert checked == 18


def _similarity(a: np.ndarray, b: np.ndarray) -> float:
    """Correlation of two grey crops after a small blur (tolerates a pixel of keypoint jitter)."""
    a, b = (cv2.GaussianBlur(x.astype(np.float32), (0, 0), 2) for x in (a, b))
    return float(np.corrcoef(a.ravel(), b.ravel())[0, 1])


@pytest.mark.parametrize("photo", ["astronaut", "grace_hopper"])
def test_keypoint_alignment_levels_the_eyes_and_scales_by_eye_distance(photo):
    det = create_face_detector(FaceDetectorOptions(engine="onnxruntime"))
    aligned = CropConfig(size=(64, 64), colour="grey", align="keypoints", eye_side=2.6, eye_drop=0.28)
    boxed = CropConfig(size=(64, 64), colour="grey")
    crops, upright = {}, {}
    frames = [f for f in bench.face_frames() if f.photo == photo and "gain 1.0" in f.variant]
    for f in sorted(frames, key=lambda f: "roll +0" not in f.variant):
        [face] = [d for d in det.detect(f.image) if bench.found([d], f)]
        cx, cy, side, angle = crop_square(face, aligned)
        roll = float(f.variant.split("roll ")[1].split()[0])
        base = upright.setdefault(f.variant.split(" roll")[0], angle)
        assert abs(angle - (base - roll)) < 8  # rotated back by the head's roll (keypoints: within ~7 degrees)
        (rx, ry), (lx, ly) = face.landmarks[:2]
        assert side == pytest.approx(2.6 * 1.2 * math.hypot(lx - rx, ly - ry))  # scaled by the eye distance
        crops[f.variant] = (face_crop(f.image, face, aligned), face_crop(f.image, face, boxed))
    assert len(crops) == 9
    # whatever the scale and roll, aligned crops show the face as the upright 90 % one does; box crops
    # of rolled faces do not
    ref_aligned, ref_box = crops["90% roll +0 gain 1.0"]
    for variant, (a, b) in crops.items():
        assert _similarity(a, ref_aligned) > 0.7, variant
        if "roll +0" not in variant:
            assert _similarity(a, ref_aligned) > _similarity(b, ref_box), variant


def test_alignment_falls_back_to_the_box_without_landmarks():
    crop = CropConfig(align="keypoints")
    x, y, w, h = ASTRONAUT_BOX
    assert crop_square(Detection(ASTRONAUT_BOX), crop) == (x + w / 2, y + h / 2, w * 1.2, 0.0)
    with pytest.raises(ConfigError, match="eye_side"):
        CropConfig(align="keypoints", eye_side=0.5)
    assert CropConfig.from_dict(crop.to_dict()) == crop


# -- choosing the detector, errors, no OpenCV ---------------------------------------------------------------

def test_detector_names_and_engines():
    assert FaceDetectorOptions().model == "blazeface" and FaceDetectorOptions().kind == "blazeface"
    assert FaceDetectorOptions(model="haar").kind == "haar" and FaceDetectorOptions(model="x.onnx").kind == "onnx"
    assert FaceDetectorOptions().min_face == 16 and FaceDetectorOptions(model="haar").min_face == 64
    d = create_face_detector(FaceDetectorOptions(model="blazeface-short", engine="onnxruntime"))
    assert "short range" in d.description and "onnxruntime" in d.description
    with pytest.raises(ConfigError, match="litert"):
        FaceDetectorOptions(model="haar", engine="litert")
    with pytest.raises(ConfigError, match="opencv"):
        FaceDetectorOptions(model="blazeface", engine="opencv")
    with pytest.raises(ModelLoadError, match="not found"):
        create_face_detector(FaceDetectorOptions(model="blazeface-tiny"))
    opts = FaceDetectorOptions.from_dict(FaceDetectorOptions(model="blazeface-full").to_dict())
    assert opts.model == "blazeface-full" and opts.min_face_px is None and opts.score_threshold is None


def test_corrupt_missing_or_foreign_detector_files_raise_typed_errors(tmp_path):
    src = blazeface.detectors_dir() / blazeface.SHORT
    folder = tmp_path / "short"
    shutil.copytree(src, folder)
    onnx_file = folder / "face_detection_short_range.onnx"
    data = bytearray(onnx_file.read_bytes())
    data[len(data) // 2] ^= 0xFF
    onnx_file.write_bytes(bytes(data))
    with pytest.raises(IntegrityError, match="sha256"):
        blazeface.BlazeFaceModel(str(folder), "onnxruntime")
    onnx_file.unlink()
    with pytest.raises(IntegrityError, match="missing"):
        create_face_detector(FaceDetectorOptions(model=str(folder)))
    # garbage whose sha256 the manifest records: the backend refuses it with a typed error
    onnx_file.write_bytes(b"not an onnx model")
    m = json.loads((folder / "manifest.json").read_text())
    from edgemer.bundle import file_entry

    m["files"][onnx_file.name] = file_entry(onnx_file)
    (folder / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(ModelLoadError, match="readable ONNX|onnxruntime cannot load"):
        blazeface.BlazeFaceModel(str(folder), "onnxruntime")
    m["front_end"]["anchors"]["layers"] = [{"stride": 8}]
    (folder / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(ManifestError, match="malformed BlazeFace front_end"):
        blazeface.BlazeFaceModel(str(folder), "onnxruntime")
    with pytest.raises(ManifestError, match="not a BlazeFace"):
        from edgemer.bundle import shipped_bundles_dir

        blazeface.load_detector_bundle(str(shipped_bundles_dir() / "physio-demo"))
    (folder / "manifest.json").unlink()
    with pytest.raises(ModelLoadError, match="not found"):
        blazeface.BlazeFaceModel(str(folder))


def test_blazeface_detects_without_opencv_and_haar_names_the_extra():
    code = (
        "import sys; sys.modules['cv2'] = None\n"
        "import numpy as np\n"
        "from edgemer.frontends.face_detector import create_face_detector, FaceDetectorOptions\n"
        "from edgemer.errors import MissingExtraError\n"
        "frame = np.zeros((480, 640, 3), np.uint8)\n"
        "print(len(create_face_detector(FaceDetectorOptions(engine='onnxruntime')).detect(frame)))\n"
        "try:\n"
        "    create_face_detector(FaceDetectorOptions(model='haar'))\n"
        "except MissingExtraError as e:\n"
        "    print('missing', e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    assert lines[0] == "0" and lines[1].startswith("missing") and "camera" in lines[1]


def test_run_time_detector_choice_resets_the_model_specific_settings():
    from edgemer.bundle import load_bundle
    from edgemer.frontends.face import FaceFrontEndConfig, configure_face_bundle

    b = configure_face_bundle(load_bundle("face-demo"), detector="blazeface-short")
    cfg = FaceFrontEndConfig.from_dict(b.manifest.front_end)
    assert cfg.detector.model == "blazeface-short" and cfg.detector.min_face_px is None
    assert cfg.detector.engine == "auto"
    with pytest.raises(ModelLoadError, match="blazeface-short or blazeface-full"):
        configure_face_bundle(load_bundle("face-demo"), detector="no-such-detector")
        create_face_detector(FaceDetectorOptions(model="no-such-detector"))
