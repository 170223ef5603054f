"""The Llama NLI suites (kind `llama_nli`): the KnOTS Llama-3-8B NLI adapters on the gated base model, each task's
`score` head, and the six NLI datasets split and tokenised as the KnOTS protocol does (`config/paper-llama3-8b.yaml`;
dataset choices in `config/llama3-8b/DATASETS.md`)."""
