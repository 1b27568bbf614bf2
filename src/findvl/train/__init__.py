"""Training building blocks: matching, losses, optimisation, checkpoints, logs, distribution.

Model-agnostic: everything works on plain tensors and ``nn.Module`` objects.
"""
