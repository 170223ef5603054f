from loramerge.atomic import write_json
from loramerge.jobs import job_log, pick_device
from loramerge.vision.evaluate import evaluate_adapter

with job_log(snakemake.log[0], snakemake.threads) as log:
    device = pick_device(snakemake.params.device, log)
    task = snakemake.wildcards.task
    splits = {"val": snakemake.input.val, "test": snakemake.input.test}
    records = evaluate_adapter(
        snakemake.input.backbone, snakemake.input.adapter, task, splits, snakemake.params.batch_size, device
    )
    for record in records:
        log.info("%s %s: %.4f", task, record["split"], record["accuracy"])
    write_json(snakemake.output[0], {"task": task, "records": records})
