from loramerge.repro.jobs import job_log
from loramerge.repro.splits import save_split
from loramerge.repro.suites.demo_vision.data import make_pretrain_mixture

with job_log(snakemake.log[0], snakemake.threads):
    params = snakemake.params
    images, labels, class_names = make_pretrain_mixture(
        params.sources, params.images_per_source, params.image_size, params.seed
    )
    save_split(snakemake.output[0], images, labels, class_names, {"seed": str(params.seed)})
