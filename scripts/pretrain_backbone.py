from loramerge.repro.jobs import job_log, pick_device
from loramerge.repro.splits import load_split
from loramerge.repro.suites.clip.model import build_backbone, save_backbone
from loramerge.repro.suites.demo_vision.train import pretrain

params = snakemake.params
# The thread count changes float reduction order, hence the weights: it comes from the config, not the scheduler.
with job_log(snakemake.log[0], params.pretrain["threads"]) as log:
    device = pick_device(params.device, log)
    images, labels, class_names = load_split(snakemake.input[0])
    model = build_backbone({**params.backbone, "image_size": params.image_size}, params.seed)
    settings = params.pretrain
    stats = pretrain(
        model,
        images,
        labels,
        len(class_names),
        settings["steps"],
        settings["batch_size"],
        settings["lr"],
        params.seed,
        device=device,
    )
    log.info("pretraining: %s", stats)
    save_backbone(model, snakemake.output[0])
