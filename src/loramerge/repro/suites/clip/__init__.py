"""CLIP suites (the KnOTS ViT adapters): hub inputs, KnOTS splits, zero-shot text heads, evaluation."""
