"""edgemer bench cpu: how py-spy samples are put into the breakdown's categories (no profiler run)."""
from __future__ import annotations

from edgemer.benchmarks.cpu_profile import DETECTOR, categorise, parse_raw

WORK = "_work (/x/edgemer/pipeline.py:533)"
RUN = "run (/x/edgemer/pipeline.py:185)"


def test_the_detectors_model_runs_count_as_the_detector_not_as_inference():
    detector_inference = [WORK, RUN, "detect (/x/edgemer/frontends/face_detector.py:481)",
                          "search (/x/edgemer/frontends/blazeface.py:349)",
                          "run (/x/edgemer/backends/litert_backend.py:124)",
                          "invoke (/y/ai_edge_litert/interpreter.py:1015)"]
    letterbox = [WORK, RUN, "tensor (/x/edgemer/frontends/blazeface.py:333)",
                 "resample_square (/x/edgemer/frontends/image_np.py:79)"]
    bundle_inference = [WORK, RUN, "run (/x/edgemer/backends/litert_backend.py:124)",
                        "__call__ (/y/ai_edge_litert/interpreter.py:261)"]
    crop = [WORK, RUN, "locate (/x/edgemer/frontends/face.py:376)", "face_crop (/x/edgemer/frontends/face.py:281)"]
    assert categorise(detector_inference) == DETECTOR
    assert categorise(letterbox) == DETECTOR
    assert categorise(bundle_inference) == "inference"
    assert categorise(crop) == "front-end face"
    waiting = detector_inference[:3] + ["wait (/usr/lib/python3.11/threading.py:331)", "Condition.wait (x)"]
    assert categorise(waiting) == "blocked"


def test_raw_stacks_are_counted_per_category():
    raw = ("thread (0x1);" + ";".join([WORK, RUN, "run (/x/edgemer/backends/litert_backend.py:124)"]) + " 7\n"
           "thread (0x1);" + ";".join([WORK, "detect (/x/edgemer/frontends/face_detector.py:481)",
                                      "run (/x/edgemer/backends/litert_backend.py:124)"]) + " 5\n")
    assert parse_raw(raw) == {"inference": 7, DETECTOR: 5}
