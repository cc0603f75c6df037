"""A run folder's checkpoints (atomic, pruned, read with weights_only) and a trained run loaded back from them."""
