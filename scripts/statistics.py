from pathlib import Path

from loramerge import load_adapter
from loramerge.repro.heads import load_head
from loramerge.repro.jobs import job_log, pick_device
from loramerge.repro.stats.collect import task_statistics
from loramerge.repro.stats.subset import describe_subset, draw_rows, inputs_sha256
from loramerge.repro.suites.base import suite_class
from loramerge.stats import StatisticsInfo, adapter_weights_sha256, write_task_statistics

params, kind, task = snakemake.params, snakemake.wildcards.kind, snakemake.wildcards.task
with job_log(snakemake.log[0], params.threads) as log:
    suite = suite_class(params.suite_kind)
    device = pick_device(params.device, log)
    available, _, _ = suite.load_inputs(snakemake.input.data)
    rows = draw_rows(len(available), params.examples, params.seed)
    inputs = available[rows]
    split = describe_subset(params.split, rows, len(available), params.seed)
    log.info("%s %s: %s, rows %s", task, kind, split, rows.tolist())
    adapter = load_adapter(snakemake.input.adapter)
    update = {module: lora.delta() for module, lora in adapter.modules.items()}
    head = load_head(snakemake.input.head)[0] if kind == "fisher" else None
    model = suite.load_backbone(snakemake.input.backbone, device, params.dtype)
    collected = task_statistics(
        suite, model, update, inputs, kind, params.batch_size, device, head, params.masked, params.estimator, True
    )
    info = StatisticsInfo(
        examples=collected.examples,
        counted=collected.counted,
        unit="tokens",
        split=split,
        split_sha256=inputs_sha256(inputs),
        adapter_sha256=adapter_weights_sha256(adapter),
    )
    write_task_statistics(Path(snakemake.output[0]).parent, task, {kind: collected.tensors}, info)
    log.info(
        "%s %s: %d examples, %d input rows per module, %d modules", task, kind, info.examples, info.counted, len(update)
    )
