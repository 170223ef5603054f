"""The reproduction package (`pip install loramerge[repro]`): suites, the experiment plan, search, reporting, hub
downloads and job plumbing for the Snakemake workflow. It knows models and data; the merging math is `loramerge`."""
