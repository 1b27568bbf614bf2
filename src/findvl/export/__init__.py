"""Export of the image encoder + interface + heads of one task to ONNX (:mod:`.onnx`)."""

from findvl.export.onnx import EXPORT_TASKS, export_graph, export_onnx, size_multiple

__all__ = ["EXPORT_TASKS", "export_graph", "export_onnx", "size_multiple"]
