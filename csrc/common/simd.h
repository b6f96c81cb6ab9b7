// Runtime ISA dispatch for the CPU kernels: the wheel is built for baseline x86-64, and
// RK_SIMD_FN compiles a hot loop three times - baseline, AVX2 (x86-64-v3) and AVX-512
// (x86-64-v4) - and calls the best one the CPU has, capped by ROBUSTKERNELS_CPU_ISA
// (avx512 | avx2 | baseline), so AVX2 figures can be measured on an AVX-512 machine. Loops
// inside are written to auto-vectorise.
#pragma once

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <string>

namespace rk {

enum SimdLevel : int { kSimdBaseline = 0, kSimdAvx2 = 1, kSimdAvx512 = 2 };

// The level the CPU kernels run: what the CPU supports, capped by ROBUSTKERNELS_CPU_ISA (read once).
inline int simd_level() {
  static const int level = [] {
    int best = kSimdBaseline;
#if defined(__x86_64__) && defined(__GNUC__)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) best = kSimdAvx2;
    if (best == kSimdAvx2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl"))
      best = kSimdAvx512;
#endif
    const char* env = std::getenv("ROBUSTKERNELS_CPU_ISA");
    if (env == nullptr) return best;
    std::string cap(env);
    std::transform(cap.begin(), cap.end(), cap.begin(), [](unsigned char c) { return std::tolower(c); });
    if (cap == "avx2") return std::min(best, static_cast<int>(kSimdAvx2));
    if (cap == "baseline" || cap == "default") return static_cast<int>(kSimdBaseline);
    return best;  // "avx512" or anything else: the CPU's best
  }();
  return level;
}

}  // namespace rk

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
// RK_SIMD_FN(ret, name, (params), (args)) { body }: `body` becomes an always-inlined name##_impl,
// compiled into one function per ISA; `name` dispatches on rk::simd_level().
#define RK_SIMD_FN(ret, name, params, args)                                                     \
  static inline __attribute__((always_inline)) ret name##_impl params;                          \
  __attribute__((target("arch=x86-64-v4"))) static ret name##_avx512 params {                   \
    return name##_impl args;                                                                    \
  }                                                                                             \
  __attribute__((target("arch=x86-64-v3"))) static ret name##_avx2 params {                     \
    return name##_impl args;                                                                    \
  }                                                                                             \
  static ret name##_baseline params { return name##_impl args; }                                \
  static ret name params {                                                                      \
    switch (::rk::simd_level()) {                                                               \
      case ::rk::kSimdAvx512:                                                                   \
        return name##_avx512 args;                                                              \
      case ::rk::kSimdAvx2:                                                                     \
        return name##_avx2 args;                                                                \
      default:                                                                                  \
        return name##_baseline args;                                                            \
    }                                                                                           \
  }                                                                                             \
  static inline __attribute__((always_inline)) ret name##_impl params
#else
#define RK_SIMD_FN(ret, name, params, args) static ret name params
#endif
