"""Surrogate training: the CNN ensemble (:mod:`.model`) and the DDP trainer (:mod:`.trainer`).

Importing this package does not import torch; its modules do.
"""
