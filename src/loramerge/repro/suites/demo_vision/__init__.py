"""The offline vision demo: generated image tasks, a tiny CLIP vision tower pre-trained here, LoRA fine-tuning."""
