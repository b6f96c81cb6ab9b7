#!/usr/bin/env bash
# Compile-checks every csrc/<op>/*.cu with nvcc -c, without a CUDA build of torch.
# The CPU wheel lacks the generated c10/cuda/impl/cuda_cmake_macros.h: a one-line stub replaces it.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v nvcc >/dev/null 2>&1; then
  echo "nvcc not found: CUDA sources not compile-checked"
  exit 0
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/stub/c10/cuda/impl"
echo '#pragma once' > "$work/stub/c10/cuda/impl/cuda_cmake_macros.h"
torch_includes=$(python -c "from torch.utils.cpp_extension import include_paths; print(' '.join('-I' + p for p in include_paths()))")
for source in csrc/*/*.cu; do
  echo "nvcc -c $source"
  # shellcheck disable=SC2086
  nvcc -std=c++20 -O3 -fmad=false -DRK_WITH_CUDA -diag-suppress 3306 -c "$source" -o "$work/$(basename "$source").o" \
    -I"$work/stub" -Icsrc $torch_includes
done
echo "CUDA sources compile: OK"
