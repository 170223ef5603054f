#!/usr/bin/env bash
# Snakemake runs this once in every env it builds from envs/*.yaml (each <env>.post-deploy.sh links here), with the
# env active and the run's working directory as the current directory. It installs this repository's loramerge
# package into the env: editable, so jobs run the code whose hash the workflow records, and without dependencies,
# which the env file pins. Run Snakemake from the repository root, or point LORAMERGE_ROOT at it.
set -euo pipefail
root="${LORAMERGE_ROOT:-$PWD}"
if [ ! -f "$root/pyproject.toml" ] || [ ! -f "$root/src/loramerge/__init__.py" ]; then
    echo "envs/post-deploy.sh: $root is not the loramerge repository (no pyproject.toml and src/loramerge);" \
        "run snakemake from the repository root or set LORAMERGE_ROOT to it" >&2
    exit 1
fi
python -m pip install --quiet --no-input --no-deps --no-build-isolation --editable "$root"
