"""The training runner: the trainer and its collaborators, the train, sample and bench commands, and a
room per job (model/, data/, prepare/, checkpoint/, distributed/, hf/, metrics/).

Importing this package does not import torch; its modules do, when used.
"""
