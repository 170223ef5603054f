from loramerge import load_adapter
from loramerge.io import atomic_directory
from loramerge.repro.heads import load_head
from loramerge.repro.jobs import job_log, pick_device, reading_inputs
from loramerge.repro.stats.collect import task_statistics
from loramerge.repro.stats.subset import describe_subset, draw_rows, inputs_sha256
from loramerge.repro.suites.base import suite_class
from loramerge.stats import StatisticsInfo, adapter_weights_sha256, write_task_statistics

params, kind = snakemake.params, snakemake.wildcards.kind
with job_log(snakemake.log[0], params.threads) as log:
    suite = suite_class(params.suite_kind)
    device = pick_device(params.device, log)
    with reading_inputs(params.made_by):
        model = suite.load_backbone(snakemake.input.backbone, device, params.dtype)
    heads = snakemake.input.heads or [None] * len(params.tasks)
    per_task = zip(params.tasks, snakemake.input.adapters, snakemake.input.data, heads, strict=True)
    with atomic_directory(snakemake.output[0]) as staging:
        for task, adapter_folder, data, head_file in per_task:
            seed = params.seeds[task]
            with reading_inputs(params.made_by):
                available, _, _ = suite.load_inputs(data)
                adapter = load_adapter(adapter_folder)
                head = load_head(head_file)[0] if head_file else None
            rows = draw_rows(len(available), params.examples, seed)
            inputs = available[rows]
            split = describe_subset(params.split, rows, len(available), seed)
            log.info("%s %s: %s, rows %s", task, kind, split, rows.tolist())
            update = {module: lora.delta() for module, lora in adapter.modules.items()}
            collected = task_statistics(
                suite,
                model,
                update,
                inputs,
                kind,
                params.batch_size,
                device,
                head=head,
                masked=params.masked[task],
                estimator=params.estimator,
                progress=True,
            )
            info = StatisticsInfo(
                examples=collected.examples,
                counted=collected.counted,
                unit="tokens",
                split=split,
                split_sha256=inputs_sha256(inputs),
                adapter_sha256=adapter_weights_sha256(adapter),
            )
            write_task_statistics(staging, task, {kind: collected.tensors}, info)
            log.info(
                "%s %s: %d examples, %d input rows per module, %d modules",
                task,
                kind,
                info.examples,
                info.counted,
                len(update),
            )
