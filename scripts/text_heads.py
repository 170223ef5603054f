from loramerge.repro.heads import save_head
from loramerge.repro.jobs import job_log, pick_device
from loramerge.repro.suites.clip.zeroshot import load_clip, read_class_names, text_head

with job_log(snakemake.log[0], snakemake.threads) as log:
    device = pick_device(snakemake.params.device, log)
    class_names = read_class_names(snakemake.input.classnames)
    model, tokenizer = load_clip(snakemake.input.clip, device)
    head = text_head(model, tokenizer, class_names, snakemake.params.templates)
    log.info("%s: %d classes × %d", snakemake.wildcards.task, *head.shape)
    save_head(
        snakemake.output[0],
        head,
        class_names,
        {"task": snakemake.wildcards.task, "templates": snakemake.params.templates},
    )
