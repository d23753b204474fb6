"""Face modality on the device: detection, crops, front-end, task API, camera and replay sources, pipeline."""
from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import numpy as np
import pytest

cv2 = pytest.importorskip("cv2", reason="the face modality needs opencv-python-headless (edgemer[camera])")

from edgemer.bundle import load_bundle  # noqa: E402
from edgemer.clock import MAX_SPEED  # noqa: E402
from edgemer.errors import (ConfigError, DatasetError, InputShapeError, ManifestError, ModelLoadError,  # noqa: E402
                            NoFaceError, SourceError)
from edgemer.frontends import create_front_end  # noqa: E402
from edgemer.frontends.face import (CropConfig, FaceExpressionRecognizer, FaceExpressionRecognizerOptions,  # noqa: E402
                                    RunningMode, configure_face_bundle, face_crop)
from edgemer.frontends.face_detector import (Detection, FaceDetectorOptions, FaceSelector, create_face_detector,  # noqa: E402
                                             iou)
from edgemer.pipeline import Pipeline, PipelineConfig  # noqa: E402
from edgemer.sources import source_from_spec  # noqa: E402
from edgemer.sources.camera import CameraOptions, CameraSource  # noqa: E402
from edgemer.sources.video_replay import VideoReplay  # noqa: E402
from edgemer.types import Window  # noqa: E402

ASTRONAUT_BOX = (177, 66, 95, 95)  # measured with OpenCV 4.14's frontal-face cascade (TOOLCHAIN.md)
HAAR = FaceDetectorOptions(model="haar")


def _skimage_image(name: str) -> np.ndarray:
    """A photograph bundled with scikit-image, read as [H, W, 3] uint8 BGR (no skimage import needed)."""
    import importlib.util

    spec = importlib.util.find_spec("skimage")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("scikit-image is not installed (pip install 'edgemer[dev]'); its photographs are the test faces")
    path = Path(list(spec.submodule_search_locations)[0]) / "data" / name
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    assert img is not None, path
    return img


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    return _skimage_image("astronaut.png")


@pytest.fixture(scope="module")
def face_demo():
    return load_bundle("face-demo")


@pytest.fixture
def image_dir(tmp_path, astronaut) -> Path:
    """astronaut (one face), a blank frame, a drawn face, and a broken file."""
    from edgemer.export.face.synth import draw_scene

    d = tmp_path / "frames"
    d.mkdir()
    cv2.imwrite(str(d / "01_astronaut.png"), astronaut)
    cv2.imwrite(str(d / "02_blank.png"), np.full((480, 640, 3), 128, np.uint8))
    img, _ = draw_scene("happy", np.random.default_rng(3))
    cv2.imwrite(str(d / "03_drawn.png"), img)
    (d / "04_broken.png").write_bytes(b"not an image")
    return d


# -- detection ---------------------------------------------------------------------------------------

def test_haar_detector_finds_the_one_face_in_astronaut(astronaut):
    faces = create_face_detector(HAAR).detect(astronaut)
    assert len(faces) == 1
    assert iou(faces[0].box, ASTRONAUT_BOX) > 0.8
    assert faces[0].landmarks is None  # Haar gives boxes only
    default = create_face_detector().detect(astronaut)  # BlazeFace: the same face, with six keypoints
    assert len(default) == 1 and iou(default[0].box, ASTRONAUT_BOX) > 0.6 and len(default[0].landmarks) == 6


def test_haar_finds_no_face_in_camera_png_or_a_blank_frame():
    det = create_face_detector(HAAR)
    assert det.detect(_skimage_image("camera.png")) == []
    assert det.detect(np.zeros((480, 640, 3), np.uint8)) == []
    assert det.detect(np.full((480, 640), 200, np.uint8)) == []  # grey frames are fine for detection


def test_bad_frames_raise_typed_errors():
    det = create_face_detector()
    with pytest.raises(InputShapeError, match="uint8"):
        det.detect(np.zeros((480, 640, 3), np.float32))
    with pytest.raises(InputShapeError, match="alpha"):
        det.detect(np.zeros((480, 640, 4), np.uint8))
    with pytest.raises(ConfigError, match="min_face_px"):
        FaceDetectorOptions(min_face_px=2)
    with pytest.raises(ModelLoadError, match="not found"):
        create_face_detector(FaceDetectorOptions(model="/nonexistent/yunet.onnx"))


def test_tracked_selection_follows_the_face_it_chose():
    small, big = Detection((10, 10, 50, 50)), Detection((300, 100, 120, 120))
    sel = FaceSelector("tracked")
    assert sel.select([small]) is small
    assert sel.select([Detection((12, 11, 50, 50)), big]).box == (12, 11, 50, 50)  # stays on the tracked face
    assert FaceSelector("largest").select([small, big]) is big
    assert sel.select([]) is None and sel.select([small, big]) is big  # lost: back to the largest


def _astronaut_at(astronaut: np.ndarray, dx: int, dy: int = 40) -> np.ndarray:
    """A 640x480 frame with the astronaut photograph (shrunk to 400x400) at column ``dx``, row ``dy``."""
    frame = np.full((480, 640, 3), 120, np.uint8)
    frame[dy:dy + 400, dx:dx + 400] = cv2.resize(astronaut, (400, 400))
    return frame


def test_near_search_finds_the_face_around_its_last_box_in_frame_pixels(astronaut):
    from edgemer.frontends.face_detector import detect_near, near_search_detector

    frame = _astronaut_at(astronaut, 100)
    whole = create_face_detector(HAAR).detect(frame)
    assert len(whole) == 1
    near = near_search_detector(HAAR)
    moved = _astronaut_at(astronaut, 112, 46)  # the face moved 12 px right, 6 px down
    found = detect_near(near, moved, whole[0])
    expected = create_face_detector(HAAR).detect(moved)[0]
    assert len(found) == 1 and iou(found[0].box, expected.box) > 0.7
    assert detect_near(near, np.full((480, 640, 3), 120, np.uint8), whole[0]) == []  # the face left: nothing near
    assert detect_near(near, moved, Detection((600, 400, 500, 500))) == []  # region past the frame edge


@pytest.mark.parametrize("model", ["blazeface", "haar"])
def test_tracked_preprocessor_searches_near_the_face_and_the_whole_frame_every_n_frames(astronaut, model):
    from edgemer.frontends.face import FaceFrontEndConfig, FacePreprocessor

    options = FaceDetectorOptions(model=model)
    pre = FacePreprocessor(FaceFrontEndConfig(selection="tracked", full_search_every=3, detector=options))
    searches = [pre.locate(_astronaut_at(astronaut, 140 + 2 * i)).search for i in range(7)]
    assert searches == ["frame", "near", "near", "frame", "near", "near", "frame"]
    jumped = pre.locate(_astronaut_at(astronaut, 20))  # far from its last box: the whole frame is searched
    assert jumped.search == "frame" and iou(jumped.detection.box, create_face_detector(options).detect(
        _astronaut_at(astronaut, 20))[0].box) > 0.9
    with pytest.raises(NoFaceError):
        pre.locate(np.full((480, 640, 3), 120, np.uint8))
    assert pre.locate(_astronaut_at(astronaut, 100)).search == "frame"  # after a lost face: whole frame
    largest = FacePreprocessor(FaceFrontEndConfig(selection="largest", detector=options))
    assert {largest.locate(_astronaut_at(astronaut, 140 + 2 * i)).search for i in range(3)} == {"frame"}
    with pytest.raises(ConfigError, match="full_search_every"):
        FaceFrontEndConfig(full_search_every=0)


def _yunet_like_onnx(path: Path) -> Path:
    """A tiny YuNet-format detector: face score = bright patches; fixed box/landmark offsets."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    nodes, inits, outputs = [], [], []
    channels = {"cls": 1, "obj": 1, "bbox": 4, "kps": 10}
    for s in (8, 16, 32):
        nodes.append(helper.make_node("AveragePool", ["input"], [f"pool_{s}"], kernel_shape=[s, s], strides=[s, s]))
        for kind, c in channels.items():
            w = np.zeros((c, 3, 1, 1), np.float32)
            b = np.zeros(c, np.float32)
            if kind in ("cls", "obj"):
                w[:] = 0.1
                b[:] = -40.0
            elif kind == "bbox":
                b[:] = [0.5, 0.5, np.log(3.0), np.log(3.0)]
            else:
                b[:] = [0.3, 0.3, 0.7, 0.3, 0.5, 0.5, 0.3, 0.7, 0.7, 0.7]
            inits += [numpy_helper.from_array(w, f"w_{kind}_{s}"), numpy_helper.from_array(b, f"b_{kind}_{s}")]
            conv = f"conv_{kind}_{s}"
            nodes.append(helper.make_node("Conv", [f"pool_{s}", f"w_{kind}_{s}", f"b_{kind}_{s}"], [conv]))
            src = conv
            if kind in ("cls", "obj"):
                nodes.append(helper.make_node("Sigmoid", [conv], [conv + "_sig"]))
                src = conv + "_sig"
            nodes.append(helper.make_node("Transpose", [src], [src + "_t"], perm=[0, 2, 3, 1]))
            inits.append(numpy_helper.from_array(np.array([1, -1, c], np.int64), f"shape_{kind}_{s}"))
            nodes.append(helper.make_node("Reshape", [src + "_t", f"shape_{kind}_{s}"], [f"{kind}_{s}"]))
            outputs.append(helper.make_tensor_value_info(f"{kind}_{s}", TensorProto.FLOAT, [1, None, c]))
    order = [f"{k}_{s}" for k in ("cls", "obj", "bbox", "kps") for s in (8, 16, 32)]
    outputs.sort(key=lambda o: order.index(o.name))
    graph = helper.make_graph(nodes, "yunet_like", [helper.make_tensor_value_info("input", TensorProto.FLOAT,
                                                                                  [1, 3, None, None])],
                              outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def test_onnx_detector_through_onnxruntime_matches_opencv_facedetectoryn(tmp_path):
    model = _yunet_like_onnx(tmp_path / "yunet_like.onnx")
    frame = np.zeros((240, 320, 3), np.uint8)
    frame[64:128, 96:160] = 255  # one bright "face"
    opts = FaceDetectorOptions(model=str(model), min_face_px=8, input_size=(320, 240), score_threshold=0.5)
    ours = create_face_detector(opts).detect(frame)
    theirs = create_face_detector(FaceDetectorOptions(**{**opts.to_dict(), "engine": "opencv",
                                                         "input_size": (320, 240)})).detect(frame)
    assert ours and len(ours) == len(theirs)
    for a, b in zip(sorted(ours, key=lambda d: d.box), sorted(theirs, key=lambda d: d.box)):
        assert np.allclose(a.box, b.box, atol=1e-3) and abs(a.score - b.score) < 1e-4
        assert np.allclose(a.landmarks, b.landmarks, atol=1e-3)
    with pytest.raises(ModelLoadError, match="not a YuNet-format"):
        import onnx
        from onnx import TensorProto, helper

        g = helper.make_graph([helper.make_node("Identity", ["input"], ["out"])], "x",
                              [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 32, 32])],
                              [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 3, 32, 32])])
        m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
        m.ir_version = 8
        onnx.save(m, str(tmp_path / "other.onnx"))
        create_face_detector(FaceDetectorOptions(model=str(tmp_path / "other.onnx")))


# -- crops and front-end -----------------------------------------------------------------------------

def test_crops_follow_the_manifest_size_and_colour(astronaut):
    det = Detection(ASTRONAUT_BOX)
    assert face_crop(astronaut, det, CropConfig(size=(48, 48))).shape == (48, 48)
    assert face_crop(astronaut, det, CropConfig(size=(64, 64), colour="rgb")).shape == (64, 64, 3)
    edge = face_crop(astronaut, Detection((-40, -40, 100, 100)), CropConfig())  # past the frame: edge pixels
    assert edge.shape == (64, 64)
    grey = cv2.cvtColor(astronaut, cv2.COLOR_BGR2GRAY)
    with pytest.raises(InputShapeError, match="grey frame"):
        face_crop(grey, det, CropConfig(colour="rgb"))
    # eyes alignment: a tilted landmark pair rotates the crop, a level one does not
    lm_level = ((200, 100), (250, 100), (225, 120), (205, 140), (245, 140))
    a = face_crop(astronaut, Detection(ASTRONAUT_BOX, landmarks=lm_level), CropConfig(align="eyes"))
    b = face_crop(astronaut, det, CropConfig())
    assert np.array_equal(a, b)


def test_crop_blurs_only_the_region_it_reads_with_the_whole_frame_result(astronaut):
    """Shrinking crops blur just the part of the frame the warp reads; the pixels are those a
    whole-frame blur gives (at the frame's edges too)."""
    import math

    def whole_frame_crop(image, det, crop):  # the reference: blur the whole frame, then warp
        conversions = {"grey": cv2.COLOR_BGR2GRAY, "rgb": cv2.COLOR_BGR2RGB}
        src = cv2.cvtColor(image, conversions[crop.colour]) if crop.colour in conversions else image
        x, y, w, h = det.box
        cx, cy, side = x + w / 2, y + h / 2, max(w, h) * (1 + 2 * crop.margin)
        (rx, ry), (lx, ly) = det.landmarks[0], det.landmarks[1]
        t = math.atan2(ly - ry, lx - rx) if crop.align == "eyes" else 0.0
        sx, sy = crop.size[0] / side, crop.size[1] / side
        m = np.array([[sx * math.cos(t), sx * math.sin(t), 0.0], [-sy * math.sin(t), sy * math.cos(t), 0.0]])
        m[0, 2] = crop.size[0] / 2 - (m[0, 0] * cx + m[0, 1] * cy)
        m[1, 2] = crop.size[1] / 2 - (m[1, 0] * cx + m[1, 1] * cy)
        if side / max(crop.size) > 2.0:
            src = cv2.GaussianBlur(src, (0, 0), 0.4 * side / max(crop.size))
        return cv2.warpAffine(src, m, crop.size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)

    rng = np.random.default_rng(5)
    for k in range(40):  # 512x512 frame, faces 90-200 px (shrunk > 2x) anywhere, past the edges too, tilted or not
        s = float(rng.uniform(90, 200))
        x, y = float(rng.uniform(-s / 2, 512 - s / 2)), float(rng.uniform(-s / 2, 512 - s / 2))
        lm = ((x + 0.3 * s, y + 0.35 * s), (x + 0.7 * s, y + 0.35 * s + float(rng.uniform(-15, 15))),
              (0, 0), (0, 0), (0, 0))
        det = Detection((x, y, s, s), landmarks=lm)
        crop = CropConfig(size=(48, 48), colour=("grey", "rgb", "bgr")[k % 3], align=("none", "eyes")[k % 2])
        assert np.array_equal(face_crop(astronaut, det, crop), whole_frame_crop(astronaut, det, crop)), (k, det)


def _window(frame: np.ndarray) -> Window:
    return Window(t_end=1.0, length_s=0.2, streams={"video": frame[None]}, coverage={"video": 1.0})


def test_front_end_reads_a_face_and_reports_no_face_as_typed_error(face_demo, astronaut):
    fe = create_front_end(face_demo.manifest)
    assert fe.modality == "face" and fe.streams[0].frames and fe.hop_s == pytest.approx(0.2)
    feeds, info = fe.prepare(_window(astronaut))
    assert feeds["image"].shape == (1, 1, 48, 48) and info["faces"] == 1
    est = fe.interpret({"logits": np.zeros((1, 7), np.float32)}, 1.0, "face-demo")
    assert sum(est.probabilities.values()) == pytest.approx(1.0) and est.extras["face"]["box"]
    with pytest.raises(NoFaceError) as exc:
        fe.prepare(_window(np.full((480, 640, 3), 90, np.uint8)))
    assert exc.value.reason == "no face"


def test_manifest_crop_that_does_not_fit_the_model_is_refused(face_demo, tmp_path):
    dst = tmp_path / "b"
    shutil.copytree(face_demo.path, dst)
    m = json.loads((dst / "manifest.json").read_text())
    m["front_end"]["crop"]["size"] = [64, 64]
    (dst / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(ManifestError, match="crop size must match the model"):
        create_front_end(load_bundle(dst).manifest)
    # manifest and crop agree on 64x64, but the model file takes 48x48: the backend refuses it
    m["inputs"][0]["shape"] = [1, 1, 64, 64]
    (dst / "manifest.json").write_text(json.dumps(m))
    from edgemer.backends import open_session

    for backend in ("onnxruntime", "litert"):
        with pytest.raises(ModelLoadError, match="does not fit"):
            open_session(load_bundle(dst), backend, "int8")


def test_task_api_image_and_video_modes(face_demo, astronaut):
    with FaceExpressionRecognizer.create_from_options(FaceExpressionRecognizerOptions(bundle=face_demo)) as rec:
        r = rec.recognize(astronaut)
        assert not r.no_face and r.expression in face_demo.manifest.labels and r.timestamp_ms is None
        assert iou(r.face.box, ASTRONAUT_BOX) > 0.6 and sum(r.probabilities.values()) == pytest.approx(1.0)
        blank = rec.recognize(np.zeros((480, 640, 3), np.uint8))
        assert blank.no_face and blank.expression is None and blank.probabilities == {}
        # IMAGE mode reads every image on its own: a close-up read twice gives the same face, though
        # in a video the detector would try its short range first after such a large face
        x, y, w, h = ASTRONAUT_BOX
        close_up = np.ascontiguousarray(astronaut[0:int(y + 2 * h), max(0, int(x - w)):int(x + 2 * w)])
        first, again = rec.recognize(close_up), rec.recognize(close_up)
        assert not first.no_face and again.face == first.face and again.probabilities == first.probabilities
        with pytest.raises(ConfigError):
            rec.recognize_for_video(astronaut, 0)
    opts = FaceExpressionRecognizerOptions(bundle=face_demo, running_mode=RunningMode.VIDEO, backend="litert")
    with FaceExpressionRecognizer.create_from_options(opts) as rec:
        assert rec.recognize_for_video(astronaut, 100).timestamp_ms == 100
        with pytest.raises(InputShapeError, match="increase"):
            rec.recognize_for_video(astronaut, 100)


# -- sources -----------------------------------------------------------------------------------------

class FakeCapture:
    """cv2.VideoCapture stand-in: frames at ``fps``, optional stall and failed reads."""

    def __init__(self, frame: np.ndarray, fps: float = 30.0, opened: bool = True, stall_after: int | None = None,
                 stall_s: float = 0.0, fail_reads: int = 0) -> None:
        self.frame, self.fps, self.opened = frame, fps, opened
        self.stall_after, self.stall_s, self.fail_reads = stall_after, stall_s, fail_reads
        self.reads = 0
        self.props: dict[int, float] = {}
        self.released = False

    def isOpened(self) -> bool:
        return self.opened

    def set(self, prop: int, value: float) -> bool:
        self.props[prop] = value
        return True

    def get(self, prop: int) -> float:
        return self.fps if prop == 5 else self.props.get(prop, 0.0)

    def read(self):
        self.reads += 1
        time.sleep(1.0 / self.fps)
        if self.stall_after is not None and self.reads == self.stall_after:
            time.sleep(self.stall_s)
        if 1 < self.reads <= 1 + self.fail_reads:
            return False, None
        return True, self.frame.copy()

    def release(self) -> None:
        self.released = True


def test_camera_frames_run_at_the_analysis_rate_and_drops_are_counted(face_demo, astronaut):
    frame = cv2.resize(astronaut, (640, 480))
    cap = FakeCapture(frame, fps=30.0, stall_after=10, stall_s=0.2)
    cam = CameraSource(CameraOptions(index=0, fps=30), capture_factory=lambda i: cap, duration_s=1.4)
    estimates = []
    with Pipeline([cam], [face_demo]) as pipe:
        for e in pipe:
            estimates.append(e)
    h = cam.health()
    # A live camera runs on the wall clock, so these hold at any machine speed: the 0.2 s stall at 30 fps
    # loses ~6 frames (a busy machine reading late loses more, counted the same way) after 10 frames read.
    assert h["frames"] >= 10 and h["dropped_frames"] >= 4
    assert h["frame_size"] == [640, 480] and cap.props[3] == 640 and cap.released
    # ~30 camera frames per second, analysed at the bundle's 5 per second: one window per 0.2 s of the 1.4 s
    assert 4 <= len(estimates) <= 8
    # Every window holding a frame is analysed; a 0.2 s window can fall inside the 0.23 s stall (or inside
    # a longer wait of a starved camera thread), and then the modality is named missing for lack of frames.
    analysed = [e for e in estimates if e.available["face"]]
    assert analysed and all(e.absent["face"] in ("no data on 'video'", "source 'camera:0' ended")
                            for e in estimates if not e.available["face"])
    assert pipe.stats()["bundles"]["face-demo"]["windows"] == len(analysed)


def test_missing_or_busy_camera_raises_source_error_and_read_failures_are_counted(face_demo, astronaut):
    missing = CameraSource(CameraOptions(index=7), capture_factory=lambda i: FakeCapture(astronaut, opened=False))
    with pytest.raises(SourceError, match="camera 7: cannot open"):
        with Pipeline([missing], [face_demo]):
            pass
    flaky = FakeCapture(astronaut, fps=50, fail_reads=3)
    cam = CameraSource(CameraOptions(max_read_failures=10), capture_factory=lambda i: flaky, duration_s=0.5)
    with Pipeline([cam], [face_demo]) as pipe:
        pipe.wait()
    assert cam.health()["read_failures"] == 3 and cam.health()["reopens"] == 0
    assert CameraOptions.from_spec(":1:1280x720@15") == CameraOptions(index=1, width=1280, height=720, fps=15.0)
    with pytest.raises(ConfigError, match="camera"):
        CameraOptions.from_spec(":x")


def test_pipeline_replays_an_image_folder_and_reports_no_face(face_demo, image_dir):
    src = source_from_spec(f"replay:{image_dir}", speed=MAX_SPEED)  # lockstep: every frame reaches its window
    assert isinstance(src, VideoReplay) and src.kind == "images" and src.fps == 5.0
    with Pipeline([src], [face_demo]) as pipe:
        estimates = list(pipe)
    assert len(estimates) == 3
    astro, blank, drawn = estimates
    assert astro.available["face"] and astro.modalities["face"].extras["faces"] == 1
    assert sum(astro.probabilities.values()) == pytest.approx(1.0)
    assert not blank.available["face"] and blank.absent == {"face": "no face"} and blank.stress_probability is None
    # the detector's time counts, on its own line and inside the front-end's, also when it finds no face
    assert 0 < blank.detector_s <= blank.frontend_s and blank.inference_s == 0
    assert 0 < astro.detector_s < astro.frontend_s and astro.inference_s > 0
    assert "face" not in blank.modalities and blank.to_dict()["absent"] == {"face": "no face"}
    assert drawn.available["face"]
    assert src.health() == {"frames": 3, "unreadable_images": 1, "decode_failures": 0}
    stats = pipe.stats()["bundles"]["face-demo"]
    assert stats["empty_windows"] == 1 and stats["skipped_windows"] == 0


def test_a_face_pipeline_caps_opencvs_threads_unless_told_not_to(face_demo, image_dir):
    before = cv2.getNumThreads()
    try:
        cv2.setNumThreads(2)
        with Pipeline([source_from_spec(f"replay:{image_dir}", speed=MAX_SPEED)], [face_demo],
                      config=PipelineConfig(opencv_threads=None)) as pipe:
            assert len(list(pipe)) == 3
        assert cv2.getNumThreads() == 2  # None: OpenCV's setting left alone
        with Pipeline([source_from_spec(f"replay:{image_dir}", speed=MAX_SPEED)], [face_demo]) as pipe:
            assert cv2.getNumThreads() == 1  # the default: one thread, set when the pipeline starts
            estimates = list(pipe)
        assert len(estimates) == 3 and estimates[0].available["face"]
        with pytest.raises(ConfigError, match="opencv_threads"):
            PipelineConfig(opencv_threads=0)
    finally:
        cv2.setNumThreads(before)


def _write_clip(path: Path, image: np.ndarray) -> Path:
    """A 1 s MJPG video at 10 frames/s, 320x240, every frame ``image``."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (320, 240))
    for _ in range(10):
        writer.write(cv2.resize(image, (320, 240)))
    writer.release()
    return path


def test_video_file_replay_and_unreadable_inputs(face_demo, astronaut, tmp_path):
    path = _write_clip(tmp_path / "clip.avi", astronaut)
    src = source_from_spec(f"replay:{path}@5", speed=MAX_SPEED)
    assert src.kind == "video" and src.native_fps == pytest.approx(10.0) and src.fps == pytest.approx(5.0)
    with Pipeline([src], [face_demo]) as pipe:
        estimates = list(pipe)
    assert src.health()["frames"] == 5 and len(estimates) == 5
    (tmp_path / "bad.mp4").write_bytes(b"\x00" * 100)
    with pytest.raises(DatasetError, match="cannot open or decode"):
        VideoReplay(tmp_path / "bad.mp4")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="no images"):
        VideoReplay(tmp_path / "empty")
    (tmp_path / "one.png").write_bytes(b"junk")
    with pytest.raises(DatasetError, match="cannot read this image"):
        VideoReplay(tmp_path / "one.png")


def test_frames_are_never_written_and_video_cannot_be_recorded(face_demo, image_dir, tmp_path, monkeypatch):
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)
    before = set(os.listdir(tmp_path))
    with Pipeline([VideoReplay(image_dir, speed=8.0)], [face_demo]) as pipe:
        pipe.wait()
    assert list(work.iterdir()) == [] and set(os.listdir(tmp_path)) == before
    with pytest.raises(ConfigError, match="does not record camera frames"):
        Pipeline([VideoReplay(image_dir)], [face_demo], record=tmp_path / "rec", record_media=["video"])


def test_grey_frames_where_colour_is_expected_are_rejected_and_counted(face_demo):
    from edgemer.buffers import FrameBuffer
    from edgemer.types import Chunk

    buf = FrameBuffer(create_front_end(face_demo.manifest).streams[0], 0.2)
    assert not buf.push(Chunk("video", 5.0, 0.0, np.zeros((1, 48, 64), np.uint8)))
    assert buf.push(Chunk("video", 5.0, 0.0, np.zeros((1, 48, 64, 3), np.uint8)))
    assert buf.stats.rejected_chunks == 1
    frames, cov, _ = buf.window(0.2, 0.2)
    assert frames.shape == (1, 48, 64, 3) and cov == 1.0
    assert buf.window(0.6, 0.2)[1] == 0.0


def test_cli_runs_face_demo_on_an_image_folder(image_dir, tmp_path, capfd):
    from edgemer.cli import main

    jsonl = tmp_path / "estimates.jsonl"
    assert main(["run", "--bundle", "face-demo", "--source", f"replay:{image_dir}", "--speed", "max",
                 "--analysis-fps", "5", "--face-detector", "haar", "--face-selection", "tracked",
                 "--out", str(jsonl)]) == 0
    out = capfd.readouterr().out
    assert "SYNTHETIC" in out and "edgemer models build fer-mini-xception" in out
    rows = [json.loads(line) for line in jsonl.read_text().splitlines()]
    assert [r["absent"] for r in rows] == [{}, {"face": "no face"}, {}]
    assert [r["modalities"]["face"]["extras"]["face_search"] for r in (rows[0], rows[2])] == ["frame", "frame"]
    assert "done: 3 estimates" in out and "1 windows with nothing to analyse" in out
    assert "unreadable_images 1" in out


def test_a_video_file_or_camera_follows_the_face_and_an_image_folder_does_not(astronaut, image_dir, tmp_path):
    from edgemer.cli import main
    from edgemer.config import load_pipeline_file
    from edgemer.sources import is_continuous_video
    from edgemer.sources.camera import CameraOptions, CameraSource

    clip = _write_clip(tmp_path / "clip.avi", astronaut)
    assert is_continuous_video(CameraSource(CameraOptions()))  # not opened until started
    assert not is_continuous_video(VideoReplay(image_dir))

    def searches(*args: str) -> list[str]:
        jsonl = tmp_path / "estimates.jsonl"
        jsonl.unlink(missing_ok=True)
        assert main(["run", "--bundle", "face-demo", "--speed", "max", "--out", str(jsonl), *args]) == 0
        rows = [json.loads(line) for line in jsonl.read_text().splitlines()]
        return [r["modalities"]["face"]["extras"]["face_search"] for r in rows if "face" in r["modalities"]]

    # the same face in every frame of a video: searched whole once, then near its last box
    video = searches("--source", f"replay:{clip}@5")
    assert video[0] == "frame" and "near" in video[1:]
    # unrelated images: every frame searched whole (the bundle's 'largest'), unless asked
    assert set(searches("--source", f"replay:{image_dir}")) == {"frame"}
    assert searches("--source", f"replay:{clip}@5", "--face-selection", "largest") == ["frame"] * len(video)
    # pipeline files: the same default, and a face_selection in the file wins
    toml = tmp_path / "video.toml"
    toml.write_text(f'[[source]]\nspec = "replay:{clip}@5"\n[[bundle]]\nname = "face-demo"\n')
    [spec] = load_pipeline_file(toml).bundles
    assert create_front_end(spec.bundle.manifest).config.selection == "tracked"
    toml.write_text(toml.read_text() + 'face_selection = "largest"\n')
    [spec] = load_pipeline_file(toml).bundles
    assert create_front_end(spec.bundle.manifest).config.selection == "largest"


def test_run_time_face_options_change_only_the_loaded_manifest(face_demo):
    b = configure_face_bundle(face_demo, analysis_fps=2.0, detector="haar", selection="tracked")
    fe = create_front_end(b.manifest)
    assert fe.hop_s == pytest.approx(0.5) and fe.config.selection == "tracked"
    assert fe.config.full_search_every == 5  # older manifests have no such key: the default
    assert load_bundle("face-demo").manifest.front_end["analysis_fps"] == 5.0
    with pytest.raises(ConfigError, match="not a face bundle"):
        configure_face_bundle(load_bundle("physio-demo"), analysis_fps=2.0)


def test_face_benchmark_writes_stage_timings_that_the_report_renders(tmp_path, capsys):
    from edgemer.benchmarks.face_bench import fer_targets, main
    from edgemer.benchmarks.report import collect_results, markdown_report

    assert main(["--frames", "4", "--detector-repeats", "2", "--json", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "panning video" in out and "[2-3] skipped" in out
    assert "tracked search, blazeface short" in out and "haar (OpenCV" in out
    [path] = tmp_path.glob("*_face_*.json")
    result = json.loads(path.read_text())
    stages = result["stages"]["face-demo"]
    assert result["kind"] == "face" and result["fer"] is None
    targets = {t["id"]: t for t in result["targets"]}
    assert set(targets) == {"detector_recall_real_faces", "detector_false_faces", "detector_speed_vs_haar",
                            "detector_tracked_ms"}
    # speed targets depend on the machine; recall and false faces do not
    assert targets["detector_recall_real_faces"]["met"] and targets["detector_false_faces"]["value"] == 0
    for target in targets.values():
        assert f"{'PASS' if target['met'] else 'FAIL'}  {target['description']}" in out
    assert stages["image"]["mode"] == "image" and stages["video"]["mode"] == "video"
    for run in stages.values():
        assert run["frames"] == 4 and run["total"]["p50_ms"] >= run["detect"]["p50_ms"] > 0
    report = markdown_report(collect_results(tmp_path))
    assert "**Face modality**" in report and "| face-demo | panning video, tracked |" in report

    fer = {"agreement": {"real photographs (all)": {"int8-onnx": 0.995}}, "speed_ratio": 0.5}
    agreement, speed = fer_targets(fer)
    assert (agreement["met"], speed["met"], speed["value"]) == (True, False, 0.5)
    no_photos = fer_targets({"agreement": {}, "speed_ratio": 2.5})
    assert no_photos[0]["met"] is None and "skipped" in no_photos[0]["description"] and no_photos[1]["met"] is True
