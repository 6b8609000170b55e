#!/usr/bin/env bash
# Wheels for the GPU machine, which reaches no package registry (issue 20, scripts/gpu_check.sh).
#
#   scripts/gpu_wheels.sh            # here, where PyPI is reachable: fills .whl/ (git-ignored)
#
# Its python3 (3.12) already has torch, Lightning, matplotlib, numpy, PyYAML, requests, rich
# and jinja2; this downloads the rest of this project's dependencies, with their own, for that
# Python and platform. gpu_check.sh installs whatever .whl/ holds under /tmp/site; name `.whl`
# in the device tool's `carry` (the tool carries 64 MiB at most: the total is printed).
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .whl
grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >>.git/info/exclude

python=${PYTHON:-python3}
platforms=()
for tag in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64 manylinux1_x86_64; do
  platforms+=(--platform "$tag")
done
# The project's own requirements that the GPU machine's image lacks (pyproject.toml).
wanted=(
  "hydra-core==1.4.0rc3" "hydra-optuna-sweeper==1.4.0rc3" "hydra-submitit-launcher==1.4.0rc3"
  "omegaconf>=2.4.0.dev0,<2.5" "optuna>=5,<6" "wandb>=0.31,<0.32"
)
"$python" -m pip download --quiet --only-binary=:all: --python-version 3.12 --implementation cp \
  "${platforms[@]}" -d .whl "${wanted[@]}"
# What the image already holds (device/KINDS.md): carrying a second copy would only cost space.
present='^(numpy|PyYAML|pyyaml|requests|urllib3|idna|certifi|charset_normalizer|packaging|typing_extensions|tqdm|click|jinja2|MarkupSafe|markupsafe|cloudpickle|protobuf|platformdirs|xxhash|filelock|fsspec)-'
for wheel in .whl/*.whl; do
  if [[ "$(basename "$wheel")" =~ $present ]]; then rm -f "$wheel"; fi
done
ls .whl
du -ch .whl/*.whl | tail -1
