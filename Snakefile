"""loramerge: reproduce 'On the Representation Geometry of LoRA Model Merging' end to end.

The default configuration is the offline demo suite; see README.md and config/README.md.
"""

from snakemake.utils import min_version

min_version("9.0")


configfile: "config/config.yaml"


report: "workflow/report/workflow.rst"


include: "workflow/common.smk"
# The suite's kind brings the rules that make its backbone, adapters, data and heads (the demo trains them, the CLIP
# suites download them at locked commits); every stage after them is shared.
include: SUITE_SPEC.input_rules
include: "workflow/decompose.smk"
include: "workflow/statistics.smk"
include: "workflow/adapt.smk"
include: "workflow/merge.smk"
include: "workflow/evaluate.smk"
include: "workflow/search.smk"
include: "workflow/analysis.smk"
include: "workflow/report.smk"


rule all:
    default_target: True
    input:
        final_outputs(),
