import time
from dataclasses import asdict

import torch
from safetensors.torch import save_file

from loramerge import load_adapters, load_decomposition
from loramerge.apply import load_update, updated
from loramerge.atomic import write_json
from loramerge.io import atomic_directory
from loramerge.repro.adapt.tara import (
    AdaptSettings,
    AdaptTask,
    CoefficientBranches,
    adapt,
    finetuned_entropy,
)
from loramerge.repro.heads import load_head
from loramerge.repro.jobs import job_log, pick_device
from loramerge.repro.stats.hooks import targeted_linears
from loramerge.repro.suites.base import suite_class

params = snakemake.params
with job_log(snakemake.log[0], params.threads) as log:
    suite = suite_class(params.kind)
    device = pick_device(params.device, log)
    all_settings = {name: AdaptSettings(**params.settings, **point) for name, point in params.points.items()}
    adapters = load_adapters(snakemake.input.adapters)
    decomposition = None
    if any(settings.variant == "b" for settings in all_settings.values()):
        decomposition = load_decomposition(snakemake.input.decomposition, adapters)
    model = suite.load_backbone(snakemake.input.backbone, device, params.dtype).requires_grad_(False)

    def features(model, batch):
        return suite.statistics_features(model, batch, device)

    tasks = []
    for task, val, head_file in zip(params.tasks, snakemake.input.val, snakemake.input.heads, strict=True):
        head, _ = load_head(head_file)
        inputs = suite.load_inputs(val)[0]  # the labels are never read
        tasks.append(AdaptTask(task, inputs, suite.head_temperature * head, tuple(params.masked[task])))
    offsets = []
    for task, adapter in zip(tasks, snakemake.input.adapters, strict=True):
        with updated(model, load_update(adapter), prefixes=suite.module_prefixes):
            offsets.append(finetuned_entropy(model, task, features, params.batch_size))
        log.info("%s: fine-tuned mean entropy %.6f on %d validation inputs", task.name, offsets[-1], len(task.inputs))
    linears = targeted_linears(model, adapters.modules, suite.module_prefixes)
    smallest_task = min(len(task.inputs) for task in tasks)
    offsets_tensor = torch.tensor(offsets)
    with atomic_directory(snakemake.output[0]) as staging:
        for name, settings in all_settings.items():
            started = time.perf_counter()
            steps = settings.steps(smallest_task)
            branches = CoefficientBranches(linears, adapters, settings, decomposition)
            log.info(
                "%s: TARA variant %s, %d steps of %d inputs per task, seed %d",
                name,
                settings.variant,
                steps,
                settings.batch_size,
                settings.seed,
            )
            losses = adapt(model, branches, tasks, offsets_tensor, features, settings, steps, log.info)
            (staging / name).mkdir()
            save_file(branches.learned(), staging / name / "coefficients.safetensors")
            write_json(
                staging / name / "adapt.json",
                {
                    "settings": asdict(settings),
                    "steps": steps,
                    "finetuned_entropy": dict(zip(params.tasks, offsets, strict=True)),
                    "objective": losses,
                    "tasks": params.tasks,
                },
            )
            log.info("%s: adaptation took %.1f s", name, time.perf_counter() - started)
