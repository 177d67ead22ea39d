"""Running a network: on a device (:mod:`.device`), with onnxruntime (:mod:`.onnx`), exported (:mod:`.export`) and
quantized (:mod:`.quantize`)."""
