"""Offline vision demo: generated image tasks, a tiny CLIP vision backbone, LoRA fine-tuning and evaluation.

Submodules are imported explicitly (`loramerge.vision.tasks`, `.model`, `.train`, `.evaluate`) so that generating
data does not pay for importing transformers and peft.
"""
