from itertools import product
from pathlib import Path

from loramerge.apply import load_update
from loramerge.atomic import write_json
from loramerge.repro.jobs import job_log, pick_device, reading_inputs
from loramerge.repro.suites.base import suite_class
from loramerge.repro.suites.clip.zeroshot import load_joint_head
from loramerge.repro.suites.evaluation import EvalTask, evaluate_joint

params = snakemake.params
with job_log(snakemake.log[0], params.threads) as log:
    suite = suite_class(params.kind)
    device = pick_device(params.device, log)
    with reading_inputs(params.made_by):
        head, local_to_joint = load_joint_head(snakemake.input.joint_head, params.tasks)
        tasks, joint_labels = [], []
        for (task, split), path in zip(product(params.tasks, params.splits), snakemake.input.data, strict=True):
            inputs, labels, _ = suite.load_inputs(path)
            tasks.append(EvalTask(task, split, inputs, labels, head))
            joint_labels.append(local_to_joint[task][labels])
        model = suite.load_backbone(snakemake.input.backbone, device, params.dtype)
    out = Path(snakemake.output[0])
    for name, point in params.points.items():
        merged = Path(snakemake.input.merged) / name
        log.info("joint evaluation of %s", merged)
        with reading_inputs(params.made_by):
            update = load_update(merged)
        lambdas, ks = params.lambdas, params.ks
        records = evaluate_joint(
            suite, model, tasks, joint_labels, lambdas, ks, update, params.batch_size, device, progress=True
        )
        write_json(out / f"{name}.json", {"method": snakemake.wildcards.method, "point": point, "records": records})
