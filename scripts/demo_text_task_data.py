import torch

from loramerge.repro.jobs import job_log
from loramerge.repro.splits import save_token_split
from loramerge.repro.suites.demo_text.data import CLASS_NAMES, generate_task
from loramerge.repro.suites.demo_text.tokenizer import encode_pairs, load_tokenizer

with job_log(snakemake.log[0], snakemake.threads):
    spec, seed = snakemake.params.spec, snakemake.params.seed
    tokenizer = load_tokenizer(snakemake.input[0])
    splits = ("train", "val", "test")
    task = generate_task(spec["rule"], {split: spec[split] for split in splits}, spec.get("masked", []), seed)
    for split in splits:
        pairs = task[split]
        tokens = encode_pairs(tokenizer, pairs.premises, pairs.hypotheses, snakemake.params.max_length)
        metadata = {"task": snakemake.wildcards.task, "split": split, "rule": spec["rule"], "seed": str(seed)}
        save_token_split(snakemake.output[split], tokens, torch.from_numpy(pairs.labels), CLASS_NAMES, metadata)
