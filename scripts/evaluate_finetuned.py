from loramerge.apply import load_update
from loramerge.atomic import write_json
from loramerge.repro.heads import load_head
from loramerge.repro.jobs import job_log, pick_device, reading_inputs
from loramerge.repro.suites.base import suite_class
from loramerge.repro.suites.evaluation import EvalTask, evaluate

params = snakemake.params
with job_log(snakemake.log[0], params.threads) as log:
    suite = suite_class(params.kind)
    device = pick_device(params.device, log)
    task, adapter = snakemake.wildcards.task, snakemake.input.adapter
    masked = tuple(params.masked)
    with reading_inputs(params.made_by):
        head, _ = load_head(snakemake.input.head)
        tasks = [
            EvalTask(task, split, *suite.load_inputs(snakemake.input[split])[:2], head, masked)
            for split in ("val", "test")
        ]
        model = suite.load_backbone(snakemake.input.backbone, device, params.dtype)
        update = load_update(adapter)
    records = evaluate(suite, model, tasks, [1.0], update, params.batch_size, device, progress=True)
    for record in records:
        log.info("%s %s: %.4f", task, record["split"], record["accuracy"])
    finetuned = [{key: value for key, value in record.items() if key != "lam"} for record in records]
    write_json(snakemake.output[0], {"task": task, "records": finetuned})
