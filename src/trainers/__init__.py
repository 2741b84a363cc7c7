"""Training loops and the pieces they share (device, checkpoints, TensorBoard)."""
