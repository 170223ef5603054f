from loramerge.repro.jobs import job_log, pick_device
from loramerge.repro.splits import load_token_split
from loramerge.repro.suites.demo_text.tokenizer import load_tokenizer
from loramerge.repro.suites.demo_text.train import build_backbone, pretrain, save_backbone

params = snakemake.params
# The thread count changes float reduction order, hence the weights: it comes from the config, not the scheduler.
with job_log(snakemake.log[0], params.pretrain["threads"]) as log:
    device = pick_device(params.device, log)
    tokenizer = load_tokenizer(snakemake.input.tokenizer)
    tokens, labels, class_names = load_token_split(snakemake.input.pairs)
    model = build_backbone(params.backbone, tokenizer, params.max_length, len(class_names), params.seed)
    stats = pretrain(model, tokens, labels, params.pretrain, params.seed, device=device)
    log.info("pretraining: %s", stats)
    save_backbone(model.cpu(), tokenizer, snakemake.output[0])
