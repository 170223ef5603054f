from loramerge.repro.heads import save_head
from loramerge.repro.jobs import job_log
from loramerge.repro.suites.llama.hubinputs import saved_config
from loramerge.repro.suites.llama.taskheads import task_head

with job_log(snakemake.log[0], snakemake.threads) as log:
    params, inputs, task = snakemake.params, snakemake.input, snakemake.wildcards.task
    config = saved_config(inputs.backbone)
    shape = (len(params.class_names), config.hidden_size)
    authors = inputs.authors or None  # an empty input list when the config gives no authors' file
    head, info = task_head(
        task, inputs.adapter, params.adapter_key, authors, params.source, shape, params.masked, params.max_difference
    )
    log.info("%s: head %s from the %s; %s", task, tuple(head.shape), params.source, info)
    save_head(snakemake.output[0], head, params.class_names, {"task": task, **info})
