"""Scoring worker: model directory, tokenizer, ONNX Runtime session, micro-batching."""
