"""The offline text demo: generated sentence-pair tasks, a word-level tokenizer and a tiny Llama sequence classifier
pre-trained here, one LoRA adapter (with its `score` head) per task."""
