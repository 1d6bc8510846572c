#!/usr/bin/env bash
# Prepare, on a machine where pip reaches a package index, the wheels that benchmarks/gpu_check.sh needs on the GPU
# machine and that its image lacks (it has torch, torchvision, numpy, scipy, scikit-image, networkx, numba, pandas,
# pyyaml, typer, rich, tqdm, pillow, pytest and hypothesis; see the device tool's KINDS.md): sam2 (built here as a
# pure-Python wheel, SAM2_BUILD_CUDA=0, as the project installs it) and what sam2 imports.  Written to .whl/, which
# git ignores (.git/info/exclude); carry it in the device call.  Under 1 MB in all.
#
# The GIS stack (rasterio, pyogrio, pyproj, shapely, geopandas) is not among them: its current cp312 wheels are about
# 75 MB together and a device call carries 64 MiB with the working tree, so `roadmap adapt` / `extract` do not run
# there; gpu_check.sh times the training step that adapt runs instead.
set -euo pipefail
cd "$(dirname "$0")/.."
exclude=.git/info/exclude
if [ -d .git ]; then
    mkdir -p .git/info
    grep -qx '/.whl/' "$exclude" 2>/dev/null || echo '/.whl/' >> "$exclude"
fi
rm -rf .whl && mkdir -p .whl
python3 -m pip download -q --no-deps -d .whl hydra-core==1.3.8 omegaconf==2.3.1
python3 -m pip wheel -q --no-deps -w .whl antlr4-python3-runtime==4.9.3 iopath==0.1.10
SAM2_BUILD_CUDA=0 python3 -m pip wheel -q --no-deps --no-build-isolation -w .whl sam2==1.1.0
ls -l .whl
