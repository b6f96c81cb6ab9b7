// CPU fills of a float32 buffer from the shared Philox stream, one or four draws per block.
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <torch/library.h>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

#include "common/philox.h"
#include "common/random_fill.h"
#include "common/simd.h"

namespace rk {
namespace {

constexpr int64_t kGrain = 16384;

RK_SIMD_FN(void, fill_uniform, (float* out, int64_t n, uint64_t seed, uint64_t counter), (out, n, seed, counter)) {
  for (int64_t i = 0; i < n; ++i) out[i] = philox_uniform(seed, counter + i);
}

RK_SIMD_FN(void, fill_normal, (float* out, int64_t n, uint64_t seed, uint64_t counter), (out, n, seed, counter)) {
  for (int64_t i = 0; i < n; ++i) out[i] = philox_normal(seed, counter + i);
}

template <Draws4 (*draws)(uint64_t, uint64_t)>
RK_HOST_DEVICE void fill_blocks(float* out, int64_t blocks, uint64_t seed, uint64_t first_block) {
  for (int64_t b = 0; b < blocks; ++b) {
    const Draws4 d = draws(seed, first_block + b);
    out[4 * b] = d.v0;
    out[4 * b + 1] = d.v1;
    out[4 * b + 2] = d.v2;
    out[4 * b + 3] = d.v3;
  }
}

RK_SIMD_FN(void, fill_uniform4_blocks, (float* out, int64_t blocks, uint64_t seed, uint64_t first_block),
           (out, blocks, seed, first_block)) {
  fill_blocks<philox_uniform4>(out, blocks, seed, first_block);
}

RK_SIMD_FN(void, fill_normal4_blocks, (float* out, int64_t blocks, uint64_t seed, uint64_t first_block),
           (out, blocks, seed, first_block)) {
  fill_blocks<philox_normal4>(out, blocks, seed, first_block);
}

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
// AVX2 has no 64-bit multiply-narrowing or int64 -> float conversion, so GCC leaves the 64-bit
// lane form above scalar there (as slow as the baseline build). Here 8 blocks run in the 32-bit
// lanes of a __m256i: each 32x32->64 product is two vpmuludq (even and odd lanes) and blends.
// Same arithmetic, same bits as philox4x32_10 / uint_to_uniform / box_muller.
#define RK_AVX2_PHILOX 1
#define RK_AVX2 __attribute__((target("arch=x86-64-v3")))

RK_AVX2 static inline void mulhilo8(__m256i x, __m256i k, __m256i* hi, __m256i* lo) {
  const __m256i even = _mm256_mul_epu32(x, k), odd = _mm256_mul_epu32(_mm256_srli_epi64(x, 32), k);
  *hi = _mm256_blend_epi32(_mm256_srli_epi64(even, 32), odd, 0xAA);
  *lo = _mm256_blend_epi32(even, _mm256_slli_epi64(odd, 32), 0xAA);
}

// The key of each round, broadcast: the same for every block of a call.
struct Keys8 {
  __m256i k0[10], k1[10];
};

RK_AVX2 static inline Keys8 keys8(uint64_t seed) {
  Keys8 keys;
  uint32_t k0 = static_cast<uint32_t>(seed), k1 = static_cast<uint32_t>(seed >> 32);
  for (int round = 0; round < 10; ++round, k0 += 0x9E3779B9u, k1 += 0xBB67AE85u)
    keys.k0[round] = _mm256_set1_epi32(static_cast<int>(k0)), keys.k1[round] = _mm256_set1_epi32(static_cast<int>(k1));
  return keys;
}

// Uniforms u[k][j] = output k of block first + j, j < 8.
RK_AVX2 static inline void uniform8(const Keys8& keys, uint64_t first, __m256 u[4]) {
  __m256i c0, c1;
  if (static_cast<uint32_t>(first) <= 0xFFFFFFF8u) {  // no carry into the high word within the 8
    c0 = _mm256_add_epi32(_mm256_set1_epi32(static_cast<int>(static_cast<uint32_t>(first))),
                          _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
    c1 = _mm256_set1_epi32(static_cast<int>(static_cast<uint32_t>(first >> 32)));
  } else {
    alignas(32) uint32_t lo[8], hi[8];
    for (int j = 0; j < 8; ++j)
      lo[j] = static_cast<uint32_t>(first + j), hi[j] = static_cast<uint32_t>((first + j) >> 32);
    c0 = _mm256_load_si256(reinterpret_cast<const __m256i*>(lo));
    c1 = _mm256_load_si256(reinterpret_cast<const __m256i*>(hi));
  }
  __m256i c2 = _mm256_setzero_si256(), c3 = _mm256_setzero_si256();
  const __m256i round_a = _mm256_set1_epi32(static_cast<int>(0xD2511F53u));
  const __m256i round_b = _mm256_set1_epi32(static_cast<int>(0xCD9E8D57u));
  for (int round = 0; round < 10; ++round) {
    __m256i hi_b, lo_b, hi_a, lo_a;
    mulhilo8(c2, round_b, &hi_b, &lo_b);
    mulhilo8(c0, round_a, &hi_a, &lo_a);
    c0 = _mm256_xor_si256(_mm256_xor_si256(hi_b, c1), keys.k0[round]);
    c2 = _mm256_xor_si256(_mm256_xor_si256(hi_a, c3), keys.k1[round]);
    c1 = lo_b, c3 = lo_a;
  }
  const __m256i words[4] = {c0, c1, c2, c3};
  const __m256 scale = _mm256_set1_ps(4.6566127342e-10f);
  for (int k = 0; k < 4; ++k) {  // uint_to_uniform: negative int32 folded with ~x = x ^ -1
    const __m256i x = _mm256_xor_si256(words[k], _mm256_srai_epi32(words[k], 31));
    u[k] = _mm256_mul_ps(_mm256_cvtepi32_ps(x), scale);
  }
}

// out[4 j + k] = v[k][j] for j < 8: a 4x8 transpose.
RK_AVX2 static inline void store_interleaved8(float* out, const __m256 v[4]) {
  const __m256 t0 = _mm256_unpacklo_ps(v[0], v[1]), t1 = _mm256_unpackhi_ps(v[0], v[1]);
  const __m256 t2 = _mm256_unpacklo_ps(v[2], v[3]), t3 = _mm256_unpackhi_ps(v[2], v[3]);
  const __m256 s0 = _mm256_shuffle_ps(t0, t2, 0x44), s1 = _mm256_shuffle_ps(t0, t2, 0xEE);
  const __m256 s2 = _mm256_shuffle_ps(t1, t3, 0x44), s3 = _mm256_shuffle_ps(t1, t3, 0xEE);
  _mm256_storeu_ps(out, _mm256_permute2f128_ps(s0, s1, 0x20));
  _mm256_storeu_ps(out + 8, _mm256_permute2f128_ps(s2, s3, 0x20));
  _mm256_storeu_ps(out + 16, _mm256_permute2f128_ps(s0, s1, 0x31));
  _mm256_storeu_ps(out + 24, _mm256_permute2f128_ps(s2, s3, 0x31));
}

RK_AVX2 static void uniform4_blocks_avx2(float* out, int64_t blocks, uint64_t seed, uint64_t first) {
  const Keys8 keys = keys8(seed);
  int64_t b = 0;
  for (; b + 8 <= blocks; b += 8) {
    __m256 u[4];
    uniform8(keys, first + b, u);
    store_interleaved8(out + 4 * b, u);
  }
  fill_blocks<philox_uniform4>(out + 4 * b, blocks - b, seed, first + b);
}

RK_AVX2 static void normal4_blocks_avx2(float* out, int64_t blocks, uint64_t seed, uint64_t first) {
  constexpr int kGroup = 64;  // blocks per Box-Muller pass: uniforms staged as [4][kGroup]
  alignas(32) float u[4][kGroup], n[4][kGroup];
  const Keys8 keys = keys8(seed);
  int64_t b = 0;
  for (; b + kGroup <= blocks; b += kGroup) {
    for (int j = 0; j < kGroup; j += 8) {
      __m256 v[4];
      uniform8(keys, first + b + j, v);
      for (int k = 0; k < 4; ++k) _mm256_store_ps(&u[k][j], v[k]);
    }
    for (int j = 0; j < kGroup; ++j) {  // vectorised by GCC, as in the other clones
      float n0, n1, n2, n3;
      box_muller(u[0][j], u[1][j], &n0, &n1);
      box_muller(u[2][j], u[3][j], &n2, &n3);
      n[0][j] = n0, n[1][j] = n1, n[2][j] = n2, n[3][j] = n3;
    }
    for (int j = 0; j < kGroup; j += 8) {
      const __m256 v[4] = {_mm256_load_ps(&n[0][j]), _mm256_load_ps(&n[1][j]), _mm256_load_ps(&n[2][j]),
                           _mm256_load_ps(&n[3][j])};
      store_interleaved8(out + 4 * (b + j), v);
    }
  }
  fill_blocks<philox_normal4>(out + 4 * b, blocks - b, seed, first + b);
}
#undef RK_AVX2
#endif

void uniform4_blocks(float* out, int64_t blocks, uint64_t seed, uint64_t first) {
#ifdef RK_AVX2_PHILOX
  if (simd_level() == kSimdAvx2) return uniform4_blocks_avx2(out, blocks, seed, first);
#endif
  fill_uniform4_blocks(out, blocks, seed, first);
}

void normal4_blocks(float* out, int64_t blocks, uint64_t seed, uint64_t first) {
#ifdef RK_AVX2_PHILOX
  if (simd_level() == kSimdAvx2) return normal4_blocks_avx2(out, blocks, seed, first);
#endif
  fill_normal4_blocks(out, blocks, seed, first);
}

// Four-per-block stream for elements offset .. offset + n - 1: whole blocks in the vectorised
// loop; a partial block at either end is computed once and its outputs shared out (not once per
// element: a short fill, e.g. a small LWTA tile, is mostly ends).
void fill4(float* out, int64_t n, uint64_t seed, uint64_t offset, void (*blocks)(float*, int64_t, uint64_t, uint64_t),
           Draws4 (*block)(uint64_t, uint64_t)) {
  int64_t i = 0;
  if ((offset & 3) != 0 && n > 0) {
    const Draws4 head = block(seed, offset >> 2);
    for (; i < n && ((offset + i) & 3); ++i) out[i] = select4(head, offset + i);
  }
  const int64_t full = (n - i) / 4;
  blocks(out + i, full, seed, (offset + i) >> 2);
  i += 4 * full;
  if (i < n) {
    const Draws4 tail = block(seed, (offset + i) >> 2);
    for (; i < n; ++i) out[i] = select4(tail, offset + i);
  }
}

void philox_fill_cpu(at::Tensor& out, int64_t seed, int64_t offset, bool normal, int64_t per_block) {
  TORCH_CHECK(out.scalar_type() == at::kFloat, "philox_fill_: out must be float32");
  TORCH_CHECK(out.is_contiguous(), "philox_fill_: out must be contiguous");
  TORCH_CHECK(per_block == 1 || per_block == 4, "philox_fill_: per_block must be 1 or 4");
  float* data = out.data_ptr<float>();
  const uint64_t useed = static_cast<uint64_t>(seed), uoffset = static_cast<uint64_t>(offset);
  at::parallel_for(0, out.numel(), kGrain, [&](int64_t begin, int64_t end) {
    float* chunk = data + begin;
    const uint64_t counter = uoffset + begin;
    if (per_block == 1) {
      (normal ? fill_normal : fill_uniform)(chunk, end - begin, useed, counter);
    } else if (normal) {
      fill_normal4(chunk, end - begin, useed, counter);
    } else {
      fill_uniform4(chunk, end - begin, useed, counter);
    }
  });
}

}  // namespace

void fill_normal4(float* out, int64_t n, uint64_t seed, uint64_t offset) {
  fill4(out, n, seed, offset, normal4_blocks, philox_normal4);
}

void fill_uniform4(float* out, int64_t n, uint64_t seed, uint64_t offset) {
  fill4(out, n, seed, offset, uniform4_blocks, philox_uniform4);
}

TORCH_LIBRARY_IMPL(robustkernels_C, CPU, m) { m.impl("philox_fill_", &philox_fill_cpu); }

}  // namespace rk
