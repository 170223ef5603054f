from loramerge.repro.hub import fetch_repo_files, read_lock
from loramerge.repro.jobs import job_log
from loramerge.repro.suites.llama.hubinputs import convert_adapter, linear_shapes, saved_config

with job_log(snakemake.log[0], snakemake.threads) as log:
    params = snakemake.params
    files = fetch_repo_files(read_lock(params.lock), params.lock, "model", params.repo)
    log.info("%s: %s checked against the lock", params.repo, sorted(files))
    config = saved_config(snakemake.input.backbone)
    head_shape = (config.num_labels, config.hidden_size)
    found = convert_adapter(files, snakemake.output[0], linear_shapes(config), params.head_key, head_shape, params.repo)
    head = "with" if found["head"] else "without"
    log.info("%s: %d LoRA modules fit the base model, %s head %s", params.repo, found["modules"], head, params.head_key)
