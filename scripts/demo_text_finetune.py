from loramerge.repro.heads import save_head
from loramerge.repro.jobs import job_log, pick_device
from loramerge.repro.splits import load_token_split
from loramerge.repro.suites.demo_text.train import adapter_head, finetune_lora, save_task_adapter

with job_log(snakemake.log[0], threads=1) as log:  # fixed: the thread count changes the trained weights
    settings, seed = snakemake.params.settings, snakemake.params.seed
    device = pick_device(snakemake.params.device, log)
    tokens, labels, class_names = load_token_split(snakemake.input.train)
    model, stats = finetune_lora(
        snakemake.input.backbone,
        tokens,
        labels,
        snakemake.params.masked,
        settings,
        target_modules=settings["target_modules"],
        seed=seed,
        device=device,
    )
    log.info("fine-tuning %s: %s", snakemake.wildcards.task, stats)
    save_task_adapter(model, snakemake.output.adapter)
    metadata = {"task": snakemake.wildcards.task, "seed": str(seed)}
    save_head(snakemake.output.head, adapter_head(model), class_names, metadata)
