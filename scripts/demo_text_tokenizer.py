from loramerge.repro.jobs import job_log
from loramerge.repro.suites.demo_text.tokenizer import build_tokenizer, save_tokenizer

with job_log(snakemake.log[0]) as log:
    tokenizer = build_tokenizer()
    log.info("vocabulary: %d tokens", tokenizer.get_vocab_size())
    save_tokenizer(tokenizer, snakemake.output[0])
