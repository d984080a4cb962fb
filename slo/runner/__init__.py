"""The training runner: model, data, optimizer and schedule, checkpoints, trainer.

Importing this package does not import torch; its modules do, when used.
"""
