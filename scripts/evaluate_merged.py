from itertools import product
from pathlib import Path

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
    with reading_inputs(params.made_by):
        heads = {task: load_head(path)[0] for task, path in zip(params.tasks, snakemake.input.heads, strict=True)}
        tasks = []
        for (task, split), path in zip(product(params.tasks, params.splits), snakemake.input.data, strict=True):
            inputs, labels, _ = suite.load_inputs(path)
            tasks.append(EvalTask(task, split, inputs, labels, heads[task], tuple(params.masked[task])))
        model = suite.load_backbone(snakemake.input.backbone, device, params.dtype)
    out = Path(snakemake.output[0])
    for name, point in params.points.items():
        merged = Path(snakemake.input.merged) / name
        log.info("evaluating %s", merged)
        with reading_inputs(params.made_by):
            update = load_update(merged)
        records = evaluate(suite, model, tasks, params.lambdas, update, params.batch_size, device, progress=True)
        write_json(out / f"{name}.json", {"method": snakemake.wildcards.method, "point": point, "records": records})
