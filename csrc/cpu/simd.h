// Runtime ISA dispatch for the CPU kernels: the wheel is built for baseline x86-64, and
// RK_SIMD_CLONES makes GCC/Clang also compile AVX2 and AVX-512 versions of a function,
// chosen when the library loads. Loops inside are written to auto-vectorise.
#pragma once

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define RK_SIMD_CLONES __attribute__((target_clones("default", "arch=x86-64-v3", "arch=x86-64-v4")))
#else
#define RK_SIMD_CLONES
#endif
