"""CLIP suites (kind `clip`, the KnOTS ViT adapters): the suite class, the CLIP vision tower, hub inputs and KnOTS
splits, zero-shot text heads."""
