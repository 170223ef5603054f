from loramerge.repro.heads import save_head
from loramerge.repro.jobs import job_log, pick_device
from loramerge.repro.splits import load_split
from loramerge.repro.suites.demo_vision.train import finetune_lora, save_task_adapter

with job_log(snakemake.log[0], threads=1) as log:  # fixed: the thread count changes the trained weights
    settings, seed = snakemake.params.settings, snakemake.params.seed
    device = pick_device(snakemake.params.device, log)
    images, labels, class_names = load_split(snakemake.input.train)
    model, head, stats = finetune_lora(
        snakemake.input.backbone,
        images,
        labels,
        len(class_names),
        rank=settings["rank"],
        lora_alpha=settings["lora_alpha"],
        target_modules=settings["target_modules"],
        steps=settings["steps"],
        batch_size=settings["batch_size"],
        lr=settings["lr"],
        seed=seed,
        device=device,
    )
    log.info("fine-tuning %s: %s", snakemake.wildcards.task, stats)
    metadata = {"task": snakemake.wildcards.task, "seed": str(seed)}
    save_task_adapter(model, head, class_names, snakemake.output.adapter, metadata)
    save_head(snakemake.output.head, head, class_names, metadata)
