import torch

from loramerge.repro.jobs import job_log
from loramerge.repro.splits import save_token_split
from loramerge.repro.suites.demo_text.data import CLASS_NAMES, generate_mixture
from loramerge.repro.suites.demo_text.tokenizer import encode_pairs, load_tokenizer

with job_log(snakemake.log[0], snakemake.threads):
    params = snakemake.params
    pairs = generate_mixture(params.rules, params.pairs, params.seed)
    tokens = encode_pairs(load_tokenizer(snakemake.input[0]), pairs.premises, pairs.hypotheses, params.max_length)
    labels = torch.from_numpy(pairs.labels)
    save_token_split(snakemake.output[0], tokens, labels, CLASS_NAMES, {"seed": str(params.seed)})
