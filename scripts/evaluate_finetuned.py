from loramerge.atomic import write_json
from loramerge.repro.heads import load_head
from loramerge.repro.jobs import job_log, pick_device
from loramerge.repro.splits import load_split
from loramerge.repro.suites.clip.evaluate import EvalTask, evaluate
from loramerge.repro.suites.clip.model import load_backbone, load_update

with job_log(snakemake.log[0], snakemake.params.threads) as log:
    device = pick_device(snakemake.params.device, log)
    task, adapter = snakemake.wildcards.task, snakemake.input.adapter
    head, _ = load_head(snakemake.input.head)
    tasks = [EvalTask(task, split, *load_split(snakemake.input[split])[:2], head) for split in ("val", "test")]
    model = load_backbone(snakemake.input.backbone, device)
    records = evaluate(model, tasks, [1.0], load_update(adapter), snakemake.params.batch_size, device, progress=True)
    for record in records:
        log.info("%s %s: %.4f", task, record["split"], record["accuracy"])
    finetuned = [{key: value for key, value in record.items() if key != "lam"} for record in records]
    write_json(snakemake.output[0], {"task": task, "records": finetuned})
