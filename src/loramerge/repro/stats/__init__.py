"""Per-task statistics for the data-using merges (RegMean's Gram matrices, Fisher merging's diagonal Fisher),
collected through hooks on the LoRA-targeted linear layers of each fine-tuned model, whatever the modality.

- `needs`: which statistics kind the planned merges read, and whether the suite can provide it (torch-free);
- `hooks`: the forward hooks (Gram of each module's inputs, output gradients for the Fisher);
- `subset`: the seeded subset of a task's training inputs, and its digest;
- `collect`: one task's statistics of one kind on its fine-tuned model (the Gram products, the Fisher estimators).
"""
