"""What every text suite shares (the Llama-3-8B NLI suite and the offline text demo): a Llama sequence classifier
whose last-token hidden state a task's `score` head scores, tokenised sentence pairs, masked classes."""
