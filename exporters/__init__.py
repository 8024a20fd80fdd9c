"""Model toolkit: fine-tune, export to ONNX, quantize, evaluate."""
