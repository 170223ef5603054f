from itertools import product
from pathlib import Path

from loramerge.atomic import write_json
from loramerge.repro.heads import load_head
from loramerge.repro.jobs import job_log, pick_device
from loramerge.repro.splits import load_split
from loramerge.repro.suites.clip.evaluate import EvalTask, evaluate
from loramerge.repro.suites.clip.model import load_backbone, load_update

params = snakemake.params
with job_log(snakemake.log[0], params.threads) as log:
    device = pick_device(params.device, log)
    heads = {task: load_head(path)[0] for task, path in zip(params.tasks, snakemake.input.heads, strict=True)}
    tasks = []
    for (task, split), path in zip(product(params.tasks, params.splits), snakemake.input.data, strict=True):
        images, labels, _ = load_split(path)
        tasks.append(EvalTask(task, split, images, labels, heads[task]))
    model = load_backbone(snakemake.input.backbone, device)
    out = Path(snakemake.output[0])
    for (name, point), merged in zip(params.points.items(), snakemake.input.merged, strict=True):
        log.info("evaluating %s", merged)
        records = evaluate(model, tasks, params.lambdas, load_update(merged), params.batch_size, device, progress=True)
        write_json(out / f"{name}.json", {"method": snakemake.wildcards.method, "point": point, "records": records})
