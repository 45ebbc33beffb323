"""Import a TensorFlow Lite int8 / 16x8 model as a cnnforge-model/1 document (DESIGN §8)."""

from __future__ import annotations

#: The §4.1 rounding mode the importer writes for each (op, activation type), i.e. what the
#: pinned interpreter's reference kernel computes; tests/test_tflite_probe.py keeps it true.
ROUNDING = {
    ("CONV_2D", "int8"): "tflite_double",
    ("CONV_2D", "int16"): "tflite_int16",
    ("FULLY_CONNECTED", "int8"): "float64",
    ("FULLY_CONNECTED", "int16"): "float64",
    ("AVERAGE_POOL_2D", "int8"): "half_away",
    ("AVERAGE_POOL_2D", "int16"): "half_away",
    ("MEAN", "int8"): "tflite_double",
    ("MEAN", "int16"): "tflite_double",
}
